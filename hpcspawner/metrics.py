"""Prometheus metrics for the site's dashboards (docs/metrics.md), in JupyterHub's own registry:
``/hub/metrics`` serves them beside JupyterHub's, no second endpoint.

Names follow Prometheus conventions (``hpcspawner_…``, seconds, ``_total`` counters). Label
values are bounded: profile names are the site's (a name no profile has is ``other``), the
backend names, and the command names the backends' configured commands; never a user name, a
server name or a job id.
"""

from __future__ import annotations

import logging
import posixpath
import weakref
from collections.abc import Callable, Collection, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .oneline import shown

log = logging.getLogger("hpcspawner.metrics")

OUTCOMES = ("ready", "fell_back", "refused", "failed", "timed_out", "cancelled")
WAIT_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
OURS = CollectorRegistry(auto_describe=False)  # served through JupyterHub's registry (below)
COMMAND_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))

SPAWNS = Counter("hpcspawner_spawns_total", "Spawns by profile, backend and how they ended: "
                 "ready, fell_back (ready after the HTCondor fast path fell back), refused "
                 "(options or caps), failed, timed_out (pending_timeout), cancelled (stopped "
                 "while starting, or JupyterHub's start_timeout).",
                 ["profile", "backend", "outcome"], registry=OURS)
READY = Histogram("hpcspawner_spawn_ready_seconds", "From the spawn's start to the server "
                  "ready, by profile.", ["profile"], buckets=WAIT_BUCKETS, registry=OURS)
QUEUED = Histogram("hpcspawner_job_queued_seconds", "From the job's submission to the "
                   "scheduler running it, by profile.", ["profile"], buckets=WAIT_BUCKETS,
                   registry=OURS)
TO_REPORT = Histogram("hpcspawner_job_start_to_report_seconds", "From the scheduler running "
                      "the job to the launcher's accepted report, by profile.", ["profile"],
                      buckets=WAIT_BUCKETS, registry=OURS)
COMMANDS_RUN = Counter("hpcspawner_scheduler_commands_total", "Scheduler commands the hub ran, "
                       "by command and result (ok, error).", ["command", "result"], registry=OURS)
COMMAND_TIME = Histogram("hpcspawner_scheduler_command_seconds", "How long scheduler commands "
                         "took, by command.", ["command"], buckets=COMMAND_BUCKETS, registry=OURS)
POLL = Histogram("hpcspawner_poll_cycle_seconds", "One poll of a backend's jobs (its one "
                 "query and what follows).", ["backend"], buckets=COMMAND_BUCKETS, registry=OURS)
ORPHANS = Counter("hpcspawner_orphans_cancelled_total", "Jobs with the hub's tag that no "
                  "server owns, cancelled.", ["backend"], registry=OURS)
REPORTS_REFUSED = Counter("hpcspawner_reports_refused_total", "Launcher reports the hub "
                          "refused, by reason (forbidden: not the server's token; refused: "
                          "cannot be true; busy; not_yet): attacks or bugs.", ["reason"],
                          registry=OURS)
FAST_PATH = Counter("hpcspawner_fast_path_total", "HTCondor fast-path spawns: hit (ready on a "
                    "reserved slot) or fell_back (moved to the regular pool).", ["result"],
                    registry=OURS)
CAN_START = Gauge("hpcspawner_profile_can_start", "Whether a profile can start now, as the "
                  "spawn page says (1 yes, 0 no); absent while unknown.", ["profile"],
                  registry=OURS)

_SPAWNERS: weakref.WeakSet[Any] = weakref.WeakSet()


def command_name(argv: list[str], known: Collection[str]) -> str:
    """The bounded label of a command: its name when it is one of the backend's configured
    commands (``known``), else ``other``."""
    name = posixpath.basename(argv[0]) if argv else ""
    return name if name in known else "other"


def observe_command(argv: list[str], known: Collection[str], seconds: float,
                    ok: bool) -> None:
    name = command_name(argv, known)
    COMMANDS_RUN.labels(name, "ok" if ok else "error").inc()
    COMMAND_TIME.labels(name).observe(seconds)


def follow(spawner: Any) -> None:
    """Count ``spawner``'s server in hpcspawner_servers (for as long as it exists)."""
    _SPAWNERS.add(spawner)


# (profile, state) of a spawner's server, or None when it has no batch job: given by the
# hub-side code that knows the cards (``install``), so this module imports nothing above it
ServerState = Callable[[Any], "tuple[str, str] | None"]


class _Hpcspawner(Collector):
    """hpcspawner's metrics inside JupyterHub's registry: the ones above (OURS), and
    hpcspawner_servers{profile, state}, the servers with a batch job by their cards' state
    (queued, starting, running, ending) at scrape time. It describes nothing: registering
    then collects nothing (collecting imports JupyterHub, which registers its own metrics
    under the registry's lock)."""

    def __init__(self, server_state: ServerState) -> None:
        self.server_state = server_state

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("hpcspawner_servers", "Servers with a batch job, by profile "
                                 "and state.", labels=["profile", "state"])

    def describe(self) -> Iterator[Any]:
        return iter(())

    def collect(self) -> Iterator[Any]:
        yield from OURS.collect()
        family = self._family()
        counts: dict[tuple[str, str], int] = {}
        for spawner in list(_SPAWNERS):
            try:
                key = self.server_state(spawner)
            except Exception as exc:  # one server's fault never fails the whole scrape
                log.warning("hpcspawner: server %s left out of hpcspawner_servers: %s: %s",
                            shown(getattr(spawner, "name", "?"), 80), type(exc).__name__,
                            shown(exc))
                continue
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
        for (profile, state), count in sorted(counts.items()):
            family.add_metric([profile, state], count)
        yield family


_INSTALLED: list[_Hpcspawner] = []


def install(server_state: ServerState, registry: CollectorRegistry = REGISTRY) -> None:
    """Serve hpcspawner's metrics through JupyterHub's registry (``/hub/metrics``), once;
    ``server_state`` tells a spawner's (profile, state) for hpcspawner_servers."""
    if _INSTALLED:
        return
    collector = _Hpcspawner(server_state)
    registry.register(collector)
    _INSTALLED.append(collector)
