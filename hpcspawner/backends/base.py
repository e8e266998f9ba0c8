"""What every scheduler backend offers: submit, batched query, cancel, availability.

A backend owns everything about its scheduler: the job template and its quoting filters, where
a profile's jobs go (partition, schedd, pool, fast path), how jobs are named and tagged, how
to read the scheduler's answers, and the checked cancel hpcspawner-helper runs as the user.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from traitlets import Float, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..commands import (
    KEEP_ENV,
    CommandError,
    Result,
    bare_environment,
    expand_prefix,
    run_command,
)
from ..domain import Availability, JobInfo, JobState
from ..metrics import observe_command
from ..profiles import Profile
from ..wire import REFUSED

# How the helper lets a backend run one of its scheduler's commands, as the user: the command
# by name (the helper opens and checks the file), its arguments; never a shell.
Tool = Callable[[str, list[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class SubmitRequest:
    """What a backend needs to submit one job: the rendered script, who runs it, and the
    profile (the backend decides where the job goes from it; ``fast`` asks for the fast path)."""

    script: str
    username: str
    profile: Profile
    fast: bool = False


@dataclass(frozen=True)
class DaskCluster:
    """How a server's notebook makes its Dask workers (hpcspawner.dask): a dask-jobqueue
    cluster class (its name there), its options, and the directories of the scheduler
    commands it runs, put first on the notebook's PATH."""

    cls: str
    options: dict[str, Any]
    tool_dirs: tuple[str, ...] = ()


def tool_dirs(*tools: str) -> tuple[str, ...]:
    """The directories of the commands configured by absolute path (a bare name is found on
    the job's PATH)."""
    return tuple(dict.fromkeys(posixpath.dirname(t) for t in tools if t.startswith("/")))


class BackendError(Exception):
    """A backend could not do what was asked; the message says what to do."""


class CancelRefused(Exception):
    """The scheduler's record says the job is not the caller's to cancel, or the scheduler
    failed: the helper refuses, with this sentence."""


class ExtendRefused(BackendError):
    """A running server cannot be given more time: the sentence says why (nothing changed)."""


class HelperRefused(BackendError):
    """hpcspawner-helper refused (exit 2): ``why`` is its own sentence, for the person who
    asked; the message adds the command, for the hub's log."""

    def __init__(self, message: str, why: str):
        super().__init__(message)
        self.why = why


