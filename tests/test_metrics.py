"""The hub's metrics (metrics.py, docs/metrics.md) without a hub: bounded labels, and the
example Grafana dashboard against what the hub exports. The counts after real spawns are
tests/e2e/test_metrics_e2e.py's."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import generate_latest

from hpcspawner.backends.slurm import SlurmBackend
from hpcspawner.metrics import OURS, command_name


def test_a_commands_label_is_one_of_the_backends_configured_commands() -> None:
    known = SlurmBackend(sbatch="/opt/slurm/bin/sbatch").command_names()
    assert command_name(["/opt/slurm/bin/sbatch", "--parsable"], known) == "sbatch"
    assert command_name(["squeue", "-h"], known) == "squeue"
    assert command_name(["/home/bob/evil-alice-4242"], known) == "other"
    assert command_name([], known) == "other"


def test_the_example_dashboard_asks_only_for_metrics_the_hub_exports() -> None:
    """docs/grafana/hpcspawner.json parses, and every query names hpcspawner's metrics."""
    dashboard = json.loads((Path(__file__).parents[1] / "docs" / "grafana" /
                            "hpcspawner.json").read_text())
    exported = {line.split()[2] for line in generate_latest(OURS).decode().splitlines()
                if line.startswith("# TYPE ")} | {"hpcspawner_servers"}
    asked = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\bhpcspawner_[a-z_]+", target["expr"]))
            assert names, target["expr"]
            asked |= {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}
    assert asked <= exported, asked - exported
    assert {"hpcspawner_spawns", "hpcspawner_fast_path"} <= {
        n.removesuffix("_total") for n in asked}


def test_one_servers_fault_never_fails_the_scrape() -> None:
    """A server whose state cannot be told is left out of hpcspawner_servers; the scrape
    still counts the others."""
    from hpcspawner import metrics

    class Broken:
        name = "bad"

    class Fine:
        name = "good"

    def state(spawner: object) -> tuple[str, str] | None:
        if isinstance(spawner, Broken):
            raise OverflowError("date value out of range")
        return ("small", "running") if isinstance(spawner, Fine) else None  # (others' tests)

    broken, fine = Broken(), Fine()
    metrics.follow(broken)
    metrics.follow(fine)
    try:
        families = list(metrics._Hpcspawner(state).collect())
    finally:
        metrics._SPAWNERS.discard(broken)
        metrics._SPAWNERS.discard(fine)
    [servers] = [f for f in families if f.name == "hpcspawner_servers"]
    assert [(s.labels, s.value) for s in servers.samples] == [
        ({"profile": "small", "state": "running"}, 1.0)]
