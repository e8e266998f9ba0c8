"""The hub's own records of its batch sessions, for the admins' use-by-profile table
(docs/sessions.md#admins): one row per ended session in the hub's database (a table of its
own beside JupyterHub's, so PostgreSQL and a fail-over keep it), read back as sessions,
core-hours and median wait per profile over a period."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, insert, select

META = MetaData()
SESSIONS = Table(
    "hpcspawner_sessions", META,
    Column("id", Integer, primary_key=True),
    Column("user", String(255), nullable=False),
    Column("server", String(255), nullable=False),
    Column("profile", String(255), nullable=False),
    Column("backend", String(64), nullable=False),
    Column("job_id", String(255), nullable=False),
    Column("cores", Integer, nullable=False),
    Column("submitted", Float, nullable=False),  # epoch
    Column("started", Float, nullable=False),  # epoch; 0: it never ran
    Column("ended", Float, nullable=False, index=True),  # epoch
)
_made: set[int] = set()  # the engines whose table exists


@dataclass(frozen=True)
class Session:
    profile: str
    cores: int
    submitted: float
    started: float  # 0: never ran
    ended: float  # for a running session: now


@dataclass(frozen=True)
class ProfileUse:
    profile: str
    sessions: int
    core_hours: float
    median_wait: float | None  # seconds from submit to run; None: none ran


def _table(db: Any) -> None:
    engine = db.get_bind()
    if id(engine) not in _made:
        META.create_all(engine, checkfirst=True)
        _made.add(id(engine))


def of_job(job: Any, ended: float) -> Session:
    """A server's batch job (job.BatchJob) as a session, ended at ``ended`` (now, for one
    still running)."""
    cores = job.resources.cores if job.resources is not None else 1
    return Session(profile=job.profile_name or "other", cores=cores,
                   submitted=job.submitted_at, started=job.running_seen_at, ended=ended)


def record(db: Any, session: Session, *, user: str, server: str, backend: str,
           job_id: str) -> None:
    """Keep one ended session (the hub's database session ``db``)."""
    _table(db)
    db.execute(insert(SESSIONS).values(
        user=user, server=server, profile=session.profile, backend=backend, job_id=job_id,
        cores=session.cores, submitted=session.submitted, started=session.started,
        ended=session.ended))
    db.commit()


def ended_since(db: Any, since: float) -> list[Session]:
    _table(db)
    rows = db.execute(select(SESSIONS.c.profile, SESSIONS.c.cores, SESSIONS.c.submitted,
                             SESSIONS.c.started, SESSIONS.c.ended)
                      .where(SESSIONS.c.ended >= since)).all()
    return [Session(*row) for row in rows]


def use_by_profile(sessions: Iterable[Session], since: float,
                   now: float | None = None) -> list[ProfileUse]:
    """Per profile over [since, now]: sessions that ran or waited in it, core-hours run
    within it, and the median wait of those that started."""
    now = time.time() if now is None else now
    by: dict[str, list[Session]] = {}
    for s in sessions:
        if s.ended >= since:
            by.setdefault(s.profile, []).append(s)
    out = []
    for profile, rows in sorted(by.items()):
        ran = [s for s in rows if s.started]
        hours = sum(s.cores * max(0.0, min(s.ended, now) - max(s.started, since)) for s in ran)
        waits = [max(0.0, s.started - s.submitted) for s in ran]
        out.append(ProfileUse(profile, len(rows), hours / 3600,
                              statistics.median(waits) if waits else None))
    return out
