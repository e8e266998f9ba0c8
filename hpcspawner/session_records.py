"""The hub's own records of its batch sessions, for the admins' use-by-profile table
(docs/sessions.md#admins): one row per ended session in the hub's database (a table of its
own beside JupyterHub's, so PostgreSQL and a fail-over keep it), read back as sessions,
core-hours and median wait per profile over a period."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    case,
    create_engine,
    delete,
    func,
    insert,
    select,
)

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
_ENGINES: dict[str, Engine] = {}  # one per database URL, each with its table made
KEEP_DAYS = 400  # rows older than this are deleted as new ones come (the admins' page shows 366)
MAX_WAITS = 20_000  # the median wait is of the latest sessions that ran, at most this many


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


def hub_database(config: Any) -> tuple[str, dict[str, Any]]:
    """The hub's database URL and connection options (c.JupyterHub.db_url, db_kwargs; a plain
    file name means SQLite, as JupyterHub reads it): hpcspawner keeps its table there, through
    connections of its own, never JupyterHub's shared session."""
    section = config.JupyterHub if "JupyterHub" in config else {}
    url = str(section.get("db_url") or "sqlite:///jupyterhub.sqlite")
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url, dict(section.get("db_kwargs") or {})


def engine(url: str, options: dict[str, Any] | None = None) -> Engine:
    """hpcspawner's own engine for the database at ``url`` (made once; its table too)."""
    found = _ENGINES.get(url)
    if found is None:
        found = create_engine(url, pool_pre_ping=True, **(options or {}))
        META.create_all(found, checkfirst=True)
        _ENGINES[url] = found
    return found


def of_job(job: Any, ended: float) -> Session:
    """A server's batch job (job.BatchJob) as a session, ended at ``ended`` (now, for one
    still running)."""
    cores = job.resources.cores if job.resources is not None else 1
    return Session(profile=job.profile_name or "other", cores=cores,
                   submitted=job.submitted_at, started=job.running_seen_at, ended=ended)


def record(db: Engine, session: Session, *, user: str, server: str, backend: str,
           job_id: str) -> None:
    """Keep one ended session, in a transaction of its own (rolled back on an error, which is
    raised); rows older than KEEP_DAYS go at the same time."""
    with db.begin() as conn:
        conn.execute(insert(SESSIONS).values(
            user=user, server=server, profile=session.profile, backend=backend,
            job_id=job_id, cores=session.cores, submitted=session.submitted,
            started=session.started, ended=session.ended))
        conn.execute(delete(SESSIONS).where(SESSIONS.c.ended < session.ended - KEEP_DAYS * 86400))


def ended_since(db: Engine, since: float) -> list[Session]:
    with db.connect() as conn:
        rows = conn.execute(select(SESSIONS.c.profile, SESSIONS.c.cores, SESSIONS.c.submitted,
                                   SESSIONS.c.started, SESSIONS.c.ended)
                            .where(SESSIONS.c.ended >= since)).all()
    return [Session(*row) for row in rows]


@dataclass
class Totals:
    """One profile's ended sessions over a period, as the database sums them."""

    sessions: int = 0
    core_seconds: float = 0.0
    waits: list[float] = field(default_factory=list)  # of the latest that ran (MAX_WAITS)


def _clamped(value: Any, low: Any = None, high: Any = None) -> Any:
    """SQL for ``value`` kept within [low, high] (CASE: SQLite and PostgreSQL alike)."""
    if high is not None:
        value = case((value > high, high), else_=value)
    if low is not None:
        value = case((value < low, low), else_=value)
    return value


def recorded_use(db: Engine, since: float, now: float) -> dict[str, Totals]:
    """Per profile, the sessions ended since ``since``, summed by the database (one row per
    profile, whatever the number of sessions), and the waits of the latest MAX_WAITS that
    ran: an admin's page over 366 days reads a bounded answer."""
    c = SESSIONS.c
    ran_for = _clamped(_clamped(c.ended, high=now) - _clamped(c.started, low=since), low=0.0)
    seconds = func.sum(case((c.started > 0, c.cores * ran_for), else_=0.0))
    out: dict[str, Totals] = {}
    with db.connect() as conn:
        for profile, count, total in conn.execute(
                select(c.profile, func.count(), seconds).where(c.ended >= since)
                .group_by(c.profile)):
            out[profile] = Totals(int(count), float(total or 0.0))
        for profile, wait in conn.execute(
                select(c.profile, c.started - c.submitted)
                .where(c.ended >= since, c.started > 0)
                .order_by(c.ended.desc()).limit(MAX_WAITS)):
            out.setdefault(profile, Totals()).waits.append(max(0.0, float(wait)))
    return out


def use_by_profile(sessions: Iterable[Session], since: float, now: float | None = None,
                   recorded: Mapping[str, Totals] | None = None) -> list[ProfileUse]:
    """Per profile over [since, now]: sessions that ran or waited in it, core-hours run
    within it, and the median wait of those that started; ``sessions`` (the live ones, or
    any list) added to what the database summed (``recorded``)."""
    now = time.time() if now is None else now
    by = {name: Totals(t.sessions, t.core_seconds, list(t.waits))
          for name, t in (recorded or {}).items()}
    for s in sessions:
        if s.ended < since:
            continue
        totals = by.setdefault(s.profile, Totals())
        totals.sessions += 1
        if s.started:
            totals.core_seconds += s.cores * max(0.0, min(s.ended, now) - max(s.started, since))
            totals.waits.append(max(0.0, s.started - s.submitted))
    return [ProfileUse(profile, t.sessions, t.core_seconds / 3600,
                       statistics.median(t.waits) if t.waits else None)
            for profile, t in sorted(by.items())]
