"""alice's routed job stops running where the hub routes to — held and requeued (SLURM), held
(HTCondor stand-in), or her launcher SIGKILLed — while bob, in a batch job on her node, tries
to bind her job's port in a tight loop (tests/e2e/bob_listener.py) and her browser keeps
requesting her URL with her cookies. None of her requests reaches bob's listener; her server
is reported stopped within the time docs/security.md states; no process of hers is left
outside a job (not the server, not what it started)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e.condor import STANDIN_BIN, Condor
from tests.e2e.nodes.cluster import HUB_NAME, REPO, hub_on_node_network, processes_of
from tests.e2e.test_htcondor_e2e import PROFILES as CONDOR_PROFILES
from tests.hubtools import Hub, scontrol_job, wait_for

pytestmark = [pytest.mark.nodes, pytest.mark.e2e]

LISTENER = Path(__file__).resolve().parents[1] / "bob_listener.py"
STANDIN_UP = REPO / "tests" / "htcondor_standin" / "standin-up"
# docs/security.md ("When a routed job stops running where it is routed"): the hub hears it
# from the launcher (or its keeper) at once, or of a silent launcher's suspended job at the
# poller's next query (slow_poll_interval = 5 s in tests, +10 % jitter): 10 s with a margin
STOPPED_WITHIN = 10.0
ON_NODE01_REQUEUE = """
profiles:
  - name: on-node01
    default: true
    backend: slurm
    partition: jupyter
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
    extra_options: ["--nodelist=node01", "--requeue"]
"""


def in_a_job(pid: int) -> bool:
    """Is ``pid`` below a job's step (slurmstepd) or the HTCondor stand-in's starter?"""
    while pid > 1:
        try:
            words = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if b"slurmstepd" in words or b"condor_standin" in words:
            return True
        pid = int(stat[stat.rfind(")") + 2:].split()[1])
    return False


def outside_jobs(user: str) -> list[str]:
    return [f"{pid} (parent {ppid}): {words[:120]}" for pid, (ppid, words)
            in processes_of(user).items() if not in_a_job(pid)]


def launcher_of(user: str, submission: str) -> int:
    """The launcher (not its keeper) of ``user``'s job of that submission."""
    mark = f"HPCSPAWNER_SUBMISSION={submission}".encode()
    found = []
    for pid, (_, words) in processes_of(user).items():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if "hpcspawner.launcher -- " in words and mark in environ:
            found.append(pid)
    [pid] = found
    return pid


def bob_events(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text().splitlines() if line]


class Browser(threading.Thread):
    """alice's open tab: requests her URL with her cookies again and again."""

    def __init__(self, session: requests.Session, url: str) -> None:
        super().__init__(daemon=True)
        self.session, self.url = session, url
        self.statuses: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                r = self.session.get(self.url, timeout=5, allow_redirects=False)
                self.statuses.append(r.status_code)
            except requests.RequestException:
                self.statuses.append(0)
            time.sleep(0.02)


