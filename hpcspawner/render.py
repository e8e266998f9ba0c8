"""Job scripts and the spawn form from Jinja2 templates; admins override by file name."""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)

from .profiles import Profile
from .units import mebibytes, slurm_time

_TOKEN_RE = re.compile(r"^[A-Za-z0-9_.,:@+%=/-]+$")


class RenderError(ValueError):
    """A value cannot be placed safely in a job script."""


def package_templates() -> Path:
    """Templates shipped inside the wheel, or the checkout's top-level templates/."""
    here = Path(__file__).resolve().parent
    shipped = here / "templates"
    return shipped if shipped.is_dir() else here.parent / "templates"


def shquote(value: Any) -> str:
    """Quote for POSIX shells: the value stays one word, nothing in it is expanded."""
    return shlex.quote(str(value))


def directive(value: Any) -> str:
    """A value for an ``#SBATCH`` line: plain characters only, or a clear error."""
    text = str(value)
    if not _TOKEN_RE.match(text):
        raise RenderError(
            f"{text!r} cannot go in a scheduler directive; use letters, digits and _.,:@+%=/-"
        )
    return text


def classad_string(value: Any) -> str:
    """A ClassAd string literal: double quotes, backslash and quote escaped, one line."""
    text = str(value)
    if any(c in text for c in "\n\r\0") or _MACRO_RE.search(text):
        raise RenderError(f"{text!r} cannot go in a ClassAd (line break or $(...) macro)")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_MACRO_RE = re.compile(r"\$[A-Za-z_]*\(|\$\$")


def submit_value(value: Any) -> str:
    """A value for an HTCondor submit-description line: one line, no macro (``$(X)``,
    ``$ENV(X)``, ``$$(X)``) that condor_submit would expand."""
    text = str(value)
    plain = text.replace("$(ClusterId)", "").replace("$(ProcId)", "")  # ours, in log paths
    if any(c in text for c in "\n\r\0") or _MACRO_RE.search(plain):
        raise RenderError(f"{text!r} cannot go in a submit description (line break or "
                          "$(...) macro)")
    return text


def _condor_word(value: Any) -> str:
    """One word of HTCondor's new argument/environment syntax: " doubled; a word with
    spaces or ' (or an empty one) in single quotes, with ' doubled inside."""
    text = submit_value(value).replace('"', '""')
    if not text or any(c in text for c in " \t'"):
        text = "'" + text.replace("'", "''") + "'"
    return text


def condor_args(words: Sequence[Any]) -> str:
    """HTCondor's new argument syntax: the words, double-quoted as a whole."""
    return '"' + " ".join(_condor_word(word) for word in words) + '"'


def condor_env(env: dict[str, str]) -> str:
    """HTCondor's new environment syntax: "NAME=value NAME='value with spaces'"."""
    pairs = (f"{envname(name)}={_condor_word(value)}" for name, value in sorted(env.items()))
    return '"' + " ".join(pairs) + '"'


def envname(value: Any) -> str:
    """An environment variable name: letters, digits, underscore, not starting with a digit."""
    text = str(value)
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", text):
        raise RenderError(f"{text!r} is not an environment variable name")
    return text


@lru_cache(maxsize=16)
def environment(template_dirs: tuple[str, ...] = ()) -> Environment:
    loaders = [FileSystemLoader(list(template_dirs))] if template_dirs else []
    loaders.append(FileSystemLoader(str(package_templates())))
    env = Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        # form.html.j2 is HTML: profile texts and scheduler reasons are escaped in it
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"),
                                     default_for_string=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = shquote
    env.filters["directive"] = directive
    env.filters["classad_string"] = classad_string
    env.filters["submit_value"] = submit_value
    env.filters["envname"] = envname
    env.filters["condor_args"] = condor_args
    env.filters["condor_env"] = condor_env
    return env


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
            "slurm_time": slurm_time(res.runtime),
            "job_name": self.job_name,
            "tag": self.tag,
            "workdir": self.workdir,
            "log_path": self.log_path,
            "secret_file": self.secret_file,
            "python": self.python,
            "command": list(self.command),
            "env": dict(sorted(self.env.items())),
            "app": self.app,
            "fast_path": self.fast_path,
        }


def job_tag(hub_id: str, username: str, server_name: str) -> str:
    """The tag on every job (SLURM comment, HTCondor attribute): which hub, user and server."""
    return f"hpcspawner:{hub_id}:{username}:{server_name}"


def make_spec(
    *,
    profile: Profile,
    username: str,
    server_name: str,
    home: str,
    job_dir: str,
    log_name: str,
    hub_id: str,
    python: str,
    command: Sequence[str],
    env: dict[str, str],
    job_name: str,
    secret_file: str,
    fast_path: bool | None = None,
) -> JobSpec:
    """The one place a job's description is assembled (spawner and `hpcspawner render`)."""
    full_env = dict(env)
    full_env.update({
        "HOME": home,
        "USER": username,
        "LOGNAME": username,
        "PATH": f"{posixpath.dirname(python)}:/usr/local/bin:/usr/bin:/bin",
    })
    return JobSpec(
        username=username,
        server_name=server_name,
        profile=profile,
        job_name=job_name,
        tag=job_tag(hub_id, username, server_name),
        workdir=home,
        log_path=posixpath.join(job_dir, "logs", log_name),
        secret_file=secret_file,
        python=python,
        command=list(command),
        env=full_env,
        app=profile.app,
        fast_path=profile.fast_path_enabled if fast_path is None else fast_path,
    )


def render_template(name: str, context: dict[str, Any],
                    template_dirs: Sequence[str] = ()) -> str:
    """Render ``name``; a template mistake becomes a RenderError naming the template."""
    try:
        return environment(tuple(template_dirs)).get_template(name).render(**context)
    except TemplateError as exc:
        where = f"{name}:{exc.lineno}" if isinstance(exc, TemplateSyntaxError) else name
        raise RenderError(f"template {where}: {exc.message or exc}") from None


def render_job(template: str, spec: JobSpec, template_dirs: Sequence[str] = ()) -> str:
    return render_template(template, spec.context(), template_dirs)
