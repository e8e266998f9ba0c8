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

from sqlalchemy import (
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
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
