"""What the spawners of one hub process share: one profile store per file, one backend per
scheduler (the pollers live in poller.py)."""

from __future__ import annotations

import os

from traitlets.config import Config

from .backends import Backend, backend_classes
from .profiles import ProfileStore

_STORES: dict[str, ProfileStore] = {}
_BACKENDS: dict[str, Backend] = {}


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


def shared_backend(name: str, config: Config) -> Backend:
    """One backend object per scheduler per hub process."""
    backend = _BACKENDS.get(name)
    if backend is None:
        backend = _BACKENDS[name] = backend_classes()[name](config=config)
    return backend
