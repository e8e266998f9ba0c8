"""What one spawn is made of and what it answers, apart from the job that carries it out: the
plan (the profile as chosen and the builder, resolved once and saved with the job), the job's
context (its scheduler, the shared poller, the spawner's ears), how a start fails (JobFailed,
with the sentence the user reads) and what a poll learns (Verdict)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .backends.base import Backend
from .domain import JobInfo
from .job_builder import JobBuilder
from .oneline import one_line
from .poller import Poller
from .profiles import Profile

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


class JobFailed(Exception):
    """The job could not start; ``message`` is the sentence the user reads."""

    def __init__(self, message: str, *, reason: str = "job", status_code: int = 500,
                 log_message: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.status_code = status_code
        self.log_message = log_message


@dataclass(frozen=True)
class JobContext:
    """What a job needs from around it: its scheduler, the shared poller, and the spawner's
    ears (saving state, hearing that the job ended)."""

    backend: Backend
    poller: Poller
    save: Callable[[], None]
    on_gone: Callable[[JobInfo], None]
    log: Logger
    name: str  # "user/server", the prefix of log lines
    fast_poll_interval: float = 1.0
    progress_every: float = 10.0


@dataclass(frozen=True)
class Plan:
    """What one spawn submits, resolved once from the user's options: the profile with the
    user's choices applied, and the builder (who, which server, where its files go, what
    runs). The first submission, the fast path's fall-back and a restarted hub's resumed wait
    all use this one plan."""

    profile: Profile
    builder: JobBuilder

    def saved(self) -> dict[str, Any]:
        return {"profile": self.profile.saved(), "builder": self.builder.saved()}

    @classmethod
    def restore(cls, saved: Any) -> Plan:
        """The plan a job's state kept; PlanLost (saying why) when it no longer reads."""
        if not isinstance(saved, dict):
            raise PlanLost(f"the saved plan is a {type(saved).__name__}, not a mapping")
        try:
            return cls(Profile.restore(saved["profile"]), JobBuilder.restore(saved["builder"]))
        except KeyError as exc:
            raise PlanLost(f"the saved plan has no {exc}") from None
        except (TypeError, ValueError, ValidationError) as exc:
            raise PlanLost(f"the saved plan no longer reads: {one_line(exc, 300)}") from None


class PlanLost(Exception):
    """A saved plan that cannot be read back (the job is followed without its limits)."""


@dataclass(frozen=True)
class Verdict:
    """What one of JupyterHub's polls learns of the job: ``status`` is poll()'s answer (None
    alive, an int when the server is gone), ``why`` the sentence the next spawn page shows,
    ``ended`` whether the session ended now (the hub records it once), ``exited`` whether it
    ended because its launcher said the server exited (the scheduler says why later), and
    ``running`` whether the server runs routed (the spawner checks it for idleness)."""

    status: int | None
    why: str = ""
    ended: bool = False
    exited: bool = False
    running: bool = False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
