"""One status query per backend per interval for ALL jobs of this hub, fanned out to spawners.

Fast while any job is starting, slow when all run, with jitter. A job is ended only when the
scheduler says so: a query lists it as ended, accounting explains it, or ``confirm_queries``
good queries over at least ``confirm_seconds`` do not list it. A failed query makes every
job UNKNOWN; a good query that lists none of several jobs seen alive is an outage too.
A record counts as this hub's only if its tag is this hub's (or the tag a followed job was
submitted with, whatever the hub is called now) and its owner is the user the tag names.
Jobs with our tag that no server owns are cancelled (orphans) in the background, a few at a
time, with capped retries; only users the hub knows are ever cancelled. A server's Dask
worker jobs (its tag + ``/dask``, hpcspawner.dask) are owned while their server is followed,
cancelled when it stops, and orphans once it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends.base import Backend
from .cancels import CancelQueue
from .commands import CommandError
from .contract import TAG_ROOT, server_tag, tag_user
from .domain import JobInfo, JobState
from .metrics import ORPHANS, POLL
from .oneline import one_line, shown

log = logging.getLogger("hpcspawner.poller")  # default; spawners pass the hub's logger
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass
class Watched:
    """Everything the poller remembers about one job it follows."""

    since: float  # monotonic time it was first watched
    tag: str = ""  # the tag it was submitted with (the hub may have been renamed since)
    starting: bool = False
    on_gone: Callable[[JobInfo], None] | None = None
    last_seen: JobInfo | None = None  # the last time a query listed it alive
    explained: JobInfo | None = None  # accounting's word on why it ended
    missed: int = 0  # good queries in a row that did not list it
    missed_since: float | None = None  # monotonic time of the first of those
    gone: JobInfo | None = None  # confirmed ended


def log_end(logger: Logger, info: JobInfo, source: str) -> None:
    """The hub's one line on a job's end: why, and which answer of the scheduler said so."""
    logger.info("job %s ended: %s (confirmed by %s)", info.job_id,
                one_line(info.reason or info.state.value), source)


def listed_as_ended(backend: Backend) -> str:
    """The source of an end the scheduler's own queue lists (for log_end)."""
    return f"{backend.queue_tool}, which lists it as ended"


