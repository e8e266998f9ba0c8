"""Shared fixtures. Tiers, chosen by marker (scripts/test): pure (none of the below),
``standin`` (the HTCondor stand-in), ``e2e`` (real hub + CHP; with ``slurm``, ``htcondor``,
``browser``) on the one-node cluster, ``nodes`` on the multi-node cluster. A plain ``pytest``
runs the tiers the running cluster serves and says which it left out."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import hpcspawner.backends  # noqa: F401  (it tells the profile schema which schedulers exist)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PROFILES = (REPO / "profiles.yaml").read_text()
FIGURES: list[str] = []


def figure(text: str) -> None:
    """A measured figure (a time, not a limit): printed in the run's summary, so CI shows it."""
    FIGURES.append(text)
    print(f"\n{text}")


NODES_FILE = Path("/run/hpcspawner-cluster/nodes")  # scripts/cluster-up --nodes N writes N
LEFT_OUT: list[str] = []


def multi_node() -> bool:
    """Is the running cluster the multi-node one (scripts/cluster-up --nodes N)?"""
    try:
        return int(NODES_FILE.read_text().strip() or 0) > 0
    except (OSError, ValueError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ``-m``: leave out the scheduler tests the running cluster cannot serve (the
    multi-node ones on the one-node cluster, the one-node ones on the multi-node cluster)."""
    if config.option.markexpr:
        return
    multi = multi_node()

    def served(item: pytest.Item) -> bool:
        if item.get_closest_marker("demo"):  # it changes the cluster: `pytest -m demo` only
            return False
        if item.get_closest_marker("nodes"):
            return multi
        return not (multi and item.get_closest_marker("e2e"))

    kept = [item for item in items if served(item)]
    if len(kept) < len(items):
        left = [item for item in items if not served(item)]
        config.hook.pytest_deselected(items=left)
        items[:] = kept
        LEFT_OUT.append(
            f"{len(left)} tests left out: they need the "
            + ("one-node cluster (`scripts/cluster-up`, then `pytest -m 'e2e and not nodes'`)"
               if multi else "multi-node cluster (`scripts/cluster-up --nodes 2`, then "
               "`pytest -m nodes`)")
            + "; `pytest -m demo` runs scripts/demo itself")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in LEFT_OUT:
        terminalreporter.write_line(line)
    if FIGURES:
        terminalreporter.section("figures measured by the tests (not limits)")
        for text in FIGURES:
            terminalreporter.write_line(text)


def _cluster_problem() -> str:
    if os.geteuid() != 0:
        return "e2e tests run as root (they submit jobs as alice and bob through sudo)"
    if not shutil.which("sbatch"):
        return "SLURM is not installed: run `sudo scripts/cluster-up`"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True,
                             timeout=15)
    except subprocess.TimeoutExpired:
        return "slurmctld does not answer: run `sudo scripts/cluster-up`"
    if out.returncode != 0 or "jupyter" not in out.stdout:
        return f"the local cluster is not up ({out.stderr.strip()}): run `sudo scripts/cluster-up`"
    return ""


@pytest.fixture(scope="session")
def cluster() -> None:
    """The local one-node SLURM cluster. In CI its absence is a failure, never a skip."""
    problem = _cluster_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """On a failed scheduler test, print what the scheduler saw (like dask-jobqueue's CI)."""
    if call.excinfo is None or call.when != "call" or not shutil.which("squeue"):
        return
    if not any(item.get_closest_marker(name) for name in ("slurm", "e2e")):
        return
    for argv in (["squeue", "-a", "--states=all", "-o", "%i %T %u %P %C %m %l %r %k"],
                 ["sinfo", "-N"]):
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        print(f"\n$ {' '.join(argv)}\n{out.stdout}{out.stderr}")
