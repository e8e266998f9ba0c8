"""One spawn's batch job as one object that owns the whole spawn: its plan (the profile as
chosen and what runs, resolved once), the job id and tag, the token hand-off file, the
submission nonce, the token's hash, the reported address and what the user was told.

It hands the token over, submits, follows the job through the shared poller until the
launcher's report arrives (or a timeout, a hold, the job's end), falls back from the HTCondor
fast path, cancels, resumes the wait after a hub restart, and saves and restores itself
(``to_state``/``from_state``, the plan included). Timeouts count from the submission's
wall-clock time, so they mean the same after a hub restart. The spawner holds one
``BatchJob`` and talks to JupyterHub; the job talks to the backend and the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import sentences
from .backends.base import BackendError, SubmitRequest
from .commands import CommandError
from .domain import JobInfo, JobState
from .job_usage import Usage
from .metrics import FAST_PATH, QUEUED, TO_REPORT
from .oneline import one_line
from .plan import JobContext, JobFailed, Plan, PlanLost, Verdict, token_hash
from .poller import listed_as_ended, log_end
from .profiles import Profile, Resources
from .render import RenderError
from .tokenfile import remove_file, write_token_file

__all__ = ["STATE_VERSION", "BatchJob", "JobContext", "JobFailed", "Plan", "Verdict"]


@dataclass
class _Told:
    """What the user was last told while the job waits."""

    last: tuple[Any, ...] | None = None
    said: float = 0.0
    held_since: float | None = None


# The shape of ``BatchJob.to_state``: 1 had no version key (hubs before it was kept), and may
# lack the plan, the resources and the times; 2 adds this key. Older shapes are read by
# ``BatchJob.from_state``; a newer one (a hub downgraded) is read as far as its keys go.
STATE_VERSION = 2
# a routed job whose scheduler start time is this much later than its report started again
RESTART_SLACK = 2.0  # seconds (the hub's and the scheduler's clocks)


class BatchJob:
    """One server's batch job (and the fall-back job that may replace it)."""

    def __init__(self, ctx: JobContext, username: str, plan: Plan | None = None) -> None:
        self.ctx = ctx
        self.username = username
        self.plan = plan  # None: restored from an older state; followed without limits
        self.job_id = ""
        self.profile_name = ""
        self.tag = ""
        self.secret_file = ""  # the token hand-off file of the current submission
        self.submission = ""  # nonce of the current submission; its launcher reports it back
        self.token_sha256 = ""
        self.submitted_at = 0.0  # epoch seconds of the current submission
        self.fast = False  # the current submission went to the HTCondor fast path
        self.address: tuple[str, int] | None = None  # where the hub routes to
        self.routed_at = 0.0  # when the launcher's report was accepted (epoch)
        self.log_file = ""  # the job's output, as the user finds it (~/.hpcspawner/logs/...)
        self.runtime = 0  # the job's time limit, seconds
        self.ends_at = 0.0  # when the time limit ends (epoch; from the launcher's report)
        self.resumed = False  # restored by a restarted hub while it was still starting
        self._checking = False  # a launcher's report is being checked (one at a time)
        self.exited = False  # the launcher said the server exited: its route is gone
        self.ended: JobInfo | None = None  # a poll saw the scheduler say the job ended
        self.active_at = 0.0  # the server's own last activity (epoch; activity.py)
        self.resources: Resources | None = None  # what the job asked for (after choices)
        self.starting = False  # start() or a resumed wait is under way
        self.events: list[dict[str, Any]] = []  # what the user was told (progress())
        self.failure = ""  # why a resumed wait failed, for the next spawn page
        self._token: str | None = None  # in memory only: a fall-back hands it over again
        self._stopped = False  # stop() was called; a submission still under way is undone
        self._report: asyncio.Future[tuple[str, int]] | None = None
        self._event_added = asyncio.Event()
        self._resume_task: asyncio.Future[int | None] | None = None
        self._route_watch: asyncio.Future[None] | None = None  # while routed (watch_route)
        self._extending = asyncio.Lock()  # one extension at a time
        self._extended_at = -1.0  # time.monotonic() of the last extension
        self.usage: Usage | None = None  # what the server last said its job uses (card)
        self.running_seen_at = 0.0  # when a wait first saw the job running (epoch; metrics)
        self.recorded = False  # its end is in the hub's records (session_records.py)
        self.fell_back = False  # the fast path fell back to the regular pool in this spawn
        self.extend_note = ""  # what the last try to give the server more time did (card)

    @property
    def stopping(self) -> bool:
        """stop() was called: the user (or an admin) asked for this server to end."""
        return self._stopped

    # -- state ------------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return self.ctx.backend.name

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "state_version": STATE_VERSION, "job_id": self.job_id, "backend": self.ctx.backend.name,
            "profile": self.profile_name, "tag": self.tag, "username": self.username,
            "secret_file": self.secret_file, "submission": self.submission,
            "token_sha256": self.token_sha256, "submitted_at": self.submitted_at,
            "fast_path": self.fast, "log_file": self.log_file, "runtime": self.runtime,
            "ends_at": self.ends_at, "running_seen_at": self.running_seen_at,
            "routed_at": self.routed_at,
        }
        if self.resources is not None:
            state["resources"] = self.resources.model_dump(mode="json")
        if self.address:
            state["address"] = list(self.address)
        if self.plan is not None:
            state["plan"] = self.plan.saved()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], ctx: JobContext, username: str) -> BatchJob:
        """A job saved by ``to_state`` of this version or an older one (STATE_VERSION): 1
        (no version key) may lack the plan, the resources and the times, and is followed
        without its profile's limits where it has no plan; the log says so."""
        version = state.get("state_version", 1)
        plan: Plan | None = None
        if "plan" in state:
            try:
                plan = Plan.restore(state["plan"])
            except PlanLost as exc:
                ctx.log.warning("%s: job %s is followed without its profile's limits: %s",
                                ctx.name, state.get("job_id"), exc)
        elif version == 1:
            ctx.log.info("%s: job %s was saved by an older hub (state version 1, no plan): "
                         "followed without its profile's limits", ctx.name, state.get("job_id"))
        job = cls(ctx, str(state.get("username") or username), plan)
        job.job_id = str(state["job_id"])
        job.profile_name = str(state.get("profile", ""))
        job.tag = str(state.get("tag", ""))
        job.secret_file = str(state.get("secret_file", ""))
        job.submission = str(state.get("submission", ""))
        job.token_sha256 = str(state.get("token_sha256", ""))
        job.submitted_at = float(state.get("submitted_at") or time.time())
        job.fast = bool(state.get("fast_path", False))
        job.log_file = str(state.get("log_file", ""))
        job.runtime = int(state.get("runtime") or 0)
        job.ends_at = float(state.get("ends_at") or 0.0)
        job.running_seen_at = float(state.get("running_seen_at") or 0.0)
        job.routed_at = float(state.get("routed_at") or 0.0)  # older hubs: not kept
        address = state.get("address")
        job.address = (str(address[0]), int(address[1])) if address else None
        job.resumed = job.address is None
        job.active_at = time.time()  # not kept: a restarted hub gives a full idle period
        raw = state.get("resources")  # checked when it was chosen; older hubs saved none
        numbers = ("cores", "memory", "runtime", "gpus")
        if isinstance(raw, dict) and all(isinstance(raw.get(k), int) for k in numbers):
            job.resources = Resources.model_construct(
                **{k: raw[k] for k in numbers}, gpu_model=raw.get("gpu_model"))
        return job

    # -- the spawn, top to bottom -----------------------------------------------------------
    async def start(self, token: str | None) -> tuple[str, int]:
        """Hand the token over, submit, wait for the launcher's report (falling back or timing
        out on the way); each step is told to the user (``progress``). JobFailed says why not."""
        self.starting = True
        try:
            await self.submit(token)
            host, port = self.address or await self.wait()
            self.running()
            self.emit(95, sentences.listening(host, port))
            return host, port
        finally:
            self.starting = False
            self._event_added.set()

    def emit(self, progress: int, message: str) -> None:
        """Tell the user (the spawn page's progress) and the hub's log."""
        self.ctx.log.info("%s: %s", self.ctx.name, one_line(message))
        self.events.append({"progress": progress, "message": message})
        self._event_added.set()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Every message of this spawn, then each new one until the start ends."""
        sent = 0
        while True:
            while sent < len(self.events):
                yield self.events[sent]
                sent += 1
            if not self.starting:
                return
            self._event_added.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event_added.wait(), 1.0)

    # -- submit -----------------------------------------------------------------------------
    async def submit(self, token: str | None, *, fast: bool | None = None) -> None:
        """Render the plan, hand over the token, submit, and follow the new job.

        ``token`` None (a hub restarted since the token was known) reuses the current hand-off
        file, which a job that never started has not read yet.
        """
        if self.plan is None:
            raise JobFailed("This server's job cannot be submitted again: its plan was lost "
                            "(an older hub's state). Please start the server anew.",
                            reason="plan")
        ctx, profile, builder = self.ctx, self.plan.profile, self.plan.builder
        if token is not None:
            self._token = token
        fast = ctx.backend.fast_path(profile) if fast is None else fast
        secret_file = builder.secret_path() if token is not None else self.secret_file
        submission = secrets.token_hex(8)
        try:
            _, script = builder.render(profile, ctx.backend, secret_file=secret_file,
                                          submission=submission, fast=fast)
        except RenderError as exc:
            raise JobFailed(f"Cannot write the job script: {exc}", reason="render") from None
        done = ctx.poller.submitting(builder.tag)
        try:
            if token is not None:
                await self._hand_over(secret_file, token, builder.private_env)
            job_id = await ctx.backend.submit(SubmitRequest(
                script=script, username=self.username, profile=profile, fast=fast))
        except (CommandError, BackendError) as exc:
            await self.remove_secret()
            if isinstance(exc, CommandError) and not ctx.backend.transient(exc):
                raise JobFailed(sentences.submit_refused(profile), reason="submit",
                                status_code=500, log_message=str(exc)) from None
            raise JobFailed(sentences.submit_failed(profile), reason="submit", status_code=503,
                            log_message=str(exc)) from None
        finally:
            done()
        if self._stopped:  # stopped while the scheduler took the job: undo it now
            self.job_id = job_id
            await self.cancel()
            await self.remove_secret()
            raise JobFailed("The server was stopped while its job was being submitted; "
                            f"job {job_id} was cancelled.", reason="stopped")
        self.job_id, self.profile_name, self.tag = job_id, profile.name, builder.tag
        self.submission, self.fast, self.submitted_at = submission, fast, time.time()
        self.running_seen_at = 0.0
        self.log_file = builder.log_file(ctx.backend, job_id)
        self.runtime, self.ends_at = profile.resources.runtime, 0.0
        self.resources = profile.resources
        if token is not None:
            self.token_sha256 = token_hash(token)
        self.address = None
        ctx.poller.watch(job_id, tag=builder.tag, starting=True, on_gone=ctx.on_gone)
        ctx.save()  # now, so a hub killed while the job queues finds it again
        self.emit(10, sentences.submitted(job_id, profile, ctx.backend.where(profile, fast)))
        if fast:
            try:
                await ctx.backend.reschedule(job_id)
            except CommandError as exc:  # only slower: the negotiator cycles anyway
                ctx.log.warning("%s: reschedule failed: %s", ctx.name, exc)

    async def _hand_over(self, secret_file: str, token: str,
                         env: Mapping[str, str]) -> None:
        try:
            await write_token_file(self.ctx.backend, self.username, secret_file, token, env)
        except (CommandError, BackendError) as exc:
            raise JobFailed(sentences.handoff_failed(), reason="handoff",
                            log_message=str(exc)) from None
        self.secret_file = secret_file

    # -- wait -------------------------------------------------------------------------------
    async def wait(self) -> tuple[str, int]:
        """Follow the job until its launcher reports; a job that failed (held, timed out,
        ended) leaves no token file behind: the launcher that would delete it never ran."""
        try:
            return await self._wait()
        except JobFailed:
            await self.remove_secret()
            raise

    async def _wait(self) -> tuple[str, int]:
        """Follow the job until its launcher reports; time out, fall back or fail on the way.

        Without a plan (an older hub's state): just wait, no limits.
        """
        profile = self.plan.profile if self.plan is not None else None
        report = self._future()
        told = _Told()
        while not report.done():
            info = self.ctx.poller.latest(self.job_id)
            if info is not None:
                if info.state is JobState.RUNNING and not self.running_seen_at:
                    self.running_seen_at = time.time()
                self._say(info, told, profile)
                if profile is not None and self._fast_path_expired(info, profile):
                    await self._fall_back(profile)
                    told = _Told()
                    continue
                if profile is not None:
                    await self._check_limits(info, told, profile)
                elif info.state is JobState.GONE:
                    raise JobFailed(
                        sentences.ended_while_starting(self.job_id, info, self.log_file))
            update: asyncio.Future[Any] = asyncio.ensure_future(
                self.ctx.poller.wait_update(self.ctx.fast_poll_interval + 1))
            waiting: asyncio.Future[Any] = report
            await asyncio.wait([update, waiting], return_when=asyncio.FIRST_COMPLETED)
            update.cancel()
        return report.result()

    def waited(self) -> float:
        return max(0.0, time.time() - self.submitted_at)

    def _say(self, info: JobInfo, told: _Told, profile: Profile | None) -> None:
        """A progress message when the job's state changes, and every progress_every s."""
        now = time.monotonic()
        key = (info.state, info.reason, info.host)
        if key != told.last or now - told.said >= self.ctx.progress_every:
            self.emit(*sentences.state_progress(info, self.waited()))
            told.last, told.said = key, now
        if info.state is JobState.HELD and told.held_since is None:
            told.held_since = now
        elif info.state is not JobState.HELD:
            told.held_since = None

    def _fast_path_expired(self, info: JobInfo, profile: Profile) -> bool:
        fast = profile.htcondor.fast_path
        return (self.fast and fast is not None and fast.fallback
                and info.state is JobState.PENDING and self.waited() > fast.timeout)

    async def _check_limits(self, info: JobInfo, told: _Told, profile: Profile) -> None:
        if info.state is JobState.GONE:
            raise JobFailed(sentences.ended_while_starting(self.job_id, info, self.log_file))
        timeout = profile.pending_timeout
        if info.state is JobState.PENDING and timeout and self.waited() > timeout:
            await self.cancel()
            raise JobFailed(sentences.pending_timeout(self.job_id, info, timeout),
                            reason="timeout")
        held = told.held_since
        if held is not None and time.monotonic() - held >= profile.hold_timeout:
            await self.cancel()
            raise JobFailed(sentences.held(self.job_id, info, self.log_file))

    async def _fall_back(self, profile: Profile) -> None:
        """No reserved notebook slot in time: remove the job, resubmit to the regular pool."""
        fast = profile.htcondor.fast_path
        old = self.job_id
        self.fell_back = True
        FAST_PATH.labels("fell_back").inc()
        self.ctx.poller.unwatch(old)
        await self.cancel()
        self.emit(25, sentences.fallback(old, fast.timeout if fast else 0))
        if self._token is not None:  # a fresh token file: the old job may still read its own
            await self.remove_secret()
        await self.submit(self._token, fast=False)

    # -- the report -------------------------------------------------------------------------
    def _future(self) -> asyncio.Future[tuple[str, int]]:
        if self._report is None or self._report.cancelled():
            self._report = asyncio.get_running_loop().create_future()
        return self._report

    def set_address(self, host: str, port: int, ends: float = 0.0) -> None:
        """The launcher's report was accepted (report.py): the hub routes to host:port.

        ``ends`` is when the launcher says the time limit ends. It is shown to the user only,
        and believed only between now and now + the job's runtime (the job runs now, so its
        limit cannot end later); otherwise, or without one, now + runtime."""
        self.address = (host, port)
        now = time.time()
        self.routed_at = now
        self.active_at = now
        self._observe_start(now)
        if self.runtime:
            latest = now + self.runtime
            self.ends_at = ends if now - 60 <= ends <= latest + 5 else latest
        self.ctx.save()  # a hub restarted now routes here at once
        report = self._future()
        if not report.done():
            report.set_result((host, port))

    # -- more time -------------------------------------------------------------------------
    def time_limit(self) -> tuple[float, int]:
        """When the time limit ends (epoch; 0 unknown) and the limit in all (seconds), as the
        scheduler's last query says (an admin's change or an extension shows within a poll),
        else as the launcher reported and the job was submitted."""
        poller = self.ctx.poller
        info = poller.latest(self.job_id) if self.job_id else None
        if (info is not None and info.state is JobState.RUNNING and info.ends and info.starts
                and poller.queried_since(self._extended_at)):
            return info.ends, round(info.ends - info.starts)
        return self.ends_at, self.runtime

    @property
    def extending(self) -> asyncio.Lock:
        """Held while the server is given more time (moretime.py): one extension at a time."""
        return self._extending

    async def fresh_status(self) -> JobInfo | None:
        """The scheduler's word on the job from a query made now, or just now (shared)."""
        await self.ctx.poller.refresh_soon()
        return self.latest()

    def was_extended(self, runtime: int, ends: float) -> None:
        """The scheduler took the new limit (moretime.extend): ``runtime`` seconds in all,
        ending at ``ends``; older answers of the scheduler know the old limit."""
        self._extended_at = time.monotonic()
        self.runtime, self.ends_at = runtime, ends
        self.ctx.save()

    def note_extend(self, note: str) -> None:
        """What the last try to give the server more time did, for its card."""
        self.extend_note = note

    def _observe_start(self, now: float) -> None:
        """The hub's metrics (metrics.py): time queued and from the job's start to the report,
        and whether the fast path held."""
        name = self.profile_name or "other"
        if self.running_seen_at:
            QUEUED.labels(name).observe(max(0.0, self.running_seen_at - self.submitted_at))
            TO_REPORT.labels(name).observe(max(0.0, now - self.running_seen_at))
        if self.fast:
            FAST_PATH.labels("hit").inc()

    def running(self) -> None:
        """The server is up: slow polling is enough, and its end must be heard."""
        self.resumed = False
        self.ctx.poller.started(self.job_id)
        self.ctx.poller.watch(self.job_id, tag=self.tag, on_gone=self.ctx.on_gone)
        self._watch_route()

    def _watch_route(self) -> None:
        """While routed, look at each of the shared poller's answers (no query of its own):
        once the job no longer runs where it is routed (``left_its_node``), tell the spawner
        now (``ctx.on_gone``, which makes JupyterHub poll and stop it) rather than at
        JupyterHub's next poll. The end itself is the poller's to tell."""
        if self._route_watch is not None and not self._route_watch.done():
            return
        self._route_watch = asyncio.ensure_future(self._route_watcher())

    async def _route_watcher(self) -> None:
        poller = self.ctx.poller
        while self.address is not None and not self._stopped and not self.exited:
            await poller.wait_update(2 * max(poller.slow, poller.fast))
            info = self.latest()
            if info is not None and info.state is not JobState.GONE and \
                    self.left_its_node(info):
                self.ctx.on_gone(info)
                return

    # -- a hub restarted while the job was starting -------------------------------------------
    async def resume(self) -> int | None:
        """Wait again for a job that was starting when the hub restarted, once, in the
        background: the first call (JupyterHub's start-up poll) waits for it; any other call
        (e.g. from a stop) answers at once; stop() cancels it. 1 when it failed (``failure``
        says why) or was stopped, None while it waits or once the server runs."""
        if self._resume_task is None:
            self._resume_task = asyncio.ensure_future(self._resume())
            try:
                return await self._resume_task
            except asyncio.CancelledError:
                if not self._stopped:
                    raise  # the hub shuts down: the job goes on, and so does its state
                return 1
        task = self._resume_task
        if not task.done():
            return None
        return 1 if task.cancelled() else task.result()

    async def _resume(self) -> int | None:
        """Its limits and the fast path's fall-back count from the original submission, by
        the plan it was submitted with: a config edit since never changes or kills it.
        JupyterHub lets this run in the background (``init_spawners_timeout``) and then asks
        where the server is."""
        self.ctx.log.info("%s: hub restarted while job %s was starting; still waiting for it",
                          self.ctx.name, self.job_id)
        self.starting = True
        self.ctx.poller.watch(self.job_id, tag=self.tag, starting=True)
        try:
            await self.wait()
        except JobFailed as exc:
            self.failure = exc.message
            self.ctx.log.warning("%s: %s", self.ctx.name, one_line(exc.message))
            return 1
        finally:
            self.starting = False
            self._event_added.set()
        self.running()
        return None

    # -- status, cancel, clean-up -----------------------------------------------------------
    async def status(self) -> JobInfo | None:
        """The scheduler's last word on the job (asking now if no query covered it yet). A
        hub that restarts asks this of every server before it routes any: a job that ended
        while the hub was down must be known as ended here (accounting asked), not as a
        doubt that keeps JupyterHub waiting for a server that is gone."""
        poller = self.ctx.poller
        info = poller.latest(self.job_id)
        if info is None:
            await poller.refresh()
            info = poller.latest(self.job_id)
        for _ in range(2):  # the query joined may have begun before the job was watched
            if info is None or poller.error or poller.covered(self.job_id):
                break
            await poller.refresh_soon()
            info = poller.latest(self.job_id)
        return info

    async def where_running(self) -> JobInfo | None:
        """The scheduler's word on the job when its launcher reports: the last query's, or
        one more (shared, at most one per fast interval: Poller.refresh_soon) when that did
        not yet see it running on a node."""
        poller = self.ctx.poller
        info = poller.latest(self.job_id)
        if info is None or info.state is not JobState.RUNNING or not info.host:
            await poller.refresh_soon()  # the job may have started since the last query
            info = poller.latest(self.job_id)
        return info

    async def cancel(self) -> None:
        """Cancel the job as its user; a failed cancel is retried by the poller."""
        if not self.job_id:
            return
        try:
            await self.ctx.backend.cancel(self.job_id, self.username, self.tag)
            self.ctx.log.info("%s: cancelled job %s", self.ctx.name, self.job_id)
        except BackendError as exc:  # refused: not this user's tagged job; asking again won't do
            self.ctx.log.warning("%s: job %s was not cancelled: %s", self.ctx.name,
                                 self.job_id, exc)
        except CommandError as exc:
            self.ctx.log.warning("%s: cancelling job %s failed, will retry: %s", self.ctx.name,
                                 self.job_id, exc)
            self.ctx.poller.retry_cancel(self.job_id, self.username, self.tag)

    async def remove_secret(self) -> None:
        if not self.secret_file:
            return
        try:
            await remove_file(self.ctx.backend, self.username, self.secret_file)
        except (CommandError, BackendError) as exc:
            self.ctx.log.warning("%s: could not remove the token file: %s", self.ctx.name, exc)
        self.secret_file = ""

    def forget(self) -> None:
        """Stop following the job (it ended, or the server was stopped)."""
        self.ctx.poller.unwatch(self.job_id)
        if self._route_watch is not None:
            self._route_watch.cancel()
        if self._report is not None and not self._report.done():
            self._report.cancel()

    async def stop(self) -> None:
        """Stop the server: forget, cancel its job and its Dask workers, clean up (safe
        twice)."""
        self._stopped = True
        self.forget()
        await self.cancel()
        await self.remove_secret()
        if self.tag:  # its notebooks' Dask workers end with it (hpcspawner.dask)
            await self.ctx.poller.cancel_workers(self.tag)
        if self._resume_task is not None and not self._resume_task.done():
            self._resume_task.cancel()

    # -- what the hub hears (JupyterHub's polls, the launcher, the server itself) -------------
    def latest(self) -> JobInfo | None:
        """The scheduler's last word on the job (the shared poller's last query)."""
        return self.ctx.poller.latest(self.job_id) if self.job_id else None

    def follow(self) -> None:
        """Follow a job restored from its saved state (its end is heard: ``ctx.on_gone``)."""
        self.ctx.poller.watch(self.job_id, tag=self.tag, on_gone=self.ctx.on_gone)

    def owns_token(self, api_token: str, token: str) -> bool:
        """Is ``token`` this server's API token? ``api_token`` is the spawner's (empty once a
        restarted hub forgot it: then by the hash kept with the job)."""
        if not token:
            return False
        if api_token:
            return hmac.compare_digest(api_token, token)
        return bool(self.token_sha256) and hmac.compare_digest(self.token_sha256,
                                                               token_hash(token))

    @contextlib.contextmanager
    def report_check(self) -> Iterator[bool]:
        """One launcher report of this server is checked at a time: False while another is."""
        if self._checking:
            yield False
            return
        self._checking = True
        try:
            yield True
        finally:
            self._checking = False

    def server_exited(self) -> bool:
        """The launcher said the routed server exited: True the first time (its route must go
        now), False when it was known or the server is being stopped anyway."""
        if self.exited or self._stopped:
            return False
        self.exited = True
        self.ctx.log.info("%s: the server of job %s exited; taking its route down",
                          self.ctx.name, self.job_id)
        return True

    def note_activity(self, when: float) -> None:
        """The server itself reported activity at ``when`` (epoch; activity.py): never in the
        future, never backwards."""
        if when > self.active_at:
            self.active_at = min(when, time.time())

    def note_usage(self, used: Usage) -> None:
        """What the server said its job uses (the card shows it; never acted on)."""
        self.usage = used

    def mark_recorded(self) -> bool:
        """The session's end goes into the hub's records once: True the first time."""
        if self.recorded or not self.job_id:
            return False
        self.recorded = True
        return True

    async def poll(self) -> Verdict:
        """JupyterHub's poll, answered by the job: gone only when its launcher said the
        server exited or the scheduler says the job ended; alive, completing or unknown
        otherwise (never drop a server on doubt); a job a restarted hub found starting is
        waited for again (``resume``)."""
        if self.exited:  # its route is gone already: stopped now, explained later
            self.forget()
            return Verdict(0, sentences.exited(self.job_id), ended=True, exited=True)
        info = await self.status()
        if self.ended is not None:  # a poll beside this one saw the end (and stopped following)
            return Verdict(1)
        if info is not None and info.state is JobState.GONE:
            self.ended = info
            why = sentences.ended(self.job_id, info)
            self.ctx.log.warning("%s: %s", self.ctx.name, one_line(why))
            self.forget()
            await self.remove_secret()
            return Verdict(1, why, ended=True)
        if self.resumed and self.address is None:  # the hub restarted while it was starting
            status = await self.resume()
            return Verdict(status, self.failure)
        if self.address is not None and not self.starting:
            self._watch_route()  # a job restored by a restarted hub: watched from now
        if info is not None and self.left_its_node(info):
            self.ended = info
            if info.state is JobState.COMPLETING:  # ending: the scheduler says why later
                self.forget()
                return Verdict(1, sentences.exited(self.job_id), ended=True, exited=True)
            why = sentences.left_its_node(self.job_id, info)
            self.ctx.log.warning("%s: job %s no longer runs where it is routed (%s on %r); "
                                 "stopping the server and taking its route down",
                                 self.ctx.name, self.job_id, info.state.value, info.host)
            return Verdict(1, why, ended=True)  # JupyterHub drops the route and stops it
        running = (self.address is not None and info is not None
                   and info.state is JobState.RUNNING)
        return Verdict(None, running=running)

    def left_its_node(self, info: JobInfo) -> bool:
        """Does the scheduler say the routed job no longer runs where the hub routes to? Held,
        pending (requeued), suspended, completing, running on another node, or started again
        since its launcher reported: its port there may be anyone's. A silent scheduler
        (UNKNOWN) or a running job whose node is not named yet is no such word."""
        if self.address is None or self.exited or info.state is JobState.UNKNOWN:
            return False
        if info.state is not JobState.RUNNING:
            return True
        host = info.host.strip()
        if host and host.lower() != self.address[0].lower():
            return True
        restarted = info.starts is not None and self.routed_at and \
            info.starts > self.routed_at + RESTART_SLACK
        return bool(restarted)

    async def explain_end(self, patience: float = 30.0) -> JobInfo | None:
        """After the launcher said its server exited: the scheduler's word once it lists the
        job as ended (cancelled, its time limit, the node); None if it did not within
        ``patience`` seconds. A few shared queries at most (Poller.refresh_soon)."""
        deadline = time.monotonic() + patience
        while time.monotonic() < deadline:
            await self.ctx.poller.refresh_soon()
            info = self.latest()
            if info is not None and info.state is JobState.GONE:
                log_end(self.ctx.log, info, listed_as_ended(self.ctx.backend))
                return info
            await asyncio.sleep(self.ctx.fast_poll_interval)
        return None