class Poller:
    def __init__(self, backend: Backend, tag_prefix: str, *, fast: float = 1.0,
                 slow: float = 30.0, jitter: float = 0.1, orphan_grace: float | None = None,
                 confirm_queries: int = 3, confirm_seconds: float = 60.0,
                 max_cancel_attempts: int = 5, cancel_concurrency: int = 4,
                 is_hub_user: Callable[[str], bool] | None = None,
                 logger: Logger | None = None):
        self.log = logger or log
        self.backend = backend
        self.tag_prefix = tag_prefix
        self.fast = fast
        self.slow = slow
        self.jitter = jitter
        self.orphan_grace = slow if orphan_grace is None else orphan_grace
        self.confirm_queries = confirm_queries
        self.confirm_seconds = confirm_seconds
        self.is_hub_user = is_hub_user or (lambda _name: True)
        self.cancels = CancelQueue(backend, self.log, max_attempts=max_cancel_attempts,
                                   concurrency=cancel_concurrency, done=self._cancelled)
        self._mass_missing = False  # a good query listed none of several live jobs
        self.results: dict[str, JobInfo] = {}
        self.error: str = ""  # non-empty while the scheduler is not answering
        self.outage_since: float | None = None
        self.query_count = 0
        self.jobs: dict[str, Watched] = {}
        self._submitting: dict[str, int] = {}  # tag -> submissions in flight
        self._orphan_seen: dict[str, float] = {}
        self._disowned: set[str] = set()  # records whose tag names another user: logged once
        self._strangers: set[str] = set()  # tagged jobs of users the hub does not know: logged
        self._query_started = 0.0
        self._extra_at = -1e9  # monotonic time of the last refresh_soon() query
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
        self.cancels.stop()

    def watch(self, job_id: str, *, tag: str = "", starting: bool = False,
              on_gone: Callable[[JobInfo], None] | None = None) -> None:
        """Follow ``job_id`` (submitted with ``tag``); ``on_gone`` is called once when the
        job's end is confirmed."""
        job = self.jobs.setdefault(job_id, Watched(since=time.monotonic()))
        if tag:
            job.tag = tag
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
        job = self.jobs.get(job_id)
        if job is not None and job.gone is not None:
            return job.gone
        info = self.results.get(job_id)
        if info is not None:
            return info
        if job is not None and job.since < self._query_started and self.query_count:
            seen = job.last_seen
            return JobInfo(job_id=job_id, state=JobState.UNKNOWN, host=seen.host if seen else "",
                           reason=self._unlisted(job))
        return None

    def queried_since(self, moment: float) -> bool:
        """Did the last finished query start after ``moment`` (time.monotonic())?"""
        return self.query_count > 0 and self._query_started > moment

    def covered(self, job_id: str) -> bool:
        """Has a finished query (or accounting) said anything of this job since it was
        watched? Until then an UNKNOWN from latest() only means "not asked yet" (a query that
        began before the watch, or one still under way), not that the job is missing."""
        job = self.jobs.get(job_id)
        return job is None or job.gone is not None or job.last_seen is not None or \
            job.missed > 0

    def _unlisted(self, job: Watched) -> str:
        if self._mass_missing:
            return (f"{self.backend.name} lists none of this hub's running jobs; treating it "
                    "as an outage")
        return (f"the scheduler does not list the job; confirming ({job.missed} of "
                f"{self.confirm_queries} queries)")

    def _vanished(self, job_id: str, job: Watched) -> JobInfo:
        """A job no longer listed: say what we last saw of it."""
        seen = job.last_seen
        reason = (f"the scheduler stopped listing the job ({job.missed} queries over "
                  f"{time.monotonic() - (job.missed_since or time.monotonic()):.0f} s)")
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

    async def refresh_soon(self) -> None:
        """A fresher answer for a caller that cannot wait for the next cycle (a launcher's
        report): join the query under way, or start one, but never more than one such extra
        query per fast interval, however many callers ask; otherwise wait (at most a fast
        interval) for the next regular query."""
        if self._inflight is not None and not self._inflight.done():
            await asyncio.shield(self._inflight)
        elif time.monotonic() - self._extra_at >= self.fast:
            self._extra_at = time.monotonic()
            await self.refresh()
        else:
            await self.wait_update(self.fast)

    async def wait_update(self, timeout: float) -> None:
        """Return after the next query finishes, or after ``timeout`` seconds."""
        event = self._updated
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def retry_cancel(self, job_id: str, username: str, tag: str) -> None:
        """Cancel ``job_id`` later (the next sweep), after a cancel failed."""
        self.cancels.add(job_id, username, tag)
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
                    self.find_orphans()
                    self._cancel_in_background()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one bad cycle
                self.log.exception("poller cycle for %s failed", self.backend.name)

    async def _query(self) -> None:
        started = time.monotonic()
        self.query_count += 1
        try:
            # every hpcspawner tag: a followed job keeps the tag it was submitted with
            results = await self.backend.query(TAG_ROOT, list(self.jobs))
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
            self._forget_strangers(set(results))
            results = {k: v for k, v in results.items() if self._believable(v)}
            self.results = await self._with_routes(results)
            self._query_started = started
            await self._note_changes(started)
        finally:
            POLL.labels(self.backend.name).observe(time.monotonic() - started)
            event, self._updated = self._updated, asyncio.Event()
            event.set()

    async def _with_routes(self, results: dict[str, JobInfo]) -> dict[str, JobInfo]:
        """Where the starting jobs run, from records their owners cannot write
        (``Backend.route_hosts``: SLURM's node list, HTCondor's slot ads), asked only for the
        running jobs that still wait for their report."""
        wanted = [info for job_id, info in results.items() if info.state is JobState.RUNNING
                  and job_id in self.jobs and self.jobs[job_id].starting]
        if not wanted:
            return results
        try:
            hosts = await self.backend.route_hosts(wanted)
        except (CommandError, OSError) as exc:
            self.log.warning("cannot tell where %d starting job(s) run: %s", len(wanted), exc)
            hosts = {}
        for info in wanted:
            results[info.job_id] = dataclasses.replace(info, host=hosts.get(info.job_id, ""))
        return results

    def _forget_strangers(self, listed: set[str]) -> None:
        """The ids of foreign records (logged once) are kept only while the scheduler lists
        them: a flood of such jobs must not grow the hub's memory for ever."""
        for seen in (self._disowned, self._strangers):
            seen.intersection_update(listed)
        self.cancels.forget_unlisted(listed)

    def _believable(self, info: JobInfo) -> bool:
        """A record is this hub's only if its tag is (this hub's, or the one a followed job
        was submitted with) and its owner is the user the tag names. (UNKNOWN records carry
        no owner: they only keep a followed job as it was.)"""
        followed = self.jobs.get(info.job_id)
        if info.state is JobState.UNKNOWN:
            return followed is not None
        ours = info.tag.startswith(self.tag_prefix) or (
            followed is not None and bool(followed.tag) and info.tag == followed.tag)
        if ours and info.user and tag_user(info.tag) == info.user:
            return True
        if not ours:
            return False
        if info.job_id not in self._disowned:
            self._disowned.add(info.job_id)
            self.log.warning("job %s carries the tag %s but belongs to %s; ignoring it",
                             info.job_id, shown(info.tag), shown(info.user))
        return False

    async def _note_changes(self, started: float) -> None:
        """Remember what watched jobs look like; confirm and announce those that ended."""
        now = time.monotonic()
        ended: dict[str, str] = {}  # job id -> which source confirmed its end (for the log)
        unlisted: list[str] = []
        alive = 0
        for job_id, job in self.jobs.items():
            if job.gone is not None:
                continue
            info = self.results.get(job_id)
            if info is not None and info.state is JobState.UNKNOWN:
                continue
            if info is not None and info.state is not JobState.GONE:
                job.last_seen, job.missed, job.missed_since = info, 0, None
                alive += 1
            elif info is not None:  # the query itself lists it as ended
                job.gone = info
                ended[job_id] = listed_as_ended(self.backend)
            elif job.since < started:
                unlisted.append(job_id)
        # A good answer that lists none of several jobs it listed before is an outage (a
        # purged queue, PrivateData, a fail-over controller), not a mass death.
        seen_before = [j for j in unlisted if self.jobs[j].last_seen is not None]
        self._mass_missing = alive == 0 and len(seen_before) >= 2
        if self._mass_missing:
            self.log.warning("%s lists none of %d running jobs of this hub; keeping them all "
                             "until it does", self.backend.name, len(seen_before))
        unexplained = [j for j in unlisted if self.jobs[j].explained is None]
        if unexplained:
            try:
                explained = await self.backend.explain_gone(unexplained)
            except (CommandError, OSError) as exc:
                self.log.debug("no accounting answer for %s: %s", unexplained, exc)
                explained = {}
            for job_id, info in explained.items():
                if job_id in self.jobs:
                    self.jobs[job_id].explained = info
        for job_id in unlisted:
            if job_id not in self.jobs:  # unwatched while accounting was asked
                continue
            job = self.jobs[job_id]
            if job.explained is not None:  # accounting says it ended
                job.gone = job.explained
                ended[job_id] = f"{self.backend.accounting_tool} (accounting)"
                continue
            if self._mass_missing:
                continue
            job.missed += 1
            job.missed_since = job.missed_since or now
            if job.missed >= self.confirm_queries and \
                    now - job.missed_since >= self.confirm_seconds:
                ended[job_id] = (f"{job.missed} answers of {self.backend.queue_tool} over "
                                 f"{now - (job.missed_since or now):.0f} s that no longer list it")
                job.gone = self._vanished(job_id, job)
        for job_id, source in ended.items():
            gone = self.jobs.get(job_id)
            if gone is None or gone.gone is None:
                continue
            log_end(self.log, gone.gone, source)
            if gone.on_gone is None:
                continue
            callback, gone.on_gone = gone.on_gone, None
            callback(gone.gone)

    def find_orphans(self) -> None:
        """Queue a cancel for each job with our tag that no server owns (after the grace)."""
        if self.error or self._mass_missing:
            return
        now = time.monotonic()
        key = self.backend.job_key
        owned = {(self.results[j].tag, key(j)) for j in self.jobs if j in self.results}
        servers = {job.tag for job in self.jobs.values() if job.tag}
        for job_id, info in list(self.results.items()):
            if not info.state.alive or info.state is JobState.UNKNOWN or job_id in self.jobs:
                continue
            if (info.tag, key(job_id)) in owned:  # the same job under another name
                continue
            if server_tag(info.tag) in servers:  # a Dask worker of a followed server
                continue
            if info.tag in self._submitting or job_id in self.cancels or \
                    job_id in self._strangers:
                continue
            if not self.is_hub_user(info.user):
                self._strangers.add(job_id)
                self.log.warning("job %s carries this hub's tag but %s is not a user of this "
                                 "hub; leaving it alone", job_id, shown(info.user))
                continue
            first = self._orphan_seen.setdefault(job_id, now)
            if now - first >= self.orphan_grace:
                self.log.warning("job %s (%s) has our tag but no server owns it; cancelling it",
                                 job_id, shown(info.tag))
                self.cancels.add(job_id, info.user, info.tag)
        for job_id in list(self._orphan_seen):
            if job_id not in self.results or job_id in self.jobs:
                self._orphan_seen.pop(job_id, None)

    async def cancel_workers(self, tag: str) -> None:
        """Cancel the Dask worker jobs of the server tagged ``tag`` (it stops): those the
        next query lists (shared, at most one per fast interval), now."""
        await self.refresh_soon()
        for job_id, info in list(self.results.items()):
            if server_tag(info.tag) == tag and info.state.alive and job_id not in self.jobs:
                self.cancels.add(job_id, info.user, info.tag, again=False)
        await self.retry_cancels()

    async def sweep(self) -> None:
        """Find orphans and cancel them (and retry failed cancels) now."""
        self.find_orphans()
        await self.retry_cancels()

    def _cancel_in_background(self) -> None:
        """Cancels run beside the poll loop, never inside it: a slow scancel must not delay
        the next status query."""
        self.cancels.run_in_background(self.results)

    async def retry_cancels(self) -> None:
        """Each pending cancel once, a few at a time (CancelQueue.run)."""
        await self.cancels.run(self.results)

    def _cancelled(self, job_id: str) -> None:
        if self._orphan_seen.pop(job_id, None) is not None:
            ORPHANS.labels(self.backend.name).inc()
