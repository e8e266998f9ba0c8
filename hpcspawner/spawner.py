"""HPCSpawner: a JupyterHub spawner whose servers are SLURM or HTCondor jobs."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import posixpath
import pwd
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from jupyterhub.spawner import Spawner
from jupyterhub.utils import url_path_join
from sqlalchemy.orm import object_session
from traitlets import (
    default,
)

from . import moretime, sentences, session_records, shared
from .apps import Launch, ScriptError, launch_for
from .availability import Outlook, outlook, with_expected_start
from .backends import HelperRefused
from .cards import Card
from .cards import card as session_card
from .compat import SpawnException
from .contract import (
    ACTIVITY_PATH,
    DASK_DIR,
    job_tag,
    tag_prefix,
)
from .dask import plan_env, worker_plan
from .domain import JobInfo
from .job import BatchJob, JobContext, JobFailed, Plan
from .job_builder import JobBuilder
from .metrics import READY, SPAWNS, follow
from .oneline import one_line
from .options import (
    DASK_WORKERS,
    FORM_KEYS,
    RESOURCE_KEYS,
    Choice,
    check_totals,
    choose,
    choose_profile,
    form_fields,
)
from .poller import Poller
from .profiles import Caps, Profile, ProfileError, ProfileSet, Resources
from .render import render_template
from .serverlog import ServerLog
from .settings import SpawnerSettings


@dataclass(frozen=True)
class Menu:
    """The profiles, those this user may see (and those hidden from them), and their caps."""

    profiles: ProfileSet
    visible: list[Profile]
    hidden: set[str]
    caps: Caps


class HPCSpawner(SpawnerSettings, Spawner):
    """Start each server as a batch job chosen from the profiles in profiles.yaml."""

    @default("options_form")
    def _options_form_default(self) -> Any:
        return self._render_form

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job: BatchJob | None = None
        self.last_end = ""  # why the last server ended; shown on the next spawn page
        self._counted = ("other", "other")  # this spawn's profile and backend (metrics)
        follow(self)  # counted in hpcspawner_servers
        self._notify: asyncio.Future[Any] | None = None
        self._explain: asyncio.Future[Any] | None = None

    # -- profiles ---------------------------------------------------------------------------
    def _profiles_path(self) -> str:
        return self.profiles_path or os.path.join(shared.config_dir(), "profiles.yaml")

    def _profiles(self) -> ProfileSet:
        try:
            return shared.profile_store(self._profiles_path()).get()
        except ProfileError as exc:
            self.server_log.error("%s: cannot load profiles:\n%s", self._log_name, exc)
            message = ("The hub's list of server profiles is being fixed, so no server can "
                       "start right now. Please try again later.")
            if getattr(self.user, "admin", False):  # admins read where: file, line, field
                message = "The hub's profile list is broken: " + "; ".join(exc.problems)
            raise SpawnException(message, reason="profiles", status_code=500,
                                 log_message=str(exc)) from None

    def _user_groups(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", [])]

    def _menu(self) -> Menu:
        """What this user may choose from: one read of the profiles for a page or a spawn."""
        profiles = self._profiles()
        for name in {p.backend for p in profiles.profiles}:  # more time: asked again on change
            moretime.extend_check(shared.backend(name, self.config)).watch(profiles.profiles)
        groups = self._user_groups()
        visible = profiles.for_user(self.user.name, groups)
        return Menu(profiles=profiles, visible=visible,
                    hidden=set(profiles.names()) - {p.name for p in visible},
                    caps=profiles.caps.for_user(self.user.name, groups))

    async def _outlooks(self, profiles: list[Profile]) -> dict[str, Outlook]:
        """What the page says about starting each profile now: one scheduler query per
        backend per interval, and the scheduler's expected start where it cannot (asked for
        all such profiles at once, not one after another)."""
        outlooks = {}
        for name in sorted({p.backend for p in profiles}):
            slots = await shared.availability(name, self.availability_interval).get()
            for profile in (p for p in profiles if p.backend == name):
                outlooks[profile.name] = outlook(profile, slots)
        waiting = [p for p in profiles if outlooks[p.name].can_start is False]
        starts = await asyncio.gather(*(
            shared.expected_start(p, self.availability_interval).get() for p in waiting))
        for profile, start in zip(waiting, starts, strict=True):
            outlooks[profile.name] = with_expected_start(outlooks[profile.name], start)
        return outlooks

    async def _render_form(self, spawner: Spawner | None = None) -> str:
        menu = self._menu()
        profiles = menu.visible
        last = self.user_options if isinstance(self.user_options, dict) else {}
        chosen = last.get("profile")
        names = [p.name for p in profiles]
        if chosen not in names:
            default = menu.profiles.default
            chosen = default.name if default.name in names else (names[0] if names else "")
        # a broken edit keeps the last good profiles in service; admins see why on this page
        broken = shared.profile_store(self._profiles_path()).last_error
        return render_template("form.html.j2", {
            "broken": "\n".join(broken.problems) if broken and self.user.admin else "",
            "profiles": profiles, "chosen": chosen, "last_end": self.last_end,
            "fields": {p.name: form_fields(p, menu.caps) for p in profiles},
            "outlooks": await self._outlooks(profiles),
            "places": {p.name: shared.backend(p.backend, self.config).place(p)
                       for p in profiles},
            "last": {k: str(last.get(k, "")) for k in RESOURCE_KEYS},
            "script": last.get("script", "") if isinstance(last.get("script"), str) else "",
            "script_shown": any(p.name == chosen and p.app.user_script for p in profiles),
        }, self.template_paths)

    @property
    def profile_title(self) -> str:
        """The profile this server runs (or last ran), for the hub's home page."""
        options = self.user_options if isinstance(self.user_options, dict) else {}
        name = (self.job.profile_name if self.job is not None else "") or options.get("profile")
        try:
            profile = self._profiles().by_name.get(str(name or ""))
        except SpawnException:
            profile = None
        return profile.title if profile is not None else str(name or "")

    @property
    def home_title(self) -> str:
        """The profile and the Dask workers started with the server, for the home page."""
        title = self.profile_title
        options = self.user_options if isinstance(self.user_options, dict) else {}
        workers = str(options.get(DASK_WORKERS) or "0")
        if title and workers.isdigit() and int(workers):
            title += f" + Dask cluster, {int(workers)} workers"
        return title

    @property
    def ends_at(self) -> float:
        """When the running server's time limit ends (epoch seconds; 0 when not running): the
        scheduler's last word (an extension, an admin's change), else the launcher's."""
        job = self.job
        return job.time_limit()[0] if job is not None and job.address is not None else 0.0

    @property
    def card(self) -> Card | None:
        """This server's session card on the hub's home page (sessions.py)."""
        return session_card(self)

    @property
    def end_note(self) -> str:
        """"Runs until 2026-12-01 14:03 UTC (2 h 5 min left)" for the hub's home page."""
        ends = self.ends_at
        return sentences.runs_until(ends, ends - time.time()) if ends else ""

    @property
    def end_warning(self) -> str:
        """The warning the home page shows once the time limit is walltime_warning away."""
        ends = self.ends_at
        left = ends - time.time()
        if not ends or left > self.walltime_warning:
            return ""
        found = self.card
        return sentences.walltime_warning(self.name, self.profile_title, ends, left,
                                         bool(found and found.can_extend))

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        """The form's fields (and a spawn URL's query): ``profile``; ``script`` for a dashboard
        profile; ``memory``/``cores``/``gpus``/``runtime`` as ``NAME`` (a URL) or
        ``PROFILE.NAME`` (the form has one field per profile that offers the choice)."""
        options: dict[str, Any] = {"profile": (formdata.get("profile") or [""])[0]}
        profile = self.resolve_profile(options)
        script = (formdata.get("script") or [""])[0].strip()
        if script and profile.app.user_script:  # the field is on the page for every profile
            options["script"] = script
        for name in FORM_KEYS:
            value = (formdata.get(f"{profile.name}.{name}") or formdata.get(name) or [""])[0]
            if value.strip():
                options[name] = value.strip()
        self.resolve(options)  # reject a forged form here, with the form shown again
        return options

    def resolve_profile(self, options: Any) -> Profile:
        """The profile ``options`` ask for, or SpawnException(400) naming the valid ones.

        Used for the form, the REST API (``user_options``) and URL spawns alike.
        """
        menu = self._menu()
        return choose_profile(options, menu.visible, menu.profiles.default, menu.hidden)

    def resolve(self, options: Any) -> Choice:
        """Everything ``options`` choose (profile, resources, a dashboard's script), checked
        by name."""
        menu = self._menu()
        return choose(options, menu.visible, menu.profiles.default, self._home(), menu.caps,
                      menu.hidden)

    def _others_resources(self) -> list[Resources]:
        """What the user's other servers (named servers too) hold now: their jobs' requests."""
        held = []
        for other in getattr(self.user, "spawners", {}).values():
            job = getattr(other, "job", None)
            if other is self or job is None or not job.job_id or job.stopping or job.exited:
                continue
            if job.resources is not None:
                held.append(job.resources)
        return held

    def _launch(self, choice: Choice) -> Launch:
        try:
            return launch_for(choice.profile, self._profiles().apps, self.job_python,
                              choice.script)
        except ScriptError as exc:
            raise SpawnException(str(exc), reason="options") from None

    async def _check_script(self, choice: Choice) -> None:
        """The script a user named must be a file they can read in their home: asked as the
        user (hpcspawner-helper check-script), before anything is submitted."""
        if not choice.script:
            return
        backend = shared.backend(choice.profile.backend, self.config)
        try:
            await backend.helper_as_user(self.user.name, ["check-script", choice.script])
        except HelperRefused as exc:
            raise SpawnException(exc.why, reason="options", status_code=400,
                                 log_message=str(exc)) from None

    # -- the job, its scheduler and the poller ------------------------------------------------
    def _poller(self, backend_name: str) -> Poller:
        backend = shared.backend(backend_name, self.config)
        prefix = tag_prefix(self.hub_id)
        return shared.poller(backend_name, prefix, lambda: Poller(
            backend, prefix, fast=self.fast_poll_interval, slow=self.slow_poll_interval,
            jitter=self.poll_jitter, orphan_grace=self.orphan_grace,
            confirm_queries=self.gone_after_queries, confirm_seconds=self.gone_after_seconds,
            is_hub_user=self._is_hub_user, logger=self.log,
        ))

    def _is_hub_user(self, name: str) -> bool:
        """Whether ``name`` is a user of this hub (only their jobs are ever cancelled)."""
        db = getattr(self.user, "db", None)
        if db is None:
            return False
        try:
            from jupyterhub import orm

            return orm.User.find(db, name) is not None
        except Exception:  # the database is not answering: cancel nothing
            return False

    @property
    def server_log(self) -> ServerLog:
        """The hub's log for lines about this server: they end with its fields."""
        return ServerLog(self.log, self._log_fields, self.log_format)

    def _log_fields(self) -> dict[str, str]:
        job = self.job
        profile = (job.profile_name if job is not None else "") or \
            str((self.user_options or {}).get("profile", ""))
        return {"user": self.user.name, "server": self.name,
                "job": job.job_id if job is not None else "", "profile": profile}

    def _context(self, backend_name: str) -> JobContext:
        return JobContext(
            backend=shared.backend(backend_name, self.config),
            poller=self._poller(backend_name), save=self._save_state,
            on_gone=self._job_gone, log=self.server_log, name=self._log_name,
            fast_poll_interval=self.fast_poll_interval, progress_every=self.progress_every,
        )

    def start_pollers(self) -> None:
        """Start the poller of every backend the profiles use (orphans are found from now)."""
        try:
            profiles = self._profiles().profiles
        except SpawnException:
            return
        for profile in profiles:
            shared.backend(profile.backend, self.config).register_profile(profile)
        for name in sorted({p.backend for p in profiles}):
            self._poller(name).start()
            moretime.extend_check(shared.backend(name, self.config)).watch(profiles)

    def _dask_env(self, profile: Profile, menu: Menu, held: list[Resources],
                  at_start: int = 0) -> dict[str, str]:
        """What the server's notebooks may start as Dask workers (hpcspawner.dask): in what
        the user's total caps leave beside ``held`` (the user's other servers) and this
        server; and the workers to start with it (SpawnException (400) when more than that)."""
        job_dir = self.job_dir.format(home=self._home(), username=self.user.name)
        plan = worker_plan(
            profile, menu.profiles, menu.caps, lambda name: shared.backend(name, self.config),
            job_tag(self.hub_id, self.user.name, self.name),
            posixpath.join(job_dir, DASK_DIR, self.name or "default"),
            [*held, profile.resources])
        if plan is not None and at_start > plan["max_workers"]:
            raise SpawnException(
                f"Dask workers {at_start} is more than your server may run: at most "
                f"{plan['max_workers']} ({plan['limit']}). Ask for fewer.", reason="options")
        return plan_env(plan, at_start)

    def _builder(self, launch: Launch, job_env: dict[str, str] | None = None) -> JobBuilder:
        """Who, which server, where its files go and what runs: the same for every
        submission of this spawn (the CLI builds jobs through JobBuilder too). ``job_env``:
        more public variables (the Dask plan)."""
        home = self._home()
        public, private = self._job_env(launch)
        public.update(job_env or {})
        return JobBuilder(
            username=self.user.name, server_name=self.name, home=home,
            job_dir=self.job_dir.format(home=home, username=self.user.name),
            hub_id=self.hub_id, python=self.job_python, cmd=self.cmd, args=self.get_args(),
            env=public, private_env=private, template_dirs=tuple(self.template_paths),
            start_timeout=int(self.start_timeout), launch=launch,
            walltime_warning=int(self.walltime_warning),
        )

    def _home(self) -> str:
        try:
            return pwd.getpwnam(self.user.name).pw_dir
        except KeyError:
            raise SpawnException(
                f"There is no Unix account named {self.user.name!r} on the hub host; "
                "batch jobs run as the user's own account. Ask the administrators.",
                reason="account", status_code=500,
            ) from None

    def _job_env(self, launch: Launch) -> tuple[dict[str, str], dict[str, str]]:
        """The server's environment, split: (public, private). Public: names public_env
        allows and extra_env. Private: the rest, for the 0600 file. Nothing that carries the
        API token is in either (the file holds the token on its own)."""
        token = self.api_token or ""
        public: dict[str, str] = {}
        private: dict[str, str] = {}
        env = self.get_env()
        if launch.url:  # an app's own landing page, instead of the site's default_url
            env["JUPYTERHUB_DEFAULT_URL"] = launch.url
        for name, value in env.items():
            if not isinstance(value, str) or "TOKEN" in name or (token and token in value):
                continue
            allowed = any(fnmatch.fnmatchcase(name, p) for p in self.public_env)
            (public if allowed else private)[name] = value
        public.update(self.extra_env)
        return public, private

    # -- state ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.job is not None and self.job.job_id:
            state.update(self.job.to_state())
        if self.last_end:
            state["last_end"] = self.last_end
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.last_end = state.get("last_end", "")
        if state.get("job_id") and state.get("backend"):
            self.job = BatchJob.from_state(state, self._context(state["backend"]),
                                           self.user.name)
            self.job.follow()
        self.start_pollers()

    def clear_state(self) -> None:
        if self.job is not None:
            self.job.forget()
        super().clear_state()
        self.job = None
        # last_end survives on purpose: the next spawn page tells the user why it ended.

    def _save_state(self) -> None:
        """Persist the job now (JupyterHub saves state only after start() returns), so a hub
        killed while the job queues finds it again instead of leaving an orphan."""
        orm_spawner = getattr(self, "orm_spawner", None)
        db = object_session(orm_spawner) if orm_spawner is not None else None
        if orm_spawner is not None and db is not None:  # (JupyterHub's own, not Spawner.db)
            orm_spawner.state = self.get_state()
            db.commit()

    # -- progress ---------------------------------------------------------------------------
    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """What the current spawn's job told the user, as it tells it (BatchJob.progress)."""
        if self.job is not None:
            async for event in self.job.progress():
                yield event

    def _job_gone(self, info: JobInfo) -> None:
        """The poller saw our job end: let JupyterHub notice now, not at its next poll."""
        job = self.job
        if job is not None and job.address is not None and not job.starting:
            self._notify = asyncio.ensure_future(self.poll_and_notify())

    # -- start / poll / stop ----------------------------------------------------------------
    async def start(self) -> tuple[str, int]:
        """One spawn, top to bottom: choose the profile, build the job, hand over the token
        and submit, wait for the launcher's report (falling back or timing out on the way);
        counted in the hub's metrics by how it ended."""
        started, self._counted = time.monotonic(), ("other", "other")
        try:
            address = await self._start()
        except SpawnException as exc:
            outcome = {"options": "refused", "timeout": "timed_out"}.get(
                str(getattr(exc, "reason", "")), "failed")
            SPAWNS.labels(*self._counted, outcome).inc()
            raise
        except asyncio.CancelledError:  # JupyterHub's start_timeout, or the user stopped it
            SPAWNS.labels(*self._counted, "cancelled").inc()
            raise
        except Exception:
            SPAWNS.labels(*self._counted, "failed").inc()
            raise
        job = self.job
        outcome = "fell_back" if job is not None and job.fell_back else "ready"
        SPAWNS.labels(*self._counted, outcome).inc()
        READY.labels(self._counted[0]).observe(time.monotonic() - started)
        return address

    async def _start(self) -> tuple[str, int]:
        choice = self.resolve(self.user_options)  # the user's options, resolved once
        self._counted = (choice.profile.name, choice.profile.backend)
        profile, launch = choice.profile, self._launch(choice)
        menu, held = self._menu(), self._others_resources()
        check_totals(profile, held, menu.caps)
        await self._check_script(choice)
        dask_env = self._dask_env(profile, menu, held, choice.dask_workers)
        plan = Plan(profile, self._builder(launch, dask_env))
        self.last_end = ""
        self.job = job = BatchJob(self._context(profile.backend), self.user.name, plan)
        try:
            return await job.start(self.api_token)
        except JobFailed as exc:
            if exc.reason in ("job", "timeout"):
                self.last_end = exc.message
            raise SpawnException(exc.message, reason=exc.reason, status_code=exc.status_code,
                                 log_message=exc.log_message) from None

    async def poll(self) -> int | None:
        job = self.job
        if job is None or not job.job_id:
            return 0
        verdict = await job.poll()
        if verdict.why:
            self.last_end = verdict.why
        if verdict.ended:
            self._record_end(job)
        if verdict.exited:  # the scheduler says why later: the next spawn page then says that
            self._explain = asyncio.ensure_future(self._explain_end(job))
        if verdict.running:
            return self._idle_check(job)
        return verdict.status

    async def _explain_end(self, job: BatchJob) -> None:
        """After the launcher said its server exited: once the scheduler says why the job
        ended, the next spawn page says that instead."""
        info = await job.explain_end()
        if info is None:
            return
        said, why = sentences.exited(job.job_id), sentences.ended(job.job_id, info)
        # JupyterHub may have made a new spawner for this server since the stop: the sentence
        # goes to the one whose page is shown, if it still shows the old one
        current = getattr(self.user, "spawners", {}).get(self.name, self)
        for spawner in {id(self): self, id(current): current}.values():
            if isinstance(spawner, HPCSpawner):
                spawner.replace_last_end(said, why)
        self.server_log.info("%s: %s", self._log_name, one_line(why))

    def replace_last_end(self, old: str, new: str) -> None:
        """The next spawn page says ``new`` instead of ``old``, if it still would say that."""
        if self.last_end == old:
            self.last_end = new
            self._save_state()

    def _idle_check(self, job: BatchJob) -> int | None:
        """1 (stop it) when the server has been idle longer than its profile's idle_timeout,
        by the server's own activity (kernels, terminals, its user's requests; activity.py),
        never by proxy traffic, which anyone can send."""
        try:
            profile = self._profiles().by_name.get(job.profile_name)
        except SpawnException:
            return None
        if profile is None or not profile.idle_timeout or not job.active_at:
            return None
        idle = int(time.time() - job.active_at)
        if idle <= profile.idle_timeout:
            return None
        self.last_end = sentences.idle_stopped(profile, idle)
        self.server_log.info("%s: idle for %d s (limit %d s): stopping job %s",
                             self._log_name, idle, profile.idle_timeout, job.job_id)
        return 1  # JupyterHub stops the server: stop() cancels the job

    def note_activity(self, when: float) -> None:
        """The server itself reported activity at ``when`` (epoch; activity.py)."""
        if self.job is not None:
            self.job.note_activity(when)

    def get_env(self) -> dict[str, str]:
        env: dict[str, str] = super().get_env()
        if "JUPYTERHUB_ACTIVITY_URL" in env:  # the server's own activity, apart from the proxy's
            env["JUPYTERHUB_ACTIVITY_URL"] = url_path_join(
                self.hub.api_url, ACTIVITY_PATH.lstrip("/"), self.user.escaped_name)
        return env

    async def get_url(self) -> str:
        if self.job is not None and self.job.address is not None:
            host, port = self.job.address
            return f"http://{host}:{port}"
        url: str = await super().get_url()
        return url

    async def stop(self, now: bool = False) -> None:
        if self.job is None:
            return  # nothing was submitted
        self._record_end(self.job)
        await self.job.stop()  # a resumed wait ends with it

    def _record_end(self, job: BatchJob) -> None:
        """The session's end in the hub's records (the admins' use by profile), once."""
        if not job.mark_recorded():
            return
        try:
            session_records.record(session_records.engine(*session_records.hub_database(self.config)),
                           session_records.of_job(job, time.time()), user=self.user.name,
                           server=self.name, backend=job.backend_name, job_id=job.job_id)
        except Exception as exc:  # the database: the session ends all the same
            self.server_log.warning("%s: its end was not recorded: %s", self._log_name, exc)
