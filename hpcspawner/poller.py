"""One status query per backend per interval for ALL jobs of this hub, fanned out to spawners.

Fast while any job is starting, slow when all run, with jitter. A failed query makes every
job UNKNOWN (never gone). A record counts as this hub's only if the job's owner is the user
its tag names (anyone can write a tag). Jobs with our tag that no server owns are cancelled
(orphans), and cancels that failed are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends.base import Backend, BackendError, JobInfo, JobState
from .commands import CommandError

log = logging.getLogger("hpcspawner.poller")  # default; spawners pass the hub's logger
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass
class Watched:
    """Everything the poller remembers about one job it follows."""

    since: float  # monotonic time it was first watched
    starting: bool = False
    on_gone: Callable[[JobInfo], None] | None = None
    last_seen: JobInfo | None = None  # the last time a query listed it alive
    explained: JobInfo | None = None  # accounting's word on why it ended


@dataclass
class _Cancel:
    username: str
    tag: str
    attempts: int = 0


class Poller:
    def __init__(self, backend: Backend, tag_prefix: str, *, fast: float = 1.0,
                 slow: float = 30.0, jitter: float = 0.1, orphan_grace: float | None = None,
                 logger: Logger | None = None):
        self.log = logger or log
        self.backend = backend
        self.tag_prefix = tag_prefix
        self.fast = fast
        self.slow = slow
        self.jitter = jitter
        self.orphan_grace = slow if orphan_grace is None else orphan_grace
        self.results: dict[str, JobInfo] = {}
        self.error: str = ""  # non-empty while the scheduler is not answering
        self.outage_since: float | None = None
        self.query_count = 0
        self.jobs: dict[str, Watched] = {}
        self._submitting: dict[str, int] = {}  # tag -> submissions in flight
        self._orphan_seen: dict[str, float] = {}
        self._cancels: dict[str, _Cancel] = {}
        self._disowned: set[str] = set()  # records whose tag names another user: logged once
        self._refused: set[str] = set()  # cancels the helper refused: never tried again
        self._query_started = 0.0
        self._last_sweep = 0.0
        self._inflight: asyncio.Task[None] | None = None
        self._updated = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what jobs call ------------------------------------------------------------------------
    def start(self) -> None:
        """Run the polling loop (from the hub's event loop; later calls are no-ops)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet (a CLI or test building spawners): the first refresh starts it
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def watch(self, job_id: str, *, starting: bool = False,
              on_gone: Callable[[JobInfo], None] | None = None) -> None:
        """Follow ``job_id``; ``on_gone`` is called once when a query shows it ended."""
        job = self.jobs.setdefault(job_id, Watched(since=time.monotonic()))
        if on_gone is not None:
            job.on_gone = on_gone
        self._orphan_seen.pop(job_id, None)
        if starting:
            job.starting = True
            self._wake.set()
        self.start()

    def unwatch(self, job_id: str) -> None:
        self.jobs.pop(job_id, None)

    def started(self, job_id: str) -> None:
        """The job's server is up: slow polling is enough for it now."""
        job = self.jobs.get(job_id)
        if job is not None:
            job.starting = False

    def submitting(self, tag: str) -> Callable[[], None]:
        """Mark a submission in flight (its job must not look like an orphan); returns done()."""
        self._submitting[tag] = self._submitting.get(tag, 0) + 1

        def done() -> None:
            left = self._submitting.get(tag, 1) - 1
            if left:
                self._submitting[tag] = left
            else:
                self._submitting.pop(tag, None)

        return done

    def latest(self, job_id: str) -> JobInfo | None:
        """The last word on a job; None when no query has covered it yet."""
        if self.error:
            known = self.results.get(job_id)
            return JobInfo(job_id=job_id, state=JobState.UNKNOWN, reason=self.error,
                           host=known.host if known else "")
        info = self.results.get(job_id)
        if info is not None:
            return info
        job = self.jobs.get(job_id)
        if job is not None and job.since < self._query_started and self.query_count:
            return job.explained or self._vanished(job_id, job)
        return None

    def _vanished(self, job_id: str, job: Watched) -> JobInfo:
        """A job no longer listed: say what we last saw of it."""
        seen = job.last_seen
        reason = "the scheduler no longer lists the job"
        if seen is not None:
            where = f" on {seen.host}" if seen.host else ""
            reason += f" (last seen {seen.state.value}{where})"
        return JobInfo(job_id=job_id, state=JobState.GONE, reason=reason)

    async def refresh(self) -> None:
        """Query now, or join the query already under way."""
        self.start()
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.ensure_future(self._query())
        await asyncio.shield(self._inflight)

    async def wait_update(self, timeout: float) -> None:
        """Return after the next query finishes, or after ``timeout`` seconds."""
        event = self._updated
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def retry_cancel(self, job_id: str, username: str, tag: str) -> None:
        self._cancels[job_id] = _Cancel(username, tag)
        self.start()

    # -- the loop -----------------------------------------------------------------------------
    def interval(self) -> float:
        starting = any(job.starting for job in self.jobs.values())
        base = self.fast if starting else self.slow
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval())
            try:
                await self.refresh()
                if time.monotonic() - self._last_sweep >= self.slow:
                    self._last_sweep = time.monotonic()
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one bad cycle
                self.log.exception("poller cycle for %s failed", self.backend.name)

    async def _query(self) -> None:
        started = time.monotonic()
        self.query_count += 1
        try:
            results = await self.backend.query(self.tag_prefix, list(self.jobs))
        except (CommandError, OSError) as exc:
            if not self.error:
                self.outage_since = time.time()
                self.log.warning("%s is not answering; keeping all %d servers as they are "
                                 "until it does: %s", self.backend.name, len(self.jobs), exc)
            self.error = f"{self.backend.name} is not answering"
        else:
            if self.error:
                lasted = time.time() - (self.outage_since or time.time())
                self.log.info("%s answers again after %.0f s", self.backend.name, lasted)
            self.error, self.outage_since = "", None
            self.results = {k: v for k, v in results.items() if self._believable(v)}
            self._query_started = started
            await self._note_changes(started)
        finally:
            event, self._updated = self._updated, asyncio.Event()
            event.set()

    def _believable(self, info: JobInfo) -> bool:
        """A record is this hub's only if its owner is the user its tag names. (UNKNOWN
        records carry no owner: they only keep a followed job as it was.)"""
        if info.state is JobState.UNKNOWN:
            return info.job_id in self.jobs
        tag_user = info.tag[len(self.tag_prefix):].partition(":")[0]
        if info.tag.startswith(self.tag_prefix) and info.user and tag_user == info.user:
            return True
        if info.job_id not in self._disowned:
            self._disowned.add(info.job_id)
            self.log.warning("job %s carries the tag %r but belongs to %r; ignoring it",
                             info.job_id, info.tag[:200], info.user)
        return False

    async def _note_changes(self, started: float) -> None:
        """Remember what watched jobs look like; explain and announce those that ended."""
        ended: list[str] = []
        for job_id, job in list(self.jobs.items()):
            info = self.results.get(job_id)
            if info is not None and info.state is JobState.UNKNOWN:
                continue
            if info is not None and info.state is not JobState.GONE:
                job.last_seen = info
            elif info is not None or job.since < started:
                ended.append(job_id)
        missing = [j for j in ended if j not in self.results and self.jobs[j].explained is None]
        if missing:
            try:
                explained = await self.backend.explain_gone(missing)
            except (CommandError, OSError) as exc:
                self.log.debug("no accounting answer for %s: %s", missing, exc)
                explained = {}
            for job_id, info in explained.items():
                if job_id in self.jobs:
                    self.jobs[job_id].explained = info
        for job_id in ended:
            gone = self.jobs.get(job_id)
            callback, info = (gone.on_gone if gone else None), self.latest(job_id)
            if gone is not None:
                gone.on_gone = None
            if callback is not None and info is not None:
                callback(info)

    async def sweep(self) -> None:
        """Cancel jobs with our tag that no server owns; retry failed cancels."""
        if self.error:
            return
        now = time.monotonic()
        key = self.backend.job_key
        owned = {(self.results[j].tag, key(j)) for j in self.jobs if j in self.results}
        for job_id, info in list(self.results.items()):
            if not info.state.alive or info.state is JobState.UNKNOWN or job_id in self.jobs:
                continue
            if (info.tag, key(job_id)) in owned:  # the same job under another name
                continue
            if info.tag in self._submitting or job_id in self._cancels or \
                    job_id in self._refused:
                continue
            first = self._orphan_seen.setdefault(job_id, now)
            if now - first >= self.orphan_grace:
                self.log.warning("job %s (%s) has our tag but no server owns it; cancelling it",
                                 job_id, info.tag)
                self._cancels[job_id] = _Cancel(info.user, info.tag)
        for job_id in list(self._orphan_seen):
            if job_id not in self.results or job_id in self.jobs:
                self._orphan_seen.pop(job_id, None)
        await self.retry_cancels()

    async def retry_cancels(self) -> None:
        for job_id, cancel in list(self._cancels.items()):
            info = self.results.get(job_id)
            if info is not None and not info.state.alive:
                self._cancels.pop(job_id, None)
                continue
            cancel.attempts += 1
            try:
                await self.backend.cancel(job_id, cancel.username, cancel.tag)
            except BackendError as exc:  # refused (not that user's tagged job): never again
                self.log.warning("job %s was not cancelled: %s", job_id, exc)
                self._cancels.pop(job_id, None)
                self._refused.add(job_id)
            except (CommandError, OSError) as exc:
                self.log.warning("cancelling job %s failed (attempt %d), will retry: %s",
                                 job_id, cancel.attempts, exc)
            else:
                self.log.info("cancelled job %s of %s", job_id, cancel.username)
                self._cancels.pop(job_id, None)
                self._orphan_seen.pop(job_id, None)
