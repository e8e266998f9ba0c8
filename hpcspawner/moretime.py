"""More time for a running server (docs/sessions.md): within its profile's
``extend.max_runtime``, only for the job the scheduler lists now as this server's running
job, through its backend (the hub raises the limit; a job's owner cannot). Every refusal is a
sentence for the user (ExtendRefused) and changes nothing; the card says what the last try
did."""

from __future__ import annotations

import time

from . import sentences
from .backends.base import ExtendRefused
from .domain import JobState
from .job import BatchJob
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
    blocked = job.ctx.backend.extend_blocked
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
