"""The hub host apart from its compute nodes (``scripts/cluster-up --nodes 2``): node01 and
node02 are network and UTS namespaces with their own names, addresses and slurmd; the hub
and the proxy reach a server only through its node's address (docs/local-cluster.md)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

from tests.e2e.nodes.cluster import (
    HUB_NAME,
    ON_NODE01,
    ON_NODE02,
    REPO,
    RUN_DIR,
    host_name_of,
    hub_on_node_network,
    sacct_state,
    server_process,
)
from tests.e2e.test_apps_e2e import login
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.hubtools import Hub, scontrol_job, server_environ, squeue, wait_for

pytestmark = [pytest.mark.nodes, pytest.mark.e2e, pytest.mark.slurm, pytest.mark.browser]

def test_alice_lands_on_a_compute_node_routed_by_its_address_and_jupyterlab_loads(
        make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    hub_address = network[HUB_NAME]
    hub = hub_on_node_network(make_hub, hub_address).start()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = login(browser, hub, "alice")
            page.wait_for_url("**/hub/spawn")
            page.locator("select#hpcspawner-profile").select_option("small")
            page.click("form button[type=submit]")
            page.wait_for_url("**/user/alice/lab**", timeout=120_000)
            expect(page.locator("#jp-main-dock-panel")).to_be_visible(timeout=60_000)
        finally:
            browser.close()

    [job] = squeue(hub.hub_id)
    node = scontrol_job(job["id"])["NodeList"]
    assert node in ("node01", "node02"), node  # never the hub host
    target = urlparse(hub.routes()["/user/alice"]["target"])
    assert target.hostname == node, target  # the route names the job's node ...
    assert socket.gethostbyname(node) == network[node]  # ... which is its address there
    assert network[node] != hub_address

    env = server_environ(target.port or 0, netns=f"hpc-{node}")
    assert urlparse(env["JUPYTERHUB_API_URL"]).hostname == hub_address  # hub_connect_ip
    submission = (hub.server_model("alice") or {})["state"]["submission"]
    # in its namespaces, named as it
    assert host_name_of(server_process("alice", submission)) == node
    status = hub.proxied("alice", "api/status")
    assert status.status_code == 200, status.text[:300]


LIAR_PROFILE = """
profiles:
  - name: liar
    default: true
    backend: slurm
    partition: jupyter
    resources: {{cores: 1, memory: 1GiB, runtime: 1h}}
    # the job's owner controls its environment: this launcher names another host
    extra_options: ["--nodelist=node01", "--export=ALL,HPCSPAWNER_REPORT_HOST={lie}"]