def attack(hub: Hub, node: str, act: Callable[[], None]) -> str:
    """bob listens on alice's node; her tab requests her URL; ``act`` ends her job's run
    there. Returns what happened, for the test's output. (Processes of alice's outside any
    job from before, another test's, are left out of the count, and what this one leaves
    is killed at the end.)"""
    before = set(outside_jobs("alice"))
    target = urlparse(hub.routes()["/user/alice"]["target"])
    assert target.hostname == node and target.port is not None
    alice = hub.login("alice")
    page = f"{hub.url}/user/alice/api/status"
    assert alice.get(page, timeout=10).status_code == 200
    record = Path("/tmp") / f"bob-listener-{hub.hub_id}-{time.monotonic_ns()}.jsonl"
    record.write_text("")
    record.chmod(0o666)
    bob = subprocess.run(
        ["sudo", "-u", "bob", "sbatch", "--parsable", "--output=/dev/null", "-p", "batch",
         f"--nodelist={node}", f"--chdir={Path('~bob').expanduser()}",
         f"--wrap={sys.executable} {LISTENER} {target.port} {record} 90"],
        capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    browser = Browser(alice, page)
    try:
        wait_for("bob's listener", lambda: bob_events(record), timeout=30)
        assert scontrol_job(bob)["NodeList"] == node
        browser.start()
        time.sleep(1)
        assert [e for e in bob_events(record) if e["event"] == "bound"] == []
        began = time.monotonic()
        act()
        hub.wait_stopped("alice", timeout=STOPPED_WITHIN + 20)
        took = time.monotonic() - began
        assert took <= STOPPED_WITHIN, f"stopped only after {took:.1f} s"
        assert "/user/alice" not in hub.routes()
        wait_for("bob to bind the port alice's job left",
                 lambda: any(e["event"] == "bound" for e in bob_events(record)), timeout=40,
                 interval=0.05)
        time.sleep(1)  # her tab goes on after he holds it
        browser.done.set()
        browser.join(10)
        got = [e["head"] for e in bob_events(record) if e["event"] == "request"]
        assert got == [], f"alice's requests reached bob's listener: {got}"
        wait_for("no process of alice's outside a job",
                 lambda: not set(outside_jobs("alice")) - before, timeout=15)
        return (f"stopped after {took:.1f} s; {len(browser.statuses)} requests of hers "
                f"(statuses {sorted(set(browser.statuses))}), none reached bob, who bound "
                f"{sorted({e['address'] for e in bob_events(record) if e['event'] == 'bound'})}")
    finally:
        browser.done.set()
        subprocess.run(["scancel", bob], check=False)
        record.unlink(missing_ok=True)
        for left in set(outside_jobs("alice")) - before:  # what a failure here left behind
            subprocess.run(["kill", "-9", left.split()[0]], check=False)


@pytest.mark.slurm
@pytest.mark.parametrize("how", ["requeue-hold", "launcher-sigkill", "suspend"])
def test_slurm_routed_job_requeued_held_or_its_launcher_killed_never_routes_alice_to_bob(
        make_hub: Callable[..., Hub], network: dict[str, str], how: str) -> None:
    hub = hub_on_node_network(make_hub, network[HUB_NAME])
    hub.reconfigure(profiles=ON_NODE01_REQUEUE)
    hub.start()
    assert hub.spawn("alice").status_code in (201, 202)
    state = hub.wait_ready("alice")["state"]
    job_id = state["job_id"]

    def act() -> None:
        if how == "requeue-hold":
            subprocess.run(["scontrol", "requeuehold", job_id], check=True)
        elif how == "suspend":  # the launcher and its keeper stopped: silent, port held
            subprocess.run(["scontrol", "suspend", job_id], check=True)
        else:
            os.kill(launcher_of("alice", state["submission"]), signal.SIGKILL)

    print(f"\n{how}: {attack(hub, 'node01', act)}")


@pytest.fixture(scope="module")
def standin_on_nodes(network: dict[str, str]) -> Iterator[Condor]:
    subprocess.run([str(STANDIN_UP), "--node", "node01=hpc-node01", "--node",
                    "node02=hpc-node02"], check=True, capture_output=True)
    yield Condor("standin", str(STANDIN_BIN))
    subprocess.run([str(STANDIN_UP)], check=True, capture_output=True)


@pytest.mark.htcondor
@pytest.mark.parametrize("how", ["hold", "launcher-sigkill"])
def test_htcondor_routed_job_held_or_its_launcher_killed_never_routes_alice_to_bob(
        standin_on_nodes: Condor, make_hub: Callable[..., Hub], network: dict[str, str],
        how: str) -> None:
    condor = standin_on_nodes
    hub = hub_on_node_network(make_hub, network[HUB_NAME], CONDOR_PROFILES,
                              more_config=condor.hub_config()).start()
    assert hub.spawn("alice", {"profile": "condor-fast"}).status_code in (201, 202)
    state = hub.wait_ready("alice", timeout=90)["state"]
    job_id = state["job_id"]
    node = str(urlparse(hub.routes()["/user/alice"]["target"]).hostname)

    def act() -> None:
        if how == "hold":
            done = condor.run("condor_hold", job_id, user="alice")
            assert done.returncode == 0, done.stderr
        else:
            os.kill(launcher_of("alice", state["submission"]), signal.SIGKILL)

    print(f"\n{how} on {node}: {attack(hub, node, act)}")
