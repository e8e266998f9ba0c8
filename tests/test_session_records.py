"""The hub's records of ended sessions and the admins' use by profile (session_records.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from traitlets.config import Config

from hpcspawner.session_records import (
    KEEP_DAYS,
    ProfileUse,
    Session,
    ended_since,
    engine,
    hub_database,
    record,
    recorded_use,
    use_by_profile,
)

HOUR = 3600.0


def test_ended_sessions_are_kept_in_the_hubs_database_and_read_back_by_period() -> None:
    db = engine("sqlite://")
    for job, ended in (("1", 100.0), ("2", 5000.0)):
        record(db, Session("small", 2, 10.0, 40.0, ended), user="alice", server="",
               backend="slurm", job_id=job)
    assert ended_since(db, 1000.0) == [Session("small", 2, 10.0, 40.0, 5000.0)]
    assert len(ended_since(db, 0.0)) == 2
    # a row older than KEEP_DAYS goes when a new one comes: the table does not grow for ever
    later = 5000.0 + KEEP_DAYS * 86400 - 1
    record(db, Session("small", 1, later, later, later), user="bob", server="",
           backend="slurm", job_id="3")
    assert [s.ended for s in ended_since(db, 0.0)] == [5000.0, later]
    record(db, Session("small", 1, later, later, later + 4000), user="bob", server="",
           backend="slurm", job_id="4")
    assert [s.ended for s in ended_since(db, 0.0)] == [later, later + 4000]


def test_the_records_live_in_the_hubs_database_through_connections_of_their_own(
        tmp_path: object) -> None:
    """The hub's URL and options, as JupyterHub reads them (a plain file name is SQLite); the
    rows written through hpcspawner's own engine are in that very file."""
    assert hub_database(Config()) == ("sqlite:///jupyterhub.sqlite", {})
    path = f"{tmp_path}/hub.sqlite"
    config = Config({"JupyterHub": {"db_url": path, "db_kwargs": {"echo": False}}})
    url, options = hub_database(config)
    assert (url, options) == (f"sqlite:///{path}", {"echo": False})
    record(engine(url, options), Session("gpu", 4, 1.0, 2.0, 3.0), user="alice", server="",
           backend="slurm", job_id="9")
    import sqlite3

    rows = sqlite3.connect(path).execute("select user, profile from hpcspawner_sessions")
    assert rows.fetchall() == [("alice", "gpu")]


def test_use_by_profile_counts_sessions_core_hours_in_the_period_and_the_median_wait() -> None:
    since, now = 10 * HOUR, 20 * HOUR
    sessions = [
        Session("small", 1, 9 * HOUR, 9 * HOUR + 60, 12 * HOUR),  # ran 2 h inside the period
        Session("small", 1, 14 * HOUR, 14 * HOUR + 300, 16 * HOUR),  # waited 5 min, ran ~2 h
        Session("small", 1, 15 * HOUR, 0.0, 15 * HOUR + 600),  # cancelled while queued
        Session("large", 8, 18 * HOUR, 18 * HOUR + 30, now),  # running now: 8 cores, ~2 h
        Session("large", 8, 1 * HOUR, 1 * HOUR, 2 * HOUR),  # ended before the period
    ]
    large, small = use_by_profile(sessions, since, now)
    assert (small.profile, small.sessions, small.median_wait) == ("small", 3, (60 + 300) / 2)
    assert abs(small.core_hours - (2 + (2 * HOUR - 300) / HOUR)) < 1e-9
    assert large.sessions == 1 and abs(large.core_hours - 8 * (2 * HOUR - 30) / HOUR) < 1e-9
    assert large.median_wait == 30
    assert use_by_profile([Session("x", 1, 0.0, 0.0, 5.0)], 0.0, 10.0) == [
        ProfileUse("x", 1, 0.0, None)]


def test_the_admins_period_is_summed_by_the_database_in_a_bounded_answer(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """366 days of sessions: the database answers one row per profile (and the waits of the
    latest MAX_WAITS that ran), and the table says what the rows would have said."""
    db = engine(f"sqlite:///{tmp_path}/sums.sqlite")
    since, now = 10 * HOUR, 20 * HOUR
    sessions = [Session("small", 1 + n % 3, 9 * HOUR + n, (9 * HOUR + n + 60 * (n % 7))
                        if n % 5 else 0.0, 10 * HOUR + 37 * n) for n in range(600)]
    sessions += [Session("large", 8, 18 * HOUR, 18 * HOUR + 30, 19 * HOUR),
                 Session("large", 8, 1 * HOUR, 1 * HOUR, 2 * HOUR)]  # before the period
    for n, s in enumerate(sessions):
        record(db, s, user="alice", server="", backend="slurm", job_id=str(n))
    live = [Session("large", 4, 19 * HOUR, 19 * HOUR + 10, now)]
    recorded = recorded_use(db, since, now)
    expected = use_by_profile([*sessions, *live], since, now)
    got = use_by_profile(live, since, now, recorded)
    assert [(u.profile, u.sessions, u.median_wait) for u in got] == [
        (u.profile, u.sessions, u.median_wait) for u in expected]
    assert all(abs(a.core_hours - b.core_hours) < 1e-6 for a, b in zip(got, expected, strict=True))
    monkeypatch.setattr("hpcspawner.session_records.MAX_WAITS", 50)
    assert sum(len(t.waits) for t in recorded_use(db, since, now).values()) == 50


def test_a_failed_write_is_rolled_back_and_raised_and_the_next_one_is_kept(
        tmp_path: Path) -> None:
    db = engine(f"sqlite:///{tmp_path}/rollback.sqlite")
    with pytest.raises(IntegrityError):
        record(db, Session("small", 1, 1.0, 2.0, 3.0), user=None,  # type: ignore[arg-type]
               server="", backend="slurm", job_id="1")
    assert ended_since(db, 0.0) == []
    record(db, Session("small", 1, 1.0, 2.0, 3.0), user="alice", server="", backend="slurm",
           job_id="2")
    assert ended_since(db, 0.0) == [Session("small", 1, 1.0, 2.0, 3.0)]
