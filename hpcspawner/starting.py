"""One spawn, from submission to a listening server: the token hand-off, submit, progress
messages, the pending and hold timeouts, and the HTCondor fast path's fall-back."""

from __future__ import annotations

import asyncio
import posixpath
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import messages
from .backends import BackendError, JobInfo, JobState, SubmitRequest
from .commands import CommandError
from .compat import SpawnException
from .profiles import Profile
from .render import JobSpec
from .tokenfile import write_token_file

if TYPE_CHECKING:
    from .spawner import HPCSpawner


@dataclass
class _Watch:
    """What is remembered while following one job."""

    started: float
    fast: bool = False
    last: tuple[Any, ...] | None = None
    said: float = 0.0
    held_since: float | None = None


class JobStart:
    """Follows one spawn of ``spawner`` with ``profile``; ``home`` is the user's home."""

    def __init__(self, spawner: HPCSpawner, profile: Profile, home: str = "") -> None:
        self.sp = spawner
        self.profile = profile
        self.home = home
        self.backend = spawner._backend(profile.backend)
        self.poller = spawner._poller(profile.backend)

    async def submit(self, spec: JobSpec, script: str, secret_file: str, *, fast: bool) -> None:
        """Hand over the token, submit, and follow the new job."""
        sp, profile = self.sp, self.profile
        schedd, pool = profile.htcondor.schedd, profile.htcondor.pool
        if fast and profile.htcondor.fast_path is not None:
            schedd = profile.htcondor.fast_path.schedd or schedd
            pool = profile.htcondor.fast_path.pool or pool
        done = self.poller.submitting(spec.tag)
        try:
            try:
                await write_token_file(self.backend, sp.user.name, secret_file, sp.api_token,
                                       [posixpath.dirname(spec.log_path)])
            except CommandError as exc:
                raise SpawnException(messages.handoff_failed(), reason="handoff",
                                     status_code=500, log_message=str(exc)) from None
            sp._secret_file = secret_file
            job_id = await self.backend.submit(SubmitRequest(
                script=script, username=sp.user.name, schedd=schedd, pool=pool))
        except (CommandError, BackendError) as exc:
            await sp._remove_secret(self.backend)
            raise SpawnException(messages.submit_failed(profile), reason="submit",
                                 status_code=503, log_message=str(exc)) from None
        finally:
            done()
        sp.job_id, sp.backend_name = job_id, profile.backend
        sp.profile_name, sp.job_tag = profile.name, spec.tag
        self.poller.watch(job_id, starting=True, on_gone=sp._job_gone)
        sp._emit(10, messages.submitted(job_id, profile, fast))
        if fast:
            try:
                await self.backend.reschedule(schedd, pool)
            except CommandError as exc:  # only slower: the negotiator cycles anyway
                sp.log.warning("%s: reschedule failed: %s", sp._log_name, exc)

    async def wait(self, report: asyncio.Future[tuple[str, int]]) -> tuple[str, int]:
        """Follow the job until its launcher reports; time out, fall back or fail on the way."""
        watch = _Watch(started=time.monotonic(),
                       fast=self.profile.fast_path_enabled and bool(self.home))
        while not report.done():
            info = self.poller.latest(self.sp.job_id)
            if info is not None:
                self._say(info, watch)
                if watch.fast and self._fast_path_expired(info, watch):
                    await self._fall_back()
                    watch = _Watch(started=time.monotonic(), fast=False)
                    continue
                await self._check_limits(info, watch)
            update: asyncio.Future[Any] = asyncio.ensure_future(
                self.poller.wait_update(self.sp.fast_poll_interval + 1))
            waiting: asyncio.Future[Any] = report
            await asyncio.wait([update, waiting], return_when=asyncio.FIRST_COMPLETED)
            update.cancel()
        return report.result()

    def _say(self, info: JobInfo, watch: _Watch) -> None:
        """A progress message when the job's state changes, and every progress_every s."""
        now = time.monotonic()
        key = (info.state, info.reason, info.host)
        if key != watch.last or now - watch.said >= self.sp.progress_every:
            self.sp._emit(*messages.state_progress(info, now - watch.started, self.profile))
            watch.last, watch.said = key, now
        if info.state is JobState.HELD and watch.held_since is None:
            watch.held_since = now
        elif info.state is not JobState.HELD:
            watch.held_since = None

    def _fast_path_expired(self, info: JobInfo, watch: _Watch) -> bool:
        fast = self.profile.htcondor.fast_path
        return (fast is not None and fast.fallback and info.state is JobState.PENDING
                and time.monotonic() - watch.started > fast.timeout)

    async def _check_limits(self, info: JobInfo, watch: _Watch) -> None:
        now, job_id, profile = time.monotonic(), self.sp.job_id, self.profile
        if info.state is JobState.GONE:
            self._fail(messages.ended_while_starting(job_id, info))
        timeout = profile.pending_timeout
        if info.state is JobState.PENDING and timeout and now - watch.started > timeout:
            await self.sp._cancel_quietly()
            self._fail(messages.pending_timeout(job_id, info, timeout))
        if watch.held_since is not None and now - watch.held_since >= profile.hold_timeout:
            await self.sp._cancel_quietly()
            self._fail(messages.held(job_id, info))

    async def _fall_back(self) -> None:
        """No reserved notebook slot in time: remove the job, resubmit to the regular pool."""
        sp, fast = self.sp, self.profile.htcondor.fast_path
        old = sp.job_id
        self.poller.unwatch(old)
        await sp._cancel_quietly()
        sp._emit(25, messages.fallback(old, fast.timeout if fast else 0))
        await sp._remove_secret(self.backend)  # a fresh token file: the old job may still read
        secret_file = sp._new_secret_file(self.home)
        spec, script = sp._render(self.profile, self.home, secret_file, fast_path=False)
        await self.submit(spec, script, secret_file, fast=False)
        sp._save_state()

    def _fail(self, message: str) -> None:
        self.sp.last_end = message
        raise SpawnException(message, reason="job", status_code=500)


class NotYet(Exception):
    """The report cannot be checked now (scheduler silent, job not seen running): retry."""


async def check_reported_host(sp: HPCSpawner, host: str) -> None:
    """Raise ValueError unless ``host`` is the node the scheduler runs the job on; NotYet
    while that cannot be told (the launcher retries on 503)."""
    poller = sp._poller(sp.backend_name)
    info = poller.latest(sp.job_id)
    if info is None or info.state is not JobState.RUNNING:
        await poller.refresh()  # the job may have started since the last query
        info = poller.latest(sp.job_id)
    if info is None or info.state is JobState.UNKNOWN:
        raise NotYet(f"cannot check job {sp.job_id} now (the scheduler is not answering)")
    if info.state is JobState.GONE:
        raise ValueError(f"job {sp.job_id} has ended")
    if info.state is not JobState.RUNNING:
        raise NotYet(f"job {sp.job_id} is not running yet, so it cannot be listening")
    nodes = {n.split(".")[0].lower() for n in info.host.split(",") if n}
    if nodes and host.split(".")[0].lower() not in nodes:
        raise ValueError(f"job {sp.job_id} runs on {info.host}, not on {host}")
