"""Scheduler backends behind one small interface (see base.Backend)."""

from __future__ import annotations

from .base import (
    Availability,
    Backend,
    BackendError,
    HelperRefused,
    JobInfo,
    JobState,
    SubmitRequest,
)
from .slurm import SlurmBackend


def backend_classes() -> dict[str, type[Backend]]:
    from .htcondor import HTCondorBackend

    return {"slurm": SlurmBackend, "htcondor": HTCondorBackend}


__all__ = [
    "Availability",
    "Backend",
    "BackendError",
    "HelperRefused",
    "JobInfo",
    "JobState",
    "SlurmBackend",
    "SubmitRequest",
    "backend_classes",
]
