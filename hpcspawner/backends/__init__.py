"""Scheduler backends behind one small interface (see base.Backend)."""

from __future__ import annotations

from .base import (
    Availability,
    Backend,
    BackendError,
    CancelRefused,
    ExtendRefused,
    HelperRefused,
    JobInfo,
    JobState,
    SubmitRequest,
)
from .slurm import SlurmBackend

_REGISTERED: dict[str, type[Backend]] = {}


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Add a site's own scheduler backend under ``cls.name`` (in jupyterhub_config.py, before
    the profiles are read); profiles then name it as ``backend: NAME``."""
    _REGISTERED[cls.name] = cls
    return cls


def backend_classes() -> dict[str, type[Backend]]:
    """Every backend by the name profiles use: the shipped ones and the registered ones."""
    from .htcondor import HTCondorBackend

    return {"slurm": SlurmBackend, "htcondor": HTCondorBackend, **_REGISTERED}


__all__ = [
    "Availability",
    "Backend",
    "BackendError",
    "CancelRefused",
    "ExtendRefused",
    "HelperRefused",
    "JobInfo",
    "JobState",
    "SlurmBackend",
    "SubmitRequest",
    "backend_classes",
    "register_backend",
]
