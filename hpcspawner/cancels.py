"""The cancels a poller owes: orphans (jobs with the hub's tag that no server owns), the Dask
workers of a stopped server, and cancels that failed and are tried again. A few run at a time,
beside the poll loop; one that keeps failing is given up after a set number of attempts, and
one the helper refuses (not that user's tagged job) is never tried again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from .backends.base import Backend, BackendError
from .commands import CommandError
from .domain import JobInfo

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass
class _Cancel:
    username: str
    tag: str
    attempts: int = 0


class CancelQueue:
    def __init__(self, backend: Backend, log: Logger, *, max_attempts: int = 5,
                 concurrency: int = 4, done: Callable[[str], None] = lambda _job_id: None):
        self.backend = backend
        self.log = log
        self.max_attempts = max_attempts
        self.done = done  # told each job id that was cancelled
        self._pending: dict[str, _Cancel] = {}
        self._refused: set[str] = set()  # refused or given up: never tried again
        self._slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, job_id: object) -> bool:
        """Whether the job is to be cancelled, or was given up (either way: not again)."""
        return job_id in self._pending or job_id in self._refused

    def add(self, job_id: str, username: str, tag: str, *, again: bool = True) -> None:
        """Cancel ``job_id`` as ``username`` (its tag: ``tag``) at the next run; ``again``
        False keeps a pending cancel's attempts as they are."""
        if again or job_id not in self._pending:
            self._pending[job_id] = _Cancel(username, tag)

    def forget_unlisted(self, listed: Collection[str]) -> None:
        """Given-up jobs are remembered only while the scheduler lists them."""
        self._refused.intersection_update(listed)

    def run_in_background(self, results: Mapping[str, JobInfo]) -> None:
        if not self._pending or (self._task is not None and not self._task.done()):
            return
        try:
            self._task = asyncio.ensure_future(self.run(results))
        except RuntimeError:  # no event loop (CLI): the next loop cycle does it
            self._task = None

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None

    async def run(self, results: Mapping[str, JobInfo]) -> None:
        """Each pending cancel once, a few at a time; those ``results`` list as ended are
        done already."""
        todo = []
        for job_id, cancel in list(self._pending.items()):
            info = results.get(job_id)
            if info is not None and not info.state.alive:
                self._pending.pop(job_id, None)
            else:
                todo.append((job_id, cancel))
        await asyncio.gather(*(self._cancel_one(job_id, cancel) for job_id, cancel in todo))

    async def _cancel_one(self, job_id: str, cancel: _Cancel) -> None:
        async with self._slots:
            cancel.attempts += 1
            try:
                await self.backend.cancel(job_id, cancel.username, cancel.tag)
            except BackendError as exc:  # refused (not that user's tagged job): never again
                self.log.warning("job %s was not cancelled: %s", job_id, exc)
                self._give_up(job_id)
            except (CommandError, OSError) as exc:
                if cancel.attempts >= self.max_attempts:
                    self.log.error("giving up cancelling job %s of %s after %d attempts: %s",
                                   job_id, cancel.username, cancel.attempts, exc)
                    self._give_up(job_id)
                else:
                    self.log.warning("cancelling job %s failed (attempt %d of %d), will retry: "
                                     "%s", job_id, cancel.attempts, self.max_attempts, exc)
            else:
                self.log.info("cancelled job %s of %s", job_id, cancel.username)
                self._pending.pop(job_id, None)
                self.done(job_id)

    def _give_up(self, job_id: str) -> None:
        self._pending.pop(job_id, None)
        self._refused.add(job_id)
