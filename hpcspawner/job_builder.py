"""The one path that builds a job: what a spawn submits, what `hpcspawner render` prints and
what the golden files pin are the same function's output (``JobBuilder.render``)."""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .apps import Launch, server_command
from .backends.base import Backend
from .contract import (
    LOGS_DIR,
    MAX_TAG,
    START_TIMEOUT,
    TAG_ROOT,
    WALLTIME_WARNING,
    Env,
    job_tag,
    tag_user,
    token_file_name,
)
from .profiles import Profile
from .render import render_template
from .units import mebibytes

__all__ = ["MAX_TAG", "TAG_ROOT", "JobBuilder", "JobSpec", "job_tag", "tag_user"]

@dataclass(frozen=True)
class JobSpec:
    """Everything a job template may use. No secret is ever part of it."""

    username: str
    server_name: str
    profile: Profile
    job_name: str
    tag: str
    workdir: str
    log_path: str
    secret_file: str
    python: str
    command: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    app: str = "notebook"
    fast_path: bool = False

    def context(self) -> dict[str, Any]:
        res = self.profile.resources
        return {
            "spec": self,
            "username": self.username,
            "server_name": self.server_name,
            "profile": self.profile,
            "resources": res,
            "memory_mib": mebibytes(res.memory),
            "runtime_seconds": res.runtime,
            "job_name": self.job_name,
            "tag": self.tag,
            "workdir": self.workdir,
            "log_path": self.log_path,
            "secret_file": self.secret_file,
            "secret_file_env": Env.SECRET_FILE,  # the variable that names it to the launcher
            "python": self.python,
            "command": list(self.command),
            "env": dict(sorted(self.env.items())),
            "app": self.app,
            "fast_path": self.fast_path,
        }


@dataclass(frozen=True)
class JobBuilder:
    """What stays the same across the submissions of one spawn (a fast-path fall-back
    resubmits): who, which server, where its files go, what runs. Built by the spawner from
    JupyterHub's settings, and by the CLI from its arguments."""

    username: str
    server_name: str
    home: str
    job_dir: str
    hub_id: str
    python: str
    cmd: Sequence[str]
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)  # public: in the script / job ad
    private_env: Mapping[str, str] = field(default_factory=dict)  # in the 0600 token file
    template_dirs: Sequence[str] = ()
    start_timeout: int = START_TIMEOUT
    launch: Launch = field(default_factory=Launch)  # the profile's app (apps.launch_for)
    walltime_warning: int = WALLTIME_WARNING  # the server log warns this long before the limit

    @property
    def tag(self) -> str:
        return job_tag(self.hub_id, self.username, self.server_name)

    def saved(self) -> dict[str, Any]:
        """This builder as a job's state keeps it, without the private environment (only the
        first token hand-off writes it; a resubmission reuses or rewrites that file)."""
        saved = asdict(self)
        del saved["private_env"]
        return saved

    @classmethod
    def restore(cls, saved: Mapping[str, Any]) -> JobBuilder:
        """A builder ``saved`` kept (TypeError or KeyError when it is not one)."""
        known = {f.name for f in fields(cls)} - {"private_env"}
        values = {k: v for k, v in saved.items() if k in known}
        values["launch"] = Launch(**values.get("launch", {}))
        for name in ("cmd", "args", "template_dirs"):
            values[name] = tuple(values.get(name, ()))
        return cls(**values)

    def log_file(self, backend: Backend, job_id: str) -> str:
        """Where job ``job_id`` writes its output, as the user would type it (``~/...``)."""
        path = posixpath.join(self.job_dir, LOGS_DIR,
                              backend.log_name(self.server_name or "default", job_id))
        home = self.home.rstrip("/")
        return "~" + path[len(home):] if home and path.startswith(home + "/") else path

    def secret_path(self) -> str:
        """A fresh path for one submission's token hand-off file."""
        name = token_file_name(self.server_name, secrets.token_hex(8))
        return posixpath.join(self.job_dir, name)

    def spec(self, profile: Profile, backend: Backend, *, secret_file: str, submission: str,
             fast: bool) -> JobSpec:
        env = dict(self.env)
        env.update({
            "HOME": self.home,
            "USER": self.username,
            "LOGNAME": self.username,
            "PATH": f"{posixpath.dirname(self.python)}:/usr/local/bin:/usr/bin:/bin",
            Env.START_TIMEOUT: str(self.start_timeout),
            Env.SUBMISSION: submission,
        })
        env["MEM_LIMIT"] = str(profile.resources.memory)  # jupyter-resource-usage shows these
        env["CPU_LIMIT"] = str(profile.resources.cores)
        # the launcher turns these into Env.END_TIME and warns before the time limit
        env[Env.RUNTIME] = str(profile.resources.runtime)
        env[Env.WALLTIME_WARNING] = str(self.walltime_warning)
        env.update(self.launch.env)
        if self.launch.ready_path:
            env[Env.APP_READY] = self.launch.ready_path
        log_name = backend.log_name(self.server_name or "default")
        return JobSpec(
            username=self.username,
            server_name=self.server_name,
            profile=profile,
            job_name=backend.job_name,
            tag=self.tag,
            workdir=self.home,
            log_path=posixpath.join(self.job_dir, LOGS_DIR, log_name),
            secret_file=secret_file,
            python=self.python,
            command=server_command(self.cmd, self.args, self.python),
            env=env,
            app=self.launch.app,
            fast_path=fast,
        )

    def render(self, profile: Profile, backend: Backend, *, secret_file: str,
               submission: str, fast: bool) -> tuple[JobSpec, str]:
        """The job description for ``backend``; RenderError when a value cannot go in it."""
        spec = self.spec(profile, backend, secret_file=secret_file, submission=submission,
                         fast=fast)
        return spec, render_job(backend, spec, self.template_dirs)


def render_job(backend: Backend, spec: JobSpec, template_dirs: Sequence[str] = ()) -> str:
    """``backend``'s template, looked up in the admin's ``template_dirs`` first, then in the
    backend's own ``template_dir`` (a site's backend ships its template in its package), then
    among hpcspawner's."""
    own = backend.template_dir
    return render_template(backend.template_name, {**spec.context(),
                                                    **backend.template_context(spec.profile)},
                           [*template_dirs, *([own] if own else [])], backend.filters())
