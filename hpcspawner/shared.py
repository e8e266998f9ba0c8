"""What the spawners of one hub process share, in one place: one profile store per file, one
backend per scheduler, one poller per (scheduler, hub). ``reset()`` forgets them all (tests,
benchmarks that run several event loops in turn)."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import Callable

from traitlets.config import Config

from .availability import AvailabilityCache, TimedCache
from .backends import Backend, backend_classes
from .poller import Poller
from .profiles import Profile, ProfileStore

_STORES: dict[str, ProfileStore] = {}
_BACKENDS: dict[str, Backend] = {}
_POLLERS: dict[tuple[str, str], Poller] = {}
_HUB_IDS: dict[str, str] = {}
_AVAILABILITY: dict[str, AvailabilityCache] = {}
_STARTS: dict[tuple[object, ...], TimedCache[float | None]] = {}


def config_dir() -> str:
    """The directory of the hub's jupyterhub_config.py (or the working directory)."""
    try:
        from jupyterhub.app import JupyterHub

        if JupyterHub.initialized():
            config_file = JupyterHub.instance().config_file
            return os.path.dirname(os.path.abspath(config_file))
    except Exception:  # no hub app (CLI, tests): fall back to the working directory
        pass
    return os.getcwd()


def profile_store(path: str) -> ProfileStore:
    store = _STORES.get(path)
    if store is None:
        store = _STORES[path] = ProfileStore(path)
    return store


def backend(name: str, config: Config | None = None) -> Backend:
    """One backend object per scheduler per hub process."""
    found = _BACKENDS.get(name)
    if found is None:
        found = _BACKENDS[name] = backend_classes()[name](config=config or Config())
    return found


def use_backend(name: str, instance: Backend) -> None:
    """Serve ``instance`` as the backend ``name`` (tests, or a site embedding its own)."""
    _BACKENDS[name] = instance


def poller(backend_name: str, tag_prefix: str, factory: Callable[[], Poller]) -> Poller:
    """The one poller for a scheduler and a hub's tag in this hub process."""
    key = (backend_name, tag_prefix)
    found = _POLLERS.get(key)
    if found is None:
        found = _POLLERS[key] = factory()
    return found


def availability(backend_name: str, ttl: float) -> AvailabilityCache:
    """The one availability cache per scheduler in this hub process (the spawn page's)."""
    found = _AVAILABILITY.get(backend_name)
    if found is None:
        found = _AVAILABILITY[backend_name] = AvailabilityCache(
            backend(backend_name).availability, ttl)
    return found


def expected_start(profile: Profile, ttl: float) -> TimedCache[float | None]:
    """One cache per distinct request (backend, partition, resources, extra options) for the
    scheduler's expected start of a profile that cannot start now (``sbatch --test-only``)."""
    key = (profile.backend, profile.partition, profile.resources, tuple(profile.extra_options))
    found = _STARTS.get(key)
    if found is None:
        found = _STARTS[key] = TimedCache(
            lambda: backend(profile.backend).expected_start(profile), ttl)
    return found


def hub_id(path: str, log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> str:
    """The hub's id kept in ``path``, made (random) the first time; the host name if the
    file cannot be written."""
    found = _HUB_IDS.get(path)
    if found is not None:
        return found
    try:
        with open(path, encoding="ascii") as f:
            found = f.read().strip()
    except FileNotFoundError:
        found = "h" + secrets.token_hex(4)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(found + "\n")
            log.info("hpcspawner: this hub's id is %s (kept in %s)", found,
                     os.path.abspath(path))
        except FileExistsError:  # another process made it first
            return hub_id(path, log)
        except OSError as exc:
            found = socket.gethostname().split(".")[0]
            log.warning("hpcspawner: cannot keep the hub id in %s (%s); using the host "
                        "name %s, which changes if the hub moves to another host",
                        path, exc.strerror, found)
    _HUB_IDS[path] = found
    return found


def reset() -> None:
    """Forget every store, backend and poller (stopping the pollers' loops)."""
    for item in _POLLERS.values():
        item.stop()
    _POLLERS.clear()
    _BACKENDS.clear()
    _STORES.clear()
    _HUB_IDS.clear()
    _AVAILABILITY.clear()
    _STARTS.clear()
