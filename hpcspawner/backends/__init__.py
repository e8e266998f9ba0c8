"""Scheduler backends behind one small interface (see base.Backend), and where they come from.

hpcspawner's own (``slurm``, ``htcondor``) are built in. A site's own is a ``Backend`` subclass
in a package of its own, declared in that package's metadata as an entry point of the group
``hpcspawner.backends`` (``pbs = "site_pbs:PBSBackend"``, docs/install.md): the
hub and hpcspawner-helper, a fresh process run as the user through sudo that reads no hub
configuration, find it the same way, in ``backend_classes()``.
"""

from __future__ import annotations

import functools
import logging
from importlib.metadata import EntryPoint, entry_points

from ..commands import CommandError
from ..profiles import know_schedulers
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
    Tool,
)
from .slurm import SlurmBackend

ENTRY_POINT_GROUP = "hpcspawner.backends"

log = logging.getLogger("hpcspawner.backends")

_REGISTERED: dict[str, type[Backend]] = {}


class BackendLoadError(BackendError, ValueError):
    """A backend a package declares cannot be used (it does not load, or its name is taken):
    the sentence names the package and what to do. A ValueError too, so a profile naming any
    backend reports it at the profile's line."""


def builtin_backends() -> dict[str, type[Backend]]:
    """hpcspawner's own backends; their names are reserved."""
    from .htcondor import HTCondorBackend

    return {"slurm": SlurmBackend, "htcondor": HTCondorBackend}


@functools.cache
def installed_backends() -> dict[str, type[Backend]]:
    """The backends the installed packages declare (entry points of ENTRY_POINT_GROUP), loaded
    once per process. BackendLoadError when one cannot be used: its name is another backend's,
    it does not import, it is no Backend, or its class calls itself by another name (profiles
    and the helper know a backend by one name)."""
    builtin = builtin_backends()
    declared: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in builtin:
            raise BackendLoadError(f"{_declared(entry)} has the name of hpcspawner's own "
                                   "backend; name it otherwise in that package's entry points")
        if entry.name in declared:
            raise BackendLoadError(f"{_declared(entry)}: {_package(declared[entry.name])} "
                                   "declares a backend of that name too; uninstall one of the "
                                   "two packages")
        declared[entry.name] = entry
    return {name: _load(entry) for name, entry in declared.items()}


def _package(entry: EntryPoint) -> str:
    dist = entry.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an installed package"


def _declared(entry: EntryPoint) -> str:
    return (f"the backend {entry.name!r} that {_package(entry)} declares "
            f"({ENTRY_POINT_GROUP}: {entry.name} = {entry.value})")


def _load(entry: EntryPoint) -> type[Backend]:
    try:
        cls = entry.load()
    except Exception as exc:  # a site's code: any error is its package's, said in one line
        raise BackendLoadError(f"{_declared(entry)} cannot be loaded ({type(exc).__name__}: "
                               f"{exc}); reinstall or uninstall {_package(entry)}") from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise BackendLoadError(f"{_declared(entry)} is not a subclass of "
                               "hpcspawner.backends.Backend")
    if cls.name != entry.name:
        raise BackendLoadError(f"{_declared(entry)} is a class whose name is {cls.name!r}; the "
                               "entry point and the class must use the same name")
    return cls


def register_backend(cls: type[Backend]) -> type[Backend]:
    """Add a backend to this process only (e.g. in jupyterhub_config.py, before the profiles
    are read). hpcspawner-helper reads no hub configuration and so cannot cancel its jobs:
    declare a site's backend as an entry point instead (docs/install.md)."""
    known = {**builtin_backends(), **installed_backends()}
    if known.get(cls.name, cls) is not cls:
        raise BackendLoadError(f"register_backend({cls.__name__}): the name {cls.name!r} is "
                               f"{known[cls.name].__module__}.{known[cls.name].__name__}'s")
    if cls.name not in known:
        log.warning("The backend %r is registered in this process only: hpcspawner-helper "
                    "will not find it, so its jobs cannot be cancelled. Declare it as an "
                    "entry point of %s in its package (docs/install.md).", cls.name,
                    ENTRY_POINT_GROUP)
    _REGISTERED[cls.name] = cls
    return cls


def backend_classes() -> dict[str, type[Backend]]:
    """Every backend by the name profiles use: the built-in ones, the installed packages'
    (entry points) and any registered in this process. BackendLoadError, naming the package,
    when an installed one cannot be used."""
    return {**builtin_backends(), **installed_backends(), **_REGISTERED}


know_schedulers(backend_classes)  # the profile schema asks which exist (profiles.py)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Availability",
    "Backend",
    "BackendError",
    "BackendLoadError",
    "CancelRefused",
    "CommandError",
    "ExtendRefused",
    "HelperRefused",
    "JobInfo",
    "JobState",
    "SlurmBackend",
    "SubmitRequest",
    "Tool",
    "backend_classes",
    "builtin_backends",
    "installed_backends",
    "register_backend",
]
