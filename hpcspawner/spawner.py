"""HPCSpawner: a JupyterHub spawner whose servers are SLURM or HTCondor jobs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import posixpath
import pwd
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

from jupyterhub.spawner import Spawner
from traitlets import Bool, Dict, Float, Integer, List, Unicode, default

from . import messages
from .api import register_report_handler
from .apps import app_command
from .backends import Backend, BackendError, JobInfo, JobState
from .commands import CommandError
from .compat import SpawnException
from .options import resolve_profile
from .poller import Poller, get_poller
from .profiles import Profile, ProfileError, ProfileSet, ProfileStore
from .render import JobSpec, RenderError, make_spec, render_job, render_template
from .shared import config_dir, profile_store, shared_backend
from .starting import JobStart, check_reported_host
from .tokenfile import remove_file


class HPCSpawner(Spawner):
    """Start each server as a batch job chosen from the profiles in profiles.yaml."""

    profiles_path = Unicode(
        "",
        help="""Path of profiles.yaml. Default: profiles.yaml beside jupyterhub_config.py.
        The file is re-read when it changes; a broken edit keeps the last good profiles.""",
    ).tag(config=True)

    template_paths = List(
        Unicode(),
        help="""Directories searched, in order, before the shipped templates. A file named
        like a shipped one (slurm.sbatch.j2, htcondor.sub.j2, form.html.j2) replaces it.""",
    ).tag(config=True)

    job_python = Unicode(
        help="""Python that runs the launcher inside the job (must have hpcspawner installed
        and be readable by every user: a venv under /opt, not under /root).
        Default: the hub's own Python.""",
    ).tag(config=True)

    hub_id = Unicode(
        help="""Name of this hub in its jobs' tags, so two hubs on one cluster never treat
        each other's jobs as orphans. Default: the hub host's name.""",
    ).tag(config=True)

    job_dir = Unicode(
        "{home}/.hpcspawner",
        help="""Directory (on the shared home) for job logs and the token hand-off file;
        `{home}` and `{username}` are replaced. Created mode 0700 as the user.""",
    ).tag(config=True)

    fast_poll_interval = Float(
        1.0, help="Seconds between scheduler queries while any server is starting."
    ).tag(config=True)
    slow_poll_interval = Float(
        30.0, help="Seconds between scheduler queries when all servers run."
    ).tag(config=True)
    poll_jitter = Float(0.1, help="Random fraction added to or taken from each interval.").tag(
        config=True)
    orphan_grace = Float(
        30.0,
        help="""A job with this hub's tag that no server owns for this long is cancelled.""",
    ).tag(config=True)

    extra_env = Dict(
        Unicode(), help="Extra environment variables for the job (not secrets)."
    ).tag(config=True)

    check_reported_host = Bool(
        True,
        help="""Accept a launcher's address only on the node the scheduler runs the job on
        (short names compared). Turn off where SLURM NodeName or the HTCondor slot's host
        differs from the host name the node reports.""",
    ).tag(config=True)

    progress_every = Integer(10, help="Seconds between repeated 'waiting in queue' messages.").tag(
        config=True)

    # Batch jobs queue: the defaults of the base class are for local processes.
    @default("start_timeout")
    def _start_timeout_default(self) -> int:
        return 3600

    @default("http_timeout")
    def _http_timeout_default(self) -> int:
        return 120

    @default("poll_interval")
    def _poll_interval_default(self) -> int:
        return 30

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        return ["JUPYTERHUB_SINGLEUSER_APP", "LANG", "LC_ALL"]

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return [posixpath.join(posixpath.dirname(self.job_python), "jupyterhub-singleuser")]

    @default("job_python")
    def _job_python_default(self) -> str:
        return sys.executable

    @default("hub_id")
    def _hub_id_default(self) -> str:
        return socket.gethostname().split(".")[0]

    @default("apply_user_options")
    def _apply_user_options_default(self) -> Any:
        # user_options are validated and applied in start() (resolve_profile), for the form,
        # the REST API and URL spawns alike; this only tells JupyterHub they are handled.
        return lambda spawner, options: None

    @default("options_form")
    def _options_form_default(self) -> Any:
        return self._render_form

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_id = ""
        self.backend_name = ""
        self.profile_name = ""
        self.job_tag = ""
        self.last_end = ""
        self.token_sha256 = ""
        self.address: tuple[str, int] | None = None  # where the launcher said it listens
        self._resumed = False  # loaded from state by a restarted hub, start() not running
        self._resume_task: asyncio.Future[int | None] | None = None
        self._secret_file = ""
        self.submission = ""  # nonce of the current submission; its launcher reports it back
        self._report: asyncio.Future[tuple[str, int]] | None = None
        self._events: list[dict[str, Any]] = []
        self._event_added = asyncio.Event()
        self._starting = False
        self._notify: asyncio.Future[Any] | None = None

    # -- profiles ---------------------------------------------------------------------------
    def _store(self) -> ProfileStore:
        return profile_store(self.profiles_path or os.path.join(config_dir(), "profiles.yaml"))

    def _profiles(self) -> ProfileSet:
        try:
            return self._store().get()
        except ProfileError as exc:
            self.log.error("%s: cannot load profiles:\n%s", self._log_name, exc)
            raise SpawnException(
                "The hub's profile list is broken, so no server can start. "
                "Please tell the hub's administrators.",
                reason="profiles", status_code=500, log_message=str(exc),
            ) from None

    def _user_groups(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", [])]

    def _visible(self) -> list[Profile]:
        return self._profiles().for_user(self.user.name, self._user_groups())

    def _render_form(self, spawner: Spawner | None = None) -> str:
        profiles = self._visible()
        chosen = (self.user_options or {}).get("profile") if self.user_options else None
        names = [p.name for p in profiles]
        if chosen not in names:
            default = self._profiles().default
            chosen = default.name if default.name in names else (names[0] if names else "")
        return render_template("form.html.j2", {
            "profiles": profiles, "chosen": chosen, "last_end": self.last_end,
        }, self.template_paths)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        values = formdata.get("profile") or [""]
        options = {"profile": values[0]}
        self.resolve_profile(options)  # reject a forged form here, with the form shown again
        return options

    def resolve_profile(self, options: Any) -> Profile:
        """The profile ``options`` ask for, or SpawnException(400) naming the valid ones.

        Used for the form, the REST API (``user_options``) and URL spawns alike.
        """
        return resolve_profile(options, self._visible(), self._profiles().default)

    # -- backends and the poller -------------------------------------------------------------
    def _backend(self, name: str) -> Backend:
        return shared_backend(name, self.config)

    def _poller(self, backend_name: str) -> Poller:
        backend = self._backend(backend_name)
        prefix = f"hpcspawner:{self.hub_id}:"
        return get_poller(f"{backend_name}|{prefix}", lambda: Poller(
            backend, prefix, fast=self.fast_poll_interval, slow=self.slow_poll_interval,
            jitter=self.poll_jitter, orphan_grace=self.orphan_grace, logger=self.log,
        ))

    def start_pollers(self) -> None:
        """Start the poller of every backend the profiles use (orphans are found from now)."""
        try:
            profiles = self._profiles().profiles
        except SpawnException:
            return
        for profile in profiles:
            self._backend(profile.backend).register_profile(profile)
        for name in sorted({p.backend for p in profiles}):
            self._poller(name).start()

    # -- state ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.job_id:
            state.update(job_id=self.job_id, backend=self.backend_name,
                         profile=self.profile_name, tag=self.job_tag,
                         token_sha256=self.token_sha256, secret_file=self._secret_file,
                         submission=self.submission)
            if self.address:
                state["address"] = list(self.address)
        if self.last_end:
            state["last_end"] = self.last_end
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.job_id = state.get("job_id", "")
        self.backend_name = state.get("backend", "")
        self.profile_name = state.get("profile", "")
        self.job_tag = state.get("tag", "")
        self.last_end = state.get("last_end", "")
        self.token_sha256 = state.get("token_sha256", "")
        self._secret_file = state.get("secret_file", "")
        self.submission = state.get("submission", "")
        address = state.get("address")
        self.address = (str(address[0]), int(address[1])) if address else None
        if self.job_id and self.backend_name:
            self._resumed = True
            self._poller(self.backend_name).watch(self.job_id, on_gone=self._job_gone)
        self.start_pollers()

    def clear_state(self) -> None:
        if self.job_id and self.backend_name:
            self._poller(self.backend_name).unwatch(self.job_id)
        super().clear_state()
        self.job_id = self.backend_name = self.profile_name = self.job_tag = ""
        self.token_sha256 = ""
        self.address = None
        self._resumed = False
        self._resume_task = None
        # last_end survives on purpose: the next spawn page tells the user why it ended.

    # -- progress ---------------------------------------------------------------------------
    def _emit(self, progress: int, message: str) -> None:
        self.log.info("%s: %s", self._log_name, message)
        self._events.append({"progress": progress, "message": message})
        self._event_added.set()

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        while True:
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            if not self._starting:
                return
            self._event_added.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event_added.wait(), 1.0)

    # -- the launcher's report --------------------------------------------------------------
    def owns_token(self, token: str) -> bool:
        """Is ``token`` this server's API token? (By hash once a restarted hub forgot it.)"""
        if self.api_token:
            return hmac.compare_digest(self.api_token, token)
        digest = hashlib.sha256(token.encode()).hexdigest()
        return bool(self.token_sha256) and hmac.compare_digest(self.token_sha256, digest)

    async def receive_report(self, host: str, port: int, submission: str = "") -> None:
        """Called by the hub route when this server's launcher says it is listening.

        The host must be the node the scheduler runs the job on (check_reported_host), so a
        job cannot point the hub's proxy at another machine.
        """
        if not self.job_id or self.address is not None:
            raise ValueError("this server is not waiting for an address")
        if self.submission and submission != self.submission:
            raise ValueError("this report is from an earlier job of this server")
        job_id = self.job_id
        if self.check_reported_host:
            await check_reported_host(self, host)
        if self.job_id != job_id or self.address is not None:  # changed while we asked
            raise ValueError("this server is not waiting for that job any more")
        self.address = (host, port)
        self._save_state()
        if self._report is not None and not self._report.done():
            self._report.set_result((host, port))

    def _save_state(self) -> None:
        """Persist the job now (JupyterHub saves state only after start() returns), so a hub
        killed while the job queues finds it again instead of leaving an orphan."""
        orm_spawner = getattr(self, "orm_spawner", None)
        db = getattr(self, "db", None)
        if orm_spawner is not None and db is not None:
            orm_spawner.state = self.get_state()
            db.commit()

    def _job_gone(self, info: JobInfo) -> None:
        """The poller saw our job end: let JupyterHub notice now, not at its next poll."""
        if self.address is not None and not self._starting:
            self._notify = asyncio.ensure_future(self.poll_and_notify())

    # -- start / poll / stop ----------------------------------------------------------------
    def _home(self) -> str:
        try:
            return pwd.getpwnam(self.user.name).pw_dir
        except KeyError:
            raise SpawnException(
                f"There is no Unix account named {self.user.name!r} on the hub host; "
                "batch jobs run as the user's own account. Ask the administrators.",
                reason="account", status_code=500,
            ) from None

    def _job_env(self) -> dict[str, str]:
        """The hub's environment for the server, minus anything that carries the token."""
        token = self.api_token or ""
        env = {k: v for k, v in self.get_env().items()
               if isinstance(v, str) and "TOKEN" not in k and not (token and token in v)}
        env.update(self.extra_env)
        env["HPCSPAWNER_START_TIMEOUT"] = str(int(self.start_timeout))
        env["HPCSPAWNER_SUBMISSION"] = self.submission
        return env

    def _new_secret_file(self, home: str) -> str:
        """A fresh path for the token hand-off of one submission."""
        name = f"{self.name or 'default'}-{secrets.token_hex(8)}.token"
        return posixpath.join(self._job_dir(home), name)

    def _job_dir(self, home: str) -> str:
        return self.job_dir.format(home=home, username=self.user.name)

    def build_spec(self, profile: Profile, home: str, secret_file: str,
                   fast_path: bool | None = None) -> JobSpec:
        backend = self._backend(profile.backend)
        return make_spec(
            profile=profile, username=self.user.name, server_name=self.name, home=home,
            job_dir=self._job_dir(home), log_name=backend.log_name(self.name or "default"),
            hub_id=self.hub_id, python=self.job_python,
            command=app_command(profile.app, self.cmd, self.get_args(), self.job_python),
            env=self._job_env(), job_name=getattr(backend, "job_name", "jupyterhub"),
            secret_file=secret_file, fast_path=fast_path,
        )

    def _render(self, profile: Profile, home: str, secret_file: str,
                fast_path: bool | None = None) -> tuple[JobSpec, str]:
        backend = self._backend(profile.backend)
        self.submission = secrets.token_hex(8)
        try:
            spec = self.build_spec(profile, home, secret_file, fast_path)
            return spec, render_job(backend.template_name, spec, self.template_paths)
        except RenderError as exc:
            raise SpawnException(f"Cannot write the job script: {exc}", reason="render",
                                 status_code=500) from None

    async def start(self) -> tuple[str, int]:
        profile = self.resolve_profile(self.user_options)
        home = self._home()
        secret_file = self._new_secret_file(home)
        spec, script = self._render(profile, home, secret_file)
        self._events, self._starting, self.last_end = [], True, ""
        self.address, self._resumed = None, False
        self._report = report = asyncio.get_running_loop().create_future()
        job = JobStart(self, profile, home)
        try:
            await job.submit(spec, script, secret_file, fast=spec.fast_path)
            self.token_sha256 = hashlib.sha256(self.api_token.encode()).hexdigest()
            self._save_state()
            host, port = self.address or await job.wait(report)
            job.poller.started(self.job_id)
            self._emit(95, messages.listening(host, port))
            return host, port
        finally:
            self._starting = False
            self._event_added.set()

    async def _cancel_quietly(self) -> None:
        if not self.job_id:
            return
        backend = self._backend(self.backend_name)
        poller = self._poller(self.backend_name)
        try:
            await backend.cancel(self.job_id, self.user.name)
            self.log.info("%s: cancelled job %s", self._log_name, self.job_id)
        except (CommandError, BackendError) as exc:
            self.log.warning("%s: cancelling job %s failed, will retry: %s", self._log_name,
                             self.job_id, exc)
            poller.retry_cancel(self.job_id, self.user.name)

    async def _remove_secret(self, backend: Backend) -> None:
        if not self._secret_file:
            return
        try:
            await remove_file(backend, self.user.name, self._secret_file)
        except CommandError as exc:
            self.log.warning("%s: could not remove the token file: %s", self._log_name, exc)
        self._secret_file = ""

    async def poll(self) -> int | None:
        if not self.job_id or not self.backend_name:
            return 0
        poller = self._poller(self.backend_name)
        info = poller.latest(self.job_id)
        if info is None:
            await poller.refresh()
            info = poller.latest(self.job_id)
        if info is not None and info.state is JobState.GONE:
            self.last_end = messages.ended(self.job_id, info)
            self.log.warning("%s: %s", self._log_name, self.last_end)
            poller.unwatch(self.job_id)
            await self._remove_secret(self._backend(self.backend_name))
            return 1
        if self._resumed and self.address is None:
            return await self._resume(poller)
        return None  # alive, completing or unknown: never drop a server on doubt

    async def _resume(self, poller: Poller) -> int | None:
        """One background wait per spawner for a job that was starting when the hub
        restarted. The first poll() (JupyterHub's start-up check) waits for it; any other
        poll() (e.g. from a stop) answers at once; stop() cancels it."""
        if self._resume_task is None:
            self._resume_task = asyncio.ensure_future(self._resume_start(poller))
            try:
                return await self._resume_task
            except asyncio.CancelledError:
                return 1
        task = self._resume_task
        if not task.done():
            return None
        return 1 if task.cancelled() else task.result()

    async def _resume_start(self, poller: Poller) -> int | None:
        """The hub restarted while this job was starting: keep waiting for it, then re-attach.

        JupyterHub lets this check run in the background (``init_spawners_timeout``) and then
        asks get_url() where the server is.
        """
        self.log.info("%s: hub restarted while job %s was starting; still waiting for it",
                      self._log_name, self.job_id)
        profiles = self._profiles().by_name
        profile = profiles.get(self.profile_name)
        if profile is None:
            self.last_end = (f"Your server's profile '{self.profile_name}' no longer exists; "
                             f"its job {self.job_id} was cancelled.")
            await self._cancel_quietly()
            return 1
        self._report = report = asyncio.get_running_loop().create_future()
        self._starting = True
        poller.watch(self.job_id, starting=True)
        try:
            if self.address is None:
                await JobStart(self, profile).wait(report)
        except SpawnException as exc:
            self.log.warning("%s: %s", self._log_name, exc.message)
            return 1
        finally:
            self._starting = False
            self._resumed = False
        poller.started(self.job_id)
        poller.watch(self.job_id, on_gone=self._job_gone)
        return None

    async def get_url(self) -> str:
        if self.address is not None:
            host, port = self.address
            return f"http://{host}:{port}"
        url: str = await super().get_url()
        return url

    async def stop(self, now: bool = False) -> None:
        if not self.job_id or not self.backend_name:
            return
        self._poller(self.backend_name).unwatch(self.job_id)
        await self._cancel_quietly()
        await self._remove_secret(self._backend(self.backend_name))
        if self._report is not None and not self._report.done():
            self._report.cancel()
        if self._resume_task is not None and not self._resume_task.done():
            self._resume_task.cancel()


# The launcher's report route must exist before the hub builds its handlers; the hub imports
# this module while loading its config (`spawner_class = "hpcspawner"`), which is early enough.
register_report_handler()