"""


@pytest.mark.parametrize("lie", ["node02", HUB_NAME, "localhost"])
def test_a_job_reporting_another_host_than_its_node_is_refused_and_never_routed(
        make_hub: Callable[..., Hub], network: dict[str, str], lie: str) -> None:
    hub = hub_on_node_network(make_hub, network[HUB_NAME])
    hub.reconfigure(profiles=LIAR_PROFILE.format(lie=lie))
    hub.start()
    hub.spawn("alice")  # 500 when the spawn has failed within JupyterHub's slow_spawn_timeout
    refusal = re.compile(rf"alice: report refused: job \d+ runs on node01, not on {lie}\n")
    wait_for("the refusal in the hub's log", lambda: refusal.search(hub.log()), timeout=90)
    assert "/user/alice" not in hub.routes()
    wait_for("the failed spawn to end", lambda: hub.server_model("alice") is None, timeout=90)
    assert "/user/alice" not in hub.routes()
    assert "routing to" not in hub.log()
    wait_for("the job to leave the queue", lambda: not squeue(hub.hub_id))


def node_state(node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%t"], capture_output=True,
                          text=True, check=False).stdout.split("\n")[0].strip()


def alices_servers() -> list[int]:
    try:
        return [server_process("alice")]
    except AssertionError:
        return []


def test_a_node_that_dies_under_a_server_is_told_in_words_and_nothing_comes_back(
        make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    hub = hub_on_node_network(make_hub, network[HUB_NAME])
    hub.reconfigure(profiles=ON_NODE02)
    hub.start()
    session = hub.login("alice")
    assert hub.spawn("alice").status_code in (201, 202)
    job_id = hub.wait_ready("alice")["state"]["job_id"]
    assert urlparse(hub.routes()["/user/alice"]["target"]).hostname == "node02"
    try:
        # node02 dies: its slurmd is gone, the admin (or slurmctld's timeout) marks it DOWN
        slurmd = int((RUN_DIR / "slurmd-node02.pid").read_text().strip())
        os.kill(slurmd, 9)
        subprocess.run(["scontrol", "update", "nodename=node02", "state=down",
                        "reason=test: the node died"], check=True)
        hub.wait_stopped("alice", timeout=60)
        assert "/user/alice" not in hub.routes()
        sentence = f"the node running the job failed (job {job_id})"
        page = wait_for("the reason on the spawn page",
                        lambda: (lambda p: p if sentence in p else None)(hub.spawn_page(session)),
                        timeout=30)
        assert "hpcspawner-last-end" in page
    finally:  # the node comes back (cluster-up starts its slurmd; the admin resumes it)
        subprocess.run([str(REPO / "scripts" / "cluster-up"), "--nodes", "2"],
                       capture_output=True, check=False)
        if node_state("node02").startswith("down"):
            subprocess.run(["scontrol", "update", "nodename=node02", "state=resume"],
                           check=False)
        wait_for("node02 back in service", lambda: node_state("node02") in ("idle", "mix"))
    # back: its old job's processes are ended by slurmd, nothing is routed or running again
    wait_for("the dead node's server processes to be ended", lambda: not alices_servers(),
             timeout=60)
    assert "/user/alice" not in hub.routes()
    assert hub.server_model("alice") is None
    assert not [j for j in squeue(hub.hub_id) if j["state"] not in ("NODE_FAIL", "CANCELLED")]


LISTENER = Path(__file__).resolve().parents[1] / "bob_listener.py"


def bob_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_bob_listening_beside_alices_server_on_her_node_or_after_it_exits_never_gets_her_cookie(
        make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    """bob's job runs on alice's node (not on the hub host) and tries all the time to listen
    on the port the hub routes her traffic to: on [::1], on [::] v6-only, on 127.0.0.1 and
    0.0.0.0 beside her listener, and the moment her server exits (File > Shut Down). He records
    every request he gets. None may carry her cookie; while her server runs he may not even
    bind the port."""
    hub = hub_on_node_network(make_hub, network[HUB_NAME])
    hub.reconfigure(profiles=ON_NODE01)
    hub.start()
    alice = hub.login("alice")
    assert hub.spawn("alice").status_code in (201, 202)
    hub.wait_ready("alice")
    target = urlparse(hub.routes()["/user/alice"]["target"])
    assert target.hostname == "node01" and target.port is not None
    port = target.port
    page = f"{hub.url}/user/alice/lab"  # a page: her browser's cookie is enough there
    r = alice.get(page, timeout=10)
    assert r.status_code == 200 and "JupyterLab" in r.text, r.text[:300]
    assert any(c.name.startswith("jupyterhub-user-alice") for c in alice.cookies)
    record = Path("/tmp") / f"bob-listener-{hub.hub_id}.jsonl"
    record.write_text("")
    record.chmod(0o666)
    bob = subprocess.run(
        ["sudo", "-u", "bob", "sbatch", "--parsable", "--output=/dev/null", "-p", "jupyter",
         "--nodelist=node01", f"--chdir={Path('~bob').expanduser()}",
         f"--wrap={sys.executable} {LISTENER} {port} {record} 60"],
        capture_output=True, text=True, check=True).stdout.strip().split(";")[0]
    try:
        wait_for("bob's listener", lambda: bob_events(record), timeout=30)
        assert scontrol_job(bob)["NodeList"] == "node01"  # alice's node, not the hub host
        for _ in range(30):  # while her server runs: every request is hers, answered by it
            r = alice.get(page, timeout=10)
            assert r.status_code == 200 and "JupyterLab" in r.text, r.text[:300]
            time.sleep(0.05)
        bound = [e for e in bob_events(record) if e["event"] == "bound"]
        assert bound == [], f"bob listened on alice's port {port} beside her server: {bound}"
        # her server exits by itself; she goes on using her open tab
        shutdown = requests.post(f"{hub.url}/user/alice/api/shutdown", timeout=10,
                                 headers={"Authorization": f"token {hub.token}"})
        assert shutdown.status_code in (200, 202, 204), shutdown.text[:300]
        seen: list[int] = []

        def bob_took_the_port() -> bool:
            r = alice.get(page, timeout=10, allow_redirects=False)
            seen.append(r.status_code)
            return any(e["event"] == "bound" for e in bob_events(record))

        wait_for("bob to bind the port alice's server left", bob_took_the_port, timeout=40,
                 interval=0.02)
        assert "/user/alice" not in hub.routes()
        for _ in range(20):  # and after he holds it
            alice.get(page, timeout=10, allow_redirects=False)
        events = bob_events(record)
        got = [e["head"] for e in events if e["event"] == "request"]
        assert not [h for h in got if "jupyterhub-user-alice" in h or "alice" in h], got
        print(f"\nbob bound {[e['address'] for e in events if e['event'] == 'bound']} on "
              f"node01 after alice's server exited; {len(seen)} requests of hers meanwhile, "
              f"none reached him (statuses {sorted(set(seen))})")
        assert "exited; taking its route down" in hub.log()
    finally:
        subprocess.run(["scancel", bob], check=False)
        record.unlink(missing_ok=True)


def listed(job_id: str) -> bool:
    """Does slurmctld still list the job (in any state)?"""
    return bool(subprocess.run(["squeue", "-h", "-j", job_id, "--states=all", "-o", "%i"],
                               capture_output=True, text=True, check=False).stdout.strip())


def test_scancel_behind_the_hubs_back_ends_the_server_and_the_log_names_the_source(
        make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    hub = hub_on_node_network(make_hub, network[HUB_NAME])
    hub.reconfigure(profiles=ON_NODE01)
    hub.start()
    assert hub.spawn("alice").status_code in (201, 202)
    job_id = hub.wait_ready("alice")["state"]["job_id"]
    subprocess.run(["scancel", job_id], check=True)
    hub.wait_stopped("alice", timeout=30)
    assert "/user/alice" not in hub.routes()
    line = wait_for("the end in the hub's log", lambda: re.search(
        rf"job {job_id} ended: the job was cancelled \(confirmed by (.*)\)", hub.log()))
    assert line.group(1) in ("squeue, which lists it as ended", "sacct (accounting)"), line[0]
    assert wait_for("accounting to record the cancel",
                    lambda: sacct_state(job_id).startswith("CANCELLED") or None)


def test_a_job_ended_and_purged_while_the_hub_was_down_is_confirmed_by_sacct(
        make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    """slurmctld forgets an ended job after MinJobAge (10 s on this cluster); a hub that was
    down meanwhile learns why it ended from accounting, and says so."""
    hub = hub_on_node_network(make_hub, network[HUB_NAME])
    hub.reconfigure(profiles=ON_NODE01)
    hub.start()
    assert hub.spawn("alice").status_code in (201, 202)
    job_id = hub.wait_ready("alice")["state"]["job_id"]
    hub.stop()  # the servers keep running (cleanup_servers = False)
    subprocess.run(["scancel", job_id], check=True)
    wait_for("slurmctld to purge the ended job", lambda: not listed(job_id), timeout=60,
             interval=1)
    assert sacct_state(job_id).startswith("CANCELLED")
    hub.start()
    wait_for("the hub to learn the end from sacct", lambda: re.search(
        rf"job {job_id} ended: the job was cancelled \(confirmed by sacct \(accounting\)\)",
        hub.log()), timeout=60)
    wait_for("alice's server to be stopped", lambda: hub.server_model("alice") is None,
             timeout=60)
    assert "/user/alice" not in hub.routes()
    # PrivateData=jobs on this cluster: the hub, a SLURM operator, knows it sees every job
    assert "SLURM has PrivateData=jobs" not in hub.log()
