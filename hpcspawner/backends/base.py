"""What every scheduler backend offers: submit, batched query, cancel, availability."""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass, field

from traitlets import List, Unicode
from traitlets.config import LoggingConfigurable

from ..commands import CommandError, Result, expand_prefix, run_command
from ..profiles import Profile


class JobState(str, enum.Enum):
    PENDING = "pending"  # queued, idle: waiting for resources or a match
    RUNNING = "running"  # allocated and executing on a node
    COMPLETING = "completing"  # ending; the node is cleaning up
    HELD = "held"  # HTCondor hold: will not run until released
    GONE = "gone"  # ended (cancelled, completed, failed, walltime): never comes back
    UNKNOWN = "unknown"  # the scheduler did not answer; never a reason to drop a server

    @property
    def alive(self) -> bool:
        return self in (JobState.PENDING, JobState.RUNNING, JobState.HELD, JobState.UNKNOWN)


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: JobState
    host: str = ""
    reason: str = ""  # pending reason, hold reason, or why it ended
    user: str = ""
    tag: str = ""  # our tag (comment / ClassAd) — tells which hub and server own it
    since: float | None = None  # when the job entered this state (epoch), when known
    raw_state: str = ""  # the scheduler's own word (PENDING, CANCELLED, 5, ...)
    exit_code: int | None = None


@dataclass(frozen=True)
class Availability:
    name: str  # partition or pool
    free_cores: int
    total_cores: int
    free_gpus: int = 0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SubmitRequest:
    """What a backend needs to submit one job: the rendered script and who runs it."""

    script: str
    username: str
    schedd: str | None = None
    pool: str | None = None


class BackendError(Exception):
    """A backend could not do what was asked; the message says what to do."""


class Backend(LoggingConfigurable):
    """One per scheduler per hub process; shared by all spawners through the poller."""

    name = "base"
    template_name = ""

    run_as_prefix = List(
        Unicode(),
        default_value=["sudo", "-n", "-u", "{username}", "--"],
        help="""Prefix that runs submit and cancel commands as the user. `{username}` is
        replaced. The default needs a sudoers rule for the hub's account (docs/install.md).""",
    ).tag(config=True)

    query_prefix = List(
        Unicode(),
        default_value=[],
        help="Prefix for status queries, which run as the hub's own account by default.",
    ).tag(config=True)

    async def as_user(self, username: str, argv: list[str], *, input: str | None = None,
                      hint: str = "", timeout: float = 60.0) -> Result:
        return await run_command([*expand_prefix(self.run_as_prefix, username), *argv],
                                 input=input, hint=hint, timeout=timeout)

    async def as_hub(self, argv: list[str], *, timeout: float = 30.0,
                     check: bool = True) -> Result:
        return await run_command([*self.query_prefix, *argv], timeout=timeout, check=check)

    def log_name(self, server: str) -> str:
        """File name of a job's output log; the scheduler fills in the job id."""
        raise NotImplementedError

    def job_key(self, job_id: str) -> str:
        """What identifies a job across the names it is listed under (see HTCondor)."""
        return job_id

    def register_profile(self, profile: Profile) -> None:
        """A profile that uses this backend exists (e.g. its schedd must be queried too)."""

    async def reschedule(self, schedd: str | None, pool: str | None) -> None:
        """Ask the scheduler to schedule now (HTCondor's condor_reschedule); default: no-op."""

    # -- the interface --------------------------------------------------------------------
    async def submit(self, request: SubmitRequest) -> str:
        """Submit the script as the user; return the job id."""
        raise NotImplementedError

    async def query(self, tag_prefix: str) -> dict[str, JobInfo]:
        """All jobs whose tag starts with ``tag_prefix``, in one scheduler call.

        Raise CommandError when the scheduler does not answer (the poller turns that into
        UNKNOWN for every job; it never means a job is gone).
        """
        raise NotImplementedError

    async def explain_gone(self, job_ids: Collection[str]) -> dict[str, JobInfo]:
        """Ask accounting/history why jobs that left the queue ended (best effort)."""
        return {}

    async def cancel(self, job_id: str, username: str, *, schedd: str | None = None,
                     pool: str | None = None) -> None:
        raise NotImplementedError

    async def availability(self) -> list[Availability]:
        return []


__all__ = [
    "Availability",
    "Backend",
    "BackendError",
    "CommandError",
    "JobInfo",
    "JobState",
    "SubmitRequest",
]
