"""Session cards (docs/sessions.md): what the hub's home page, the admins' page and the
metrics show of each batch server, in words, from its spawner and the job it holds: profile
and app, state (queued with the scheduler's reason and expected start, starting, running,
ending), node and job id, limits, start and end (the scheduler's end: an extension or an
admin's change shows within a poll), the warning before the end, and whether it can be
extended (and why not). No tornado, no handlers: sessions.py serves these."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from . import job_usage, moretime, sentences, session_records
from .backends.base import ExtendRefused
from .domain import JobState
from .oneline import shown
from .units import format_duration, show_size

log = logging.getLogger("hpcspawner.cards")


@dataclass(frozen=True)
class Card:
    server: str  # "" for the default server
    label: str
    url: str
    profile: str
    state: str  # queued, starting, running, ending
    state_words: str
    job_id: str
    node: str
    limits: str
    started: float  # epoch; 0 unknown
    ends: float  # epoch; 0 unknown
    warning: str  # said once the end is walltime_warning away
    warn_before: int
    can_extend: bool
    extend_step: str  # "1 h"
    extend_note: str  # why it cannot be extended, or what the last try did
    used_words: str = ""  # "used 0:05:00;" (the page's script counts on)
    left_words: str = ""  # "11:55:00 left"
    ends_words: str = ""  # "(ends 2026-12-02 18:00 UTC)"
    usage_words: str = ""  # "1.2 GiB of 12 GiB memory, 0.4 of 1 core (20 s ago)"
    since_words: str = ""  # "queued since 2026-12-02 10:42 UTC"


def limits(resources: Any) -> str:
    """"1 core, 12 GiB" (and GPUs): what the job holds, without its time."""
    if resources is None:
        return ""
    parts = [f"{resources.cores} core" + ("s" if resources.cores != 1 else ""),
             show_size(resources.memory)]
    if resources.gpus:
        model = f" {resources.gpu_model}" if resources.gpu_model else ""
        parts.append(f"{resources.gpus}{model} GPU" + ("s" if resources.gpus != 1 else ""))
    return ", ".join(parts)


def hms(seconds: float) -> str:
    """12:05:09 (the cards' clock; the page's script writes the same)."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def card(spawner: Any, now: float | None = None) -> Card | None:
    """The card of one server of ``spawner``'s (None when it has no batch job)."""
    job = getattr(spawner, "job", None)
    if job is None or not job.job_id or job.ended is not None:
        return None
    now = time.time() if now is None else now
    info = job.latest()
    ends, limit = job.time_limit()
    started = info.starts if info is not None and info.starts and job.address else 0.0
    node = info.host if info is not None and info.state is JobState.RUNNING else ""
    if job.stopping or job.exited:
        state, words = "ending", "Stopping: the job is being cancelled."
    elif job.address is not None:
        node = node or job.address[0]
        state = "ending" if ends and ends - now <= 0 else "running"
        words = f"Running on {node}." if state == "running" else "Its time limit has ended."
    elif info is not None and info.state in (JobState.PENDING, JobState.HELD):
        state = "queued"
        why = f": {sentences.explain(info)}" if info.reason else ""
        words = f"Queued{why}."
        if info.starts and info.starts > now:
            words += " " + sentences.expected_start(info.starts, now)
    else:
        state, words = "starting", "Starting" + (f" on {node}." if node else ".")
    profile = job.plan.profile if job.plan is not None else None
    settings = profile.extend if profile is not None else None
    can, note = False, ""
    blocked = moretime.extend_check(job.ctx.backend).blocked  # (asked once, not per card)
    if settings is None:
        note = "This server's profile does not allow more time."
    elif blocked is not None:
        note = blocked.card
    elif state != "running":
        note = "More time can be given once the server runs."
    elif limit + settings.step > settings.max_runtime:
        note = (f"This server has the most time its profile allows "
                f"({format_duration(settings.max_runtime)}).")
    else:
        can = True
    if can:  # what the last try did (given, or the scheduler's refusal)
        note = job.extend_note
    warn_before = int(spawner.walltime_warning)
    warning = ""
    if state == "running" and ends and ends - now <= warn_before:
        warning = sentences.walltime_warning(spawner.name, spawner.profile_title, ends,
                                            ends - now, can)
    shown_ends = float(ends or 0) if state in ("running", "ending") else 0.0
    return Card(
        used_words=f"used {hms(now - started)};" if started else "",
        left_words=f"{hms(shown_ends - now)} left" if shown_ends else "",
        ends_words=f"(ends {sentences.clock(shown_ends)})" if shown_ends else "",
        usage_words=job_usage.words(job.usage, job.resources, now) if state == "running" else "",
        since_words=f"{state} since {sentences.clock(info.since)}" if info is not None
        and info.since and state == "queued" else "",
        server=spawner.name, label=f"Server {spawner.name!r}" if spawner.name else
        "Default server", url=spawner.user.url + (f"{spawner.name}/" if spawner.name else ""),
        profile=spawner.home_title, state=state, state_words=words, job_id=job.job_id,
        node=node, limits=limits(job.resources), started=float(started or 0),
        ends=shown_ends, warning=warning,
        warn_before=warn_before, can_extend=can,
        extend_step=format_duration(settings.step) if settings else "", extend_note=note)


def live_session(spawner: Any, now: float | None = None) -> session_records.Session | None:
    """A server's batch session that has not ended, as the use-by-profile table counts it
    (up to now)."""
    job = getattr(spawner, "job", None)
    if job is None or not job.job_id or job.ended is not None or job.recorded:
        return None  # (a recorded one is being stopped: its end is in the records)
    return session_records.of_job(job, time.time() if now is None else now)


def spawner_of(user: Any, server: str) -> Any:
    """``user``'s spawner of the server named ``server``; None when she has no such server
    (looked up without creating one: ``user.spawners`` makes a spawner for any name)."""
    return user.spawners.get(server) if server in user.orm_user.orm_spawners else None


def cards(user: Any) -> list[Card]:
    found = (safe_card(s) for s in user.all_spawners(include_default=True))
    return [c for c in found if c is not None]


def safe_card(spawner: Any, now: float | None = None) -> Card | None:
    """``card``, or None (logged) when this one server's facts cannot be shown: one bad
    card never breaks a page or a scrape that shows the others."""
    try:
        return card(spawner, now)
    except Exception as exc:  # any one server's fault stays with that server
        log.warning("hpcspawner: no card for %s's server %s: %s: %s",
                    shown(getattr(getattr(spawner, "user", None), "name", "?"), 80),
                    shown(getattr(spawner, "name", "?"), 80), type(exc).__name__, shown(exc))
        return None


async def extend(user: Any, server: str, raw_by: object) -> float:
    """Give ``user``'s server ``server`` the time ``raw_by`` says (a duration like 1h; the
    profile's step when not said) more; the new end. ExtendRefused says why not, and the
    card shows it (BatchJob.extend_by)."""
    job = getattr(spawner_of(user, server), "job", None)
    if job is None or not job.job_id:
        raise ExtendRefused(f"There is no running server {server!r} to give more time.")
    return await moretime.extend_by(job, raw_by)


def server_state(spawner: Any) -> tuple[str, str] | None:
    """(profile, card state) of a spawner's batch server for the metrics; None: none."""
    found = safe_card(spawner)
    job = getattr(spawner, "job", None)
    if found is None or job is None:
        return None
    return job.profile_name or "other", found.state  # a profile of the site's
