"""hpcspawner: JupyterHub servers as SLURM or HTCondor batch jobs, chosen from profiles."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: the launcher inside jobs imports this
# package first, and `typing` costs it ~10 ms of every server's start

__version__ = "0.1.0"
__all__ = ["HPCSpawner", "__version__", "hub_templates"]

if TYPE_CHECKING:
    from typing import Any

    from .spawner import HPCSpawner


def hub_templates() -> str:
    """The directory of hpcspawner's JupyterHub page templates (the home page lists each
    server's profile):  ``c.JupyterHub.template_paths = [hpcspawner.hub_templates()]``."""
    from .render import package_templates

    return str(package_templates() / "jupyterhub")


def __getattr__(name: str) -> Any:
    # JupyterHub loads `hpcspawner:HPCSpawner` from the entry point: this call is where
    # hpcspawner sets itself up in the hub (hub.install: its routes, metrics and pollers),
    # before the hub builds its handlers. Importing a module of the package does nothing of
    # the kind; the CLI and the launcher inside jobs import nothing of JupyterHub.
    if name == "HPCSpawner":
        from .hub import install
        from .spawner import HPCSpawner

        install()
        return HPCSpawner
    raise AttributeError(name)
