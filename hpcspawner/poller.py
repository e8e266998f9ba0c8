"""One status query per backend per interval for ALL jobs of this hub, fanned out to spawners.

Fast while any job is starting, slow when all run, with jitter. A failed query makes every
job UNKNOWN (never gone). Jobs with our tag that no server owns are cancelled (orphans), and
cancels that failed are retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from .backends.base import Backend, JobInfo, JobState
from .commands import CommandError

log = logging.getLogger("hpcspawner.poller")  # default; spawners pass the hub's logger


@dataclass
class _Cancel:
    username: str
    schedd: str | None
    pool: str | None
    attempts: int = 0


class Poller:
    def __init__(self, backend: Backend, tag_prefix: str, *, fast: float = 1.0,
                 slow: float = 30.0, jitter: float = 0.1, orphan_grace: float | None = None,
                 logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None):
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
        self._watched: dict[str, float] = {}  # job id -> when watched (monotonic)
        self._on_gone: dict[str, Callable[[JobInfo], None]] = {}
        self._last_seen: dict[str, JobInfo] = {}
        self._explained: dict[str, JobInfo] = {}
        self._starting: set[str] = set()
        self._submitting: dict[str, int] = {}  # tag -> submissions in flight
        self._orphan_seen: dict[str, float] = {}
        self._cancels: dict[str, _Cancel] = {}
        self._query_started = 0.0
        self._last_sweep = 0.0
        self._inflight: asyncio.Task[None] | None = None
        self._updated = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- what spawners call ------------------------------------------------------------------
    def start(self) -> None:
        """Run the polling loop (from the hub's event loop; later calls are no-ops)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet (a CLI or test building spawners): the first refresh starts it
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._loop())

    def watch(self, job_id: str, *, starting: bool = False,
              on_gone: Callable[[JobInfo], None] | None = None) -> None:
        """Follow ``job_id``; ``on_gone`` is called once when a query shows it ended."""
        self._watched.setdefault(job_id, time.monotonic())
        if on_gone is not None:
            self._on_gone[job_id] = on_gone
        self._orphan_seen.pop(job_id, None)
        if starting:
            self._starting.add(job_id)
            self._wake.set()
        self.start()

    def unwatch(self, job_id: str) -> None:
        self._watched.pop(job_id, None)
        self._starting.discard(job_id)
        self._on_gone.pop(job_id, None)
        self._last_seen.pop(job_id, None)
        self._explained.pop(job_id, None)

    def started(self, job_id: str) -> None:
        """The job's server is up: slow polling is enough for it now."""
        self._starting.discard(job_id)

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
        watched_at = self._watched.get(job_id)
        if watched_at is not None and watched_at < self._query_started and self.query_count:
            return self._explained.get(job_id) or self._vanished(job_id)
        return None

    def _vanished(self, job_id: str) -> JobInfo:
        """A job no longer listed: say what we last saw of it."""
        seen = self._last_seen.get(job_id)
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

    def retry_cancel(self, job_id: str, username: str, *, schedd: str | None = None,
                     pool: str | None = None) -> None:
        self._cancels[job_id] = _Cancel(username, schedd, pool)
        self.start()

    # -- the loop -----------------------------------------------------------------------------
    def interval(self) -> float:
        base = self.fast if self._starting else self.slow
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
                    await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any one bad cycle
                self.log.exception("poller cycle for %s failed", self.backend.name)

    async def _query(self) -> None:
        started = time.monotonic()
        self.query_count += 1
        try:
            results = await self.backend.query(self.tag_prefix)
        except (CommandError, OSError) as exc:
            if not self.error:
                self.outage_since = time.time()
                self.log.warning("%s is not answering; keeping all %d servers as they are until it "
                            "does: %s", self.backend.name, len(self._watched), exc)
            self.error = f"{self.backend.name} is not answering"
        else:
            if self.error:
                lasted = time.time() - (self.outage_since or time.time())
                self.log.info("%s answers again after %.0f s", self.backend.name, lasted)
            self.error, self.outage_since = "", None
            self.results = results
            self._query_started = started
            await self._note_changes(started)
        finally:
            event, self._updated = self._updated, asyncio.Event()
            event.set()

    async def _note_changes(self, started: float) -> None:
        """Remember what watched jobs look like; explain and announce those that ended."""
        ended: list[str] = []
        for job_id, watched_at in list(self._watched.items()):
            info = self.results.get(job_id)
            if info is not None and info.state is not JobState.GONE:
                self._last_seen[job_id] = info
            elif info is not None or watched_at < started:
                ended.append(job_id)
        missing = [j for j in ended if j not in self.results and j not in self._explained]
        if missing:
            try:
                self._explained.update(await self.backend.explain_gone(missing))
            except (CommandError, OSError) as exc:
                self.log.debug("no accounting answer for %s: %s", missing, exc)
        for job_id in ended:
            callback = self._on_gone.pop(job_id, None)
            info = self.latest(job_id)
            if callback is not None and info is not None:
                callback(info)

    async def _sweep(self) -> None:
        """Cancel jobs with our tag that no server owns; retry failed cancels."""
        if self.error:
            return
        now = time.monotonic()
        key = self.backend.job_key
        owned = {(self.results[j].tag, key(j)) for j in self._watched if j in self.results}
        for job_id, info in list(self.results.items()):
            if not info.state.alive or job_id in self._watched:
                continue
            if (info.tag, key(job_id)) in owned:  # the same job under another name
                continue
            if info.tag in self._submitting or job_id in self._cancels:
                continue
            first = self._orphan_seen.setdefault(job_id, now)
            if now - first >= self.orphan_grace:
                self.log.warning("job %s (%s) has our tag but no server owns it; cancelling it",
                            job_id, info.tag)
                self._cancels[job_id] = _Cancel(info.user, None, None)
        for job_id in list(self._orphan_seen):
            if job_id not in self.results or job_id in self._watched:
                self._orphan_seen.pop(job_id, None)
        await self._retry_cancels()

    async def _retry_cancels(self) -> None:
        for job_id, cancel in list(self._cancels.items()):
            info = self.results.get(job_id)
            if info is not None and not info.state.alive:
                self._cancels.pop(job_id, None)
                continue
            cancel.attempts += 1
            try:
                await self.backend.cancel(job_id, cancel.username, schedd=cancel.schedd,
                                          pool=cancel.pool)
            except (CommandError, OSError) as exc:
                self.log.warning("cancelling job %s failed (attempt %d), will retry: %s",
                            job_id, cancel.attempts, exc)
            else:
                self.log.info("cancelled job %s of %s", job_id, cancel.username)
                self._cancels.pop(job_id, None)
                self._orphan_seen.pop(job_id, None)


_POLLERS: dict[str, Poller] = {}


def forget_pollers() -> None:
    """Drop all pollers (a benchmark or test that runs several event loops in turn)."""
    for poller in _POLLERS.values():
        if poller._task is not None:
            poller._task.cancel()
    _POLLERS.clear()


def get_poller(key: str, factory: Callable[[], Poller]) -> Poller:
    """The one poller for ``key`` (backend + hub tag) in this hub process."""
    poller = _POLLERS.get(key)
    if poller is None:
        poller = _POLLERS[key] = factory()
    return poller
