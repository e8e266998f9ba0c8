"""hpcspawner's set-up inside JupyterHub, done by one explicit call, ``install()``: the hub's
routes (the launcher's report, the servers' own activity, the session cards and more time),
the metrics in JupyterHub's registry, and the pollers started when the hub starts.

JupyterHub builds its handlers before it makes any spawner, so this must run while the hub
loads its config: ``c.JupyterHub.spawner_class = "hpcspawner"`` asks the package for
``HPCSpawner`` (hpcspawner/__init__.py), which calls ``install()`` once. Importing any module
of the package changes nothing in JupyterHub.
"""

from __future__ import annotations

from typing import Any

from . import activity, cards, metrics, report, sessions
from .spawner import HPCSpawner


class _TheHub:
    """The user of the spawner the hub starts its pollers with: no one (only its database)."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.name = ""
        self.admin = False
        self.groups: list[Any] = []


def follow_jobs_from_hub_start(hub_class: Any = None) -> None:
    """JupyterHub makes spawners only for the servers it has: a hub restarted with none would
    never sweep up orphans (e.g. the jobs and Dask workers of a server removed from its
    database). JupyterHub has no start-up hook for spawners, so its own init_spawners is
    wrapped: once it is done, every backend's poller starts as a spawner would start it.
    (``hub_class``: JupyterHub's app, or a test's stand-in for it.) Idempotent."""
    if hub_class is None:
        from jupyterhub.app import JupyterHub

        hub_class = JupyterHub
    original = hub_class.init_spawners
    if getattr(original, "hpcspawner", False):
        return

    async def init_spawners(app: Any) -> None:
        await original(app)
        if app.spawner_class is not HPCSpawner and not issubclass(app.spawner_class,
                                                                  HPCSpawner):
            return
        app.log.info("hpcspawner: following this hub's jobs from now on (orphans included)")
        HPCSpawner(config=app.config, user=_TheHub(app.db), hub=app.hub,
                   log=app.log).start_pollers()

    init_spawners.hpcspawner = True  # type: ignore[attr-defined]
    hub_class.init_spawners = init_spawners


def install() -> None:
    """Set hpcspawner up in the JupyterHub of this process (idempotent): its routes must
    exist before the hub builds its handlers."""
    report.register_report_handler()
    activity.register_activity_handler()
    sessions.register_session_handlers()
    metrics.install(cards.server_state)
    follow_jobs_from_hub_start()
