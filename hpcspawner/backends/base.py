"""The interface every scheduler backend implements: four abstract methods a backend must
write (submit, query, checked_cancel, log_name) and the optional ones, each with its contract.

A backend owns everything about its scheduler: the job template and its quoting filters, where
a profile's jobs go (partition, schedd, pool, fast path), how jobs are named and tagged, how
to read the scheduler's answers, and the checked cancel hpcspawner-helper runs as the user.
How it runs commands (as the user, as the hub, the helper) is running.SchedulerCommands'.
A class that misses an abstract method cannot be made (TypeError names the methods).
"""

from __future__ import annotations

import abc
import posixpath
import subprocess
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from traitlets import MetaHasTraits

from ..commands import CommandError
from ..domain import Availability, JobInfo, JobState
from ..profiles import Profile
from .errors import BackendError, CancelRefused, ExtendRefused, HelperRefused
from .running import SchedulerCommands, refusal

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
class ExtendBlocked:
    """Why the hub cannot give this scheduler's servers more time on this cluster: a short
    reason the card shows beside its disabled button, and the operator's sentence (the hub's
    log, ``hpcspawner check``) with what to do."""

    card: str
    operator: str


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


class _BackendMeta(MetaHasTraits, abc.ABCMeta):
    """Traitlets' configurable classes with abstract methods."""


class Backend(SchedulerCommands, metaclass=_BackendMeta):
    """One per scheduler per hub process; shared by all spawners through the poller."""

    name = "base"
    can_extend = False  # Backend.extend raises a running job's time limit
    template_name = ""
    # a directory of this backend's own templates (a site's backend ships its template in its
    # package); '' = hpcspawner's. The admin's template_paths come first all the same.
    template_dir = ""
    submit_path = ""  # the submit command where Debian installs it (`hpcspawner sudoers`)
    # what the hub's log calls the scheduler's two sources of a job's end
    queue_tool = "the queue"
    accounting_tool = "accounting"

    # -- what the job script needs from the scheduler ------------------------------------
    def template_context(self, profile: Profile) -> dict[str, Any]:
        """What this scheduler (its settings, its spelling of ``profile``'s request) adds to
        the job template's context."""
        return {}

    @classmethod
    def filters(cls) -> dict[str, Callable[[Any], str]]:
        """Jinja2 filters this scheduler's template uses (its quoting rules)."""
        return {}

    @abc.abstractmethod
    def log_name(self, server: str, job_id: str = "") -> str:
        """File name of a job's output log: with the scheduler's placeholder for the job id
        (for the job script), or for a known ``job_id`` (to tell the user where to look)."""

    def where(self, profile: Profile, fast: bool = False) -> str:
        """Where a profile's job goes, in words for the progress message ('' = default)."""
        return ""

    def place(self, profile: Profile) -> str:
        """Where a profile's jobs run, in a few words for the spawn page's profile list
        ("partition jupyter"); '' says nothing."""
        return ""

    def fast_path(self, profile: Profile) -> bool:
        """Whether a profile's jobs go first to this scheduler's fast path (HTCondor's
        reserved notebook slots); no other scheduler has one."""
        return False

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
    @abc.abstractmethod
    async def submit(self, request: SubmitRequest) -> str:
        """Submit the script as the user (``as_user``); return the job id. CommandError when
        the scheduler refused or did not answer (``transient`` tells which), BackendError
        with a sentence when its answer cannot be read."""

    @abc.abstractmethod
    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        """All jobs whose tag starts with ``tag_prefix``, in one scheduler call per location;
        ``job_ids`` are the jobs the hub follows (their locations are always asked). Each
        record's user and tag are the scheduler's, in a form another user cannot forge (a
        job comment with a newline must not make a record); a record that cannot be read
        whole is UNKNOWN, never GONE. Bounded: a flood of foreign jobs costs memory and time
        in proportion, never without end.

        Raise CommandError when the scheduler does not answer (the poller turns that into
        UNKNOWN for every job; it never means a job is gone).
        """

    async def explain_gone(self, job_ids: Collection[str]) -> dict[str, JobInfo]:
        """Ask accounting/history why jobs that left the queue ended (best effort)."""
        return {}

    async def route_hosts(self, infos: Collection[JobInfo]) -> dict[str, str]:
        """The host each running job's server is reached on, from a record that the job's
        owner cannot write (the hub routes there); '' or absent when the scheduler names none.
        Asked once per poll, only for jobs waiting for their launcher's report. Default: the
        host of the query's own record (SLURM's node list, which only slurmctld writes)."""
        return {info.job_id: info.host for info in infos}

    async def extend(self, job_id: str, runtime: int, profile: Profile) -> None:
        """Raise the time limit of the running hub job ``job_id`` of ``profile`` to
        ``runtime`` seconds in all, as the hub (a job's owner cannot raise their own limit);
        the hub has checked that the job is the server's. ExtendRefused with a sentence."""
        raise ExtendRefused(f"Servers on {self.name} cannot be given more time by "
                            "hpcspawner.")

    async def extend_blocker(self) -> ExtendBlocked | None:
        """Why the hub cannot raise its jobs' time limits on this cluster (None: it can, as
        far as the scheduler tells without trying). Asked once per set of profiles that
        allow more time (moretime.ExtendCheck), never per card."""
        if self.can_extend:
            return None
        words = f"Servers on {self.name} cannot be given more time by hpcspawner."
        return ExtendBlocked(words, words)

    async def cancel(self, job_id: str, username: str, tag: str) -> None:
        """Cancel the job as its user, through the helper, which first asks the scheduler
        whether the job is that user's and carries exactly ``tag``."""
        tools = self.tools_dir()
        await self.helper_as_user(username, ["cancel", self.name, job_id, tag,
                                             *(["--bin-dir", tools] if tools else [])])

    @classmethod
    @abc.abstractmethod
    def checked_cancel(cls, job_id: str, tag: str, user: str, tool: Tool) -> str:
        """Run by hpcspawner-helper AS THE USER (no hub configuration: the class comes from
        its package's entry point): cancel ``job_id`` if the scheduler says it is ``user``'s
        and carries exactly ``tag``, running the scheduler's commands only through ``tool``;
        a sentence for the hub's log. CancelRefused (with the sentence) otherwise."""

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
        """What each node (or slot) could give a new job now, in one query (the spawn page's
        "can start now", cached per interval); nothing when the scheduler cannot tell."""
        return []

    async def expected_start(self, profile: Profile) -> float | None:
        """When the scheduler expects a job of ``profile`` could start (epoch); None when
        it gives no estimate."""
        return None


__all__ = [
    "Availability",
    "Backend",
    "BackendError",
    "CancelRefused",
    "CommandError",
    "DaskCluster",
    "ExtendBlocked",
    "ExtendRefused",
    "HelperRefused",
    "JobInfo",
    "JobState",
    "SubmitRequest",
    "Tool",
    "refusal",
]