def refusal(stderr: str) -> str | None:
    """The helper's refusal in its own words: from the line that starts with its marker to
    the end (the helper exits right after it); lines before it (e.g. sudo's) are not its."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(REFUSED):
            return "\n".join([line[len(REFUSED):], *lines[i + 1:]]).strip()
    return None


@dataclass
class _Outcome:
    ok: bool = True


@contextlib.contextmanager
def counted(argv: list[str], known: Collection[str]) -> Iterator[_Outcome]:
    """Count a scheduler command and its time in the hub's metrics (metrics.py): an error
    when it raised or (``outcome.ok = False``) answered with one."""
    outcome, started = _Outcome(), time.monotonic()
    try:
        yield outcome
    except BaseException:
        outcome.ok = False
        raise
    finally:
        observe_command(argv, known, time.monotonic() - started, outcome.ok)


class Backend(LoggingConfigurable):
    """One per scheduler per hub process; shared by all spawners through the poller."""

    name = "base"
    _command_names: frozenset[str] | None = None
    can_extend = False  # Backend.extend raises a running job's time limit
    template_name = ""
    submit_path = ""  # the submit command where Debian installs it (`hpcspawner sudoers`)
    # what the hub's log calls the scheduler's two sources of a job's end
    queue_tool = "the queue"
    accounting_tool = "accounting"

    run_as_prefix = List(
        Unicode(),
        default_value=["sudo", "-n", "-u", "{username}", "--"],
        help="""Prefix that runs submit and cancel commands as the user. `{username}` is
        replaced. The default needs a sudoers rule for the hub's account (docs/install.md).""",
    ).tag(config=True)

    user_env_keep = List(
        Unicode(), default_value=list(KEEP_ENV),
        help="""The hub's environment variables that commands run as the user (submit,
        cancel, hpcspawner-helper) get; nothing else of the hub's environment reaches them,
        nor a SLURM job, which starts from sbatch's environment. Add e.g. `SBATCH_CLUSTERS`
        when the hub's environment carries it (sudo's env_reset may still drop it).""",
    ).tag(config=True)

    query_prefix = List(
        Unicode(),
        default_value=[],
        help="Prefix for status queries, which run as the hub's own account by default.",
    ).tag(config=True)

    helper = Unicode(
        help="""Absolute path of `hpcspawner-helper`, the one program besides the submit
        command that the hub runs as a user (token files, checked cancels; docs/install.md).
        Default: beside the hub's Python.""",
    ).tag(config=True)

    job_name = Unicode(
        "jupyterhub",
        help="""Name of every job this hub submits (SLURM job name, HTCondor batch_name);
        SLURM is asked for this name only, so the one query stays small on a busy cluster.""",
    ).tag(config=True)

    command_timeout = Float(
        60.0,
        help="""Seconds a scheduler command (submit, query) may take; then it and everything
        it started (sudo's child included) is ended and the attempt counts as failed (a
        query: the scheduler is not answering; a submit: the user is told).""",
    ).tag(config=True)

    helper_timeout = Float(
        60.0,
        help="""Seconds hpcspawner-helper (token files; a cancel, which asks the scheduler
        first) may take. Separate from command_timeout: a slow scheduler must not leave a
        token file behind.""",
    ).tag(config=True)

    @default("helper")
    def _helper_default(self) -> str:
        return os.path.join(os.path.dirname(sys.executable), "hpcspawner-helper")

    def command_names(self) -> frozenset[str]:
        """The names of the commands this backend is configured with (its settings that are
        commands, and the helper): the metrics' bounded command labels."""
        if self._command_names is None:
            self._command_names = frozenset(
                posixpath.basename(value) for value in self.trait_values().values()
                if isinstance(value, str) and value and " " not in value)
        return self._command_names

    async def as_user(self, username: str, argv: list[str], *, input: str | None = None,
                      hint: str = "", timeout: float | None = None) -> Result:
        with counted(argv, self.command_names()):
            return await run_command(
                [*expand_prefix(self.run_as_prefix, username), *argv], input=input, hint=hint,
                env=bare_environment(self.user_env_keep),
                timeout=self.command_timeout if timeout is None else timeout)

    async def as_hub(self, argv: list[str], *, check: bool = True) -> Result:
        with counted(argv, self.command_names()) as result:
            answer = await run_command([*self.query_prefix, *argv],
                                       timeout=self.command_timeout, check=check)
            result.ok = answer.returncode == 0
            return answer

    # -- what the job script needs from the scheduler ------------------------------------
    def template_context(self, profile: Profile) -> dict[str, Any]:
        """What this scheduler (its settings, its spelling of ``profile``'s request) adds to
        the job template's context."""
        return {}

    @classmethod
    def filters(cls) -> dict[str, Callable[[Any], str]]:
        """Jinja2 filters this scheduler's template uses (its quoting rules)."""
        return {}

    def log_name(self, server: str, job_id: str = "") -> str:
        """File name of a job's output log: with the scheduler's placeholder for the job id
        (for the job script), or for a known ``job_id`` (to tell the user where to look)."""
        raise NotImplementedError

    def where(self, profile: Profile, fast: bool = False) -> str:
        """Where a profile's job goes, in words for the progress message ('' = default)."""
        return ""

    def dask_cluster(self, profile: Profile, tag: str) -> DaskCluster | None:
        """The dask-jobqueue cluster class (its name) and options whose worker jobs go where
        ``profile``'s jobs go, sized like it, and carry ``tag`` and this hub's job name, so
        the one status query sees them (hpcspawner.dask). None: no Dask on this scheduler."""
        return None

    def job_key(self, job_id: str) -> str:
        """What identifies a job across the names it is listed under (see HTCondor)."""
        return job_id

    def register_profile(self, profile: Profile) -> None:
        """A profile that uses this backend exists (e.g. its schedd must be queried too)."""

    async def reschedule(self, job_id: str) -> None:
        """Ask the scheduler to schedule ``job_id`` now (condor_reschedule); default: no-op."""

    # -- the interface --------------------------------------------------------------------
    async def submit(self, request: SubmitRequest) -> str:
        """Submit the script as the user; return the job id."""
        raise NotImplementedError

    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        """All jobs whose tag starts with ``tag_prefix``, in one scheduler call per location;
        ``job_ids`` are the jobs the hub follows (their locations are always asked).

        Raise CommandError when the scheduler does not answer (the poller turns that into
        UNKNOWN for every job; it never means a job is gone).
        """
        raise NotImplementedError

    async def explain_gone(self, job_ids: Collection[str]) -> dict[str, JobInfo]:
        """Ask accounting/history why jobs that left the queue ended (best effort)."""
        return {}

    async def route_hosts(self, infos: Collection[JobInfo]) -> dict[str, str]:
        """The host each running job's server is reached on, from a record that the job's
        owner cannot write (the hub routes there); '' or absent when the scheduler names none.
        Asked once per poll, only for jobs waiting for their launcher's report. Default: the
        host of the query's own record (SLURM's node list, which only slurmctld writes)."""
        return {info.job_id: info.host for info in infos}

    # words of a scheduler that did not answer (a refusal names what is wrong instead)
    UNREACHABLE = ("no answer within", "Unable to contact", "Socket timed out",
                   "temporarily unable", "Resource temporarily unavailable",
                   "Can't find address", "Failed to connect", "Connection refused",
                   "not answering")

    def transient(self, exc: CommandError) -> bool:
        """Whether a failed command may work if tried again (the scheduler did not answer),
        rather than a refusal that only a change of configuration can fix."""
        if exc.returncode is None:
            return True
        return any(word in exc.stderr for word in self.UNREACHABLE)

    def tools_dir(self) -> str:
        """Where the scheduler's own commands are, when configured by absolute path ('' =
        sudo's PATH); the helper runs them from there only if root owns the directory."""
        return ""

    async def helper_as_user(self, username: str, args: list[str], *,
                             input: str | None = None) -> Result:
        """Run ``hpcspawner-helper ARGS`` as the user. Its refusals (exit 2) become a
        HelperRefused (a BackendError): asking again cannot help."""
        try:
            return await self.as_user(username, [self.helper, *args], input=input,
                                      hint="the hub may run hpcspawner-helper as the user "
                                      "(sudoers, docs/install.md)", timeout=self.helper_timeout)
        except CommandError as exc:
            why = refusal(exc.stderr) if exc.returncode == 2 else None
            if why is not None:
                raise HelperRefused(str(exc), why) from None
            raise

    async def extend(self, job_id: str, runtime: int, profile: Profile) -> None:
        """Raise the time limit of the running hub job ``job_id`` of ``profile`` to
        ``runtime`` seconds in all, as the hub (a job's owner cannot raise their own limit);
        the hub has checked that the job is the server's. ExtendRefused with a sentence."""
        raise ExtendRefused(f"Servers on {self.name} cannot be given more time by "
                            "hpcspawner.")

    async def cancel(self, job_id: str, username: str, tag: str) -> None:
        """Cancel the job as its user, through the helper, which first asks the scheduler
        whether the job is that user's and carries exactly ``tag``."""
        tools = self.tools_dir()
        await self.helper_as_user(username, ["cancel", self.name, job_id, tag,
                                             *(["--bin-dir", tools] if tools else [])])

    @classmethod
    def checked_cancel(cls, job_id: str, tag: str, user: str, tool: Tool) -> str:
        """Run by hpcspawner-helper AS THE USER (no hub configuration): cancel ``job_id`` if
        the scheduler says it is ``user``'s and carries exactly ``tag``; a sentence for the
        hub's log. CancelRefused otherwise."""
        raise CancelRefused(f"the {cls.name} backend has no checked cancel")

    @classmethod
    def availability_group(cls, profile: Profile) -> tuple[str | None, str]:
        """Which group of ``availability()`` a profile's jobs go to (None: any) and its name
        in words for the spawn page."""
        return "pool", "the pool"

    @classmethod
    def special_outlook(cls, profile: Profile,
                        slots: list[Availability]) -> tuple[bool, str] | None:
        """What the spawn page says of a profile this scheduler starts its own way (can it
        start now, and the sentence); None: the generic free-cores outlook applies."""
        return None

    async def profile_warnings(self, profile: Profile) -> list[str]:
        """What the scheduler can tell about a profile that is valid but will not work as
        meant (``hpcspawner check``); nothing when the scheduler does not answer."""
        return []

    async def availability(self) -> list[Availability]:
        return []

    async def expected_start(self, profile: Profile) -> float | None:
        """When the scheduler expects a job of ``profile`` could start (epoch); None when
        it gives no estimate."""
        return None


__all__ = [
    "Availability",
    "Backend",
    "BackendError",
    "CommandError",
    "DaskCluster",
    "HelperRefused",
    "JobInfo",
    "JobState",
    "SubmitRequest",
]
