"""More time for a running server (docs/sessions.md): within its profile's
``extend.max_runtime``, only for the job the scheduler lists now as this server's running
job, through its backend (the hub raises the limit; a job's owner cannot). Every refusal is a
sentence for the user (ExtendRefused) and changes nothing; the card says what the last try
did."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Collection
from typing import Any

from . import sentences
from .backends.base import Backend, ExtendBlocked, ExtendRefused
from .domain import JobState
from .job import BatchJob
from .profiles import Profile
from .units import format_duration, parse_duration


async def extend_by(job: BatchJob, raw: object) -> float:
    """More time as a user asked it: ``raw`` a duration (1h), or the profile's step when
    empty; the new end. The card shows what it did (``extend_note``): the new end, or the
    sentence of the ExtendRefused it raises."""
    profile = job.plan.profile if job.plan is not None else None
    step = profile.extend.step if profile is not None and profile.extend else 0
    text = str(raw) if raw not in (None, "") else f"{step}s"
    try:
        try:
            by = int(parse_duration(text))
        except ValueError:
            raise ExtendRefused(f"{text[:40]!r} is not a duration; ask e.g. for 1h.") from None
        ends = await extend(job, by)  # (a profile without extend: refused first)
    except ExtendRefused as exc:
        job.note_extend(str(exc))
        raise
    job.note_extend(f"Given {format_duration(by)} more at {sentences.clock(time.time())}: it "
                    f"now runs until {sentences.clock(ends)}.")
    return ends


async def extend(job: BatchJob, by: int) -> float:
    """Give the running server ``by`` seconds more, within its profile's
    ``extend.max_runtime``; the new end (epoch). ExtendRefused with a sentence for the user
    otherwise, and nothing changes. The job is checked to be this server's running job in a
    fresh query first: the hub raises only its own job's limit."""
    profile = job.plan.profile if job.plan is not None else None
    settings = profile.extend if profile is not None else None
    if profile is None or settings is None:
        raise ExtendRefused("This server's profile does not allow more time; save your work "
                            "before the end.")
    blocked = extend_check(job.ctx.backend).blocked
    if blocked is not None:
        raise ExtendRefused(blocked.card)
    if job.address is None or job.exited or job.stopping:
        raise ExtendRefused("Only a running server can be given more time.")
    if by <= 0:
        raise ExtendRefused("Ask for more time as a positive duration, e.g. 1h.")
    async with job.extending:
        info = await job.fresh_status()
        if (info is None or info.state is not JobState.RUNNING or info.tag != job.tag
                or info.user != job.username):
            raise ExtendRefused(f"The scheduler does not list job {job.job_id} as this "
                                "server's running job now; nothing was changed.")
        ends, limit = job.time_limit()
        most = settings.max_runtime
        if limit + by > most:
            room = most - limit
            more = (f"; you may add at most {format_duration(room)}" if room >= 60
                    else "; save your work before the end")
            raise ExtendRefused(
                f"This server may run {format_duration(most)} at most (its profile's "
                f"extend.max_runtime) and has {format_duration(limit)} already{more}.")
        await job.ctx.backend.extend(job.job_id, limit + by, profile)
        job.was_extended(limit + by, (ends or job.ends_at) + by)
        job.ctx.log.info("%s: job %s was given %s more; it may run %s in all", job.ctx.name,
                         job.job_id, format_duration(by), format_duration(job.runtime))
        return job.ends_at


class ExtendCheck:
    """Whether the hub can give one backend's servers more time on this cluster: the backend
    is asked (``Backend.extend_blocker``) once per set of its profiles that allow more time
    (the hub's start, a profiles.yaml edit), never per card, and each new answer is said once
    in the hub's log. The cards and every request for more time read ``blocked``."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.blocked: ExtendBlocked | None = None  # the last answer
        self._key: tuple[Any, ...] | None = None
        self._task: asyncio.Task[Any] | None = None

    async def check(self, profiles: Collection[Profile]) -> ExtendBlocked | None:
        """The backend's answer, asked again only when its profiles that allow more time
        changed; None without such profiles."""
        backend = self.backend
        key = tuple(sorted((p.name, p.extend.step, p.extend.max_runtime) for p in profiles
                           if p.backend == backend.name and p.extend is not None))
        if not key or key == self._key:
            return self.blocked if key else None
        self._key = key
        try:
            blocked = await backend.extend_blocker()
        except Exception as exc:  # a scheduler's odd answer: the card offers, a try tells
            backend.log.warning("hpcspawner: cannot tell whether servers on %s can be given "
                                "more time: %s: %s", backend.name, type(exc).__name__, exc)
            blocked = None
        if blocked != self.blocked:
            if blocked is not None:
                backend.log.warning("hpcspawner: the session cards offer no more time on %s: "
                                    "%s", backend.name, blocked.operator)
            elif self.blocked is not None:
                backend.log.info("hpcspawner: servers on %s can be given more time again",
                                 backend.name)
        self.blocked = blocked
        return blocked

    def watch(self, profiles: Collection[Profile]) -> None:
        """``check`` in the background (from the hub's event loop; nothing without one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done():
            self._task = loop.create_task(self.check(list(profiles)))

    async def warnings(self, profile: Profile) -> list[str]:
        """``hpcspawner check``'s warning for a profile with ``extend:`` that the hub cannot
        honour on this cluster (at the line of ``extend``)."""
        if profile.extend is None:
            return []
        blocked = await self.check([profile])
        return [f"extend: {blocked.operator}"] if blocked is not None else []


_CHECKS: weakref.WeakKeyDictionary[Backend, ExtendCheck] = weakref.WeakKeyDictionary()


def extend_check(backend: Backend) -> ExtendCheck:
    """The one ExtendCheck of ``backend`` (made on first use)."""
    found = _CHECKS.get(backend)
    if found is None:
        found = _CHECKS[backend] = ExtendCheck(backend)
    return found
