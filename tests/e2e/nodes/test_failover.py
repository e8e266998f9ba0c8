"""The hub fails over to a second hub host: it stops on hpcspawner-hub, its service address
moves (as a site's floating IP does) to hpcspawner-hub2 — another network namespace and host
name — and a hub starts there with the same PostgreSQL database and hub_id. Every running
server is re-attached, none is cancelled, each is reachable."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.nodes.cluster import (
    HUB2,
    SERVICE_NAME,
    host_name_of,
    hub_on_node_network,
    sacct_state,
)
from tests.hubtools import (
    Hub,
    hub_account,
    node_network,
    scontrol_job,
    squeue,
    wait_for,
)

pytestmark = [pytest.mark.nodes, pytest.mark.e2e, pytest.mark.slurm]

BRIDGE = "hpcbr0"  # the node network's bridge on the hub host (scripts/lib/nodes.sh)


def move_service_address(address: str, to_hub2: bool) -> None:
    """Move the service address between the hub hosts, then make every other host forget
    where it was (what the gratuitous ARP of keepalived or pacemaker does at a site)."""
    here = ["ip", "-n", HUB2[0]] if not to_hub2 else ["ip"]
    there = ["ip", "-n", HUB2[0]] if to_hub2 else ["ip"]
    device = {True: "eth0", False: BRIDGE}
    subprocess.run([*here, "addr", "del", f"{address}/24", "dev", device[not to_hub2]],
                   capture_output=True, check=False)  # (absent after a failed earlier run)
    subprocess.run([*there, "addr", "add", f"{address}/24", "dev", device[to_hub2]],
                   check=True)
    for netns in Path("/run/netns").glob("hpc-*"):
        subprocess.run(["ip", "-n", netns.name, "neigh", "flush", "all"], check=True)
    subprocess.run(["ip", "neigh", "flush", "dev", BRIDGE], check=True)


@pytest.fixture
def service_address(network: dict[str, str]) -> Iterator[str]:
    """The hub's service address; back on the hub host after the test (requested before
    make_hub, so it moves back after the hubs are stopped)."""
    address = network[SERVICE_NAME]
    yield address
    move_service_address(address, to_hub2=False)


def test_the_hub_fails_over_to_a_second_host_and_every_server_stays(
        service_address: str, make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    first = hub_on_node_network(make_hub, service_address, address=service_address).start()
    users = ("alice", "bob", "carol")
    for user in users:
        assert first.spawn(user, {"profile": "small"}).status_code in (201, 202)
    jobs = {user: first.wait_ready(user, timeout=120)["state"]["job_id"] for user in users}
    nodes = {user: scontrol_job(job)["NodeList"] for user, job in jobs.items()}
    assert set(nodes.values()) <= {"node01", "node02"}, nodes
    assert first.proc is not None and host_name_of(first.proc.pid) != HUB2[1]

    # the hub host goes away: its hub and its proxy stop; the servers keep running as jobs
    first.stop()
    first.stop_proxy()
    move_service_address(service_address, to_hub2=True)

    second = make_hub(hub_id=first.hub_id, db_url=first.db_url, env=first.env,
                      address=service_address, host=HUB2,
                      extra_config=first.extra_config)
    secret = second.dir / "cookie_secret"  # the site's, on both hub hosts
    shutil.copy2(first.dir / "cookie_secret", secret)
    shutil.copystat(first.dir / "cookie_secret", secret)
    account = hub_account()
    os.chown(secret, account.pw_uid, account.pw_gid)
    second.start()
    assert second.proc is not None and host_name_of(second.proc.pid) == HUB2[1]
    assert node_network()[HUB2[1]] != service_address

    for user in users:  # re-attached: ready, the same job, routed to its node, answering
        model = second.wait_ready(user, timeout=60)
        assert model["state"]["job_id"] == jobs[user], (user, model["state"])
        wait_for(f"{user}'s route on the new proxy",
                 lambda u=user: f"/user/{u}" in second.routes(), timeout=30)
        assert nodes[user] in second.routes()[f"/user/{user}"]["target"]
        r = second.proxied(user)
        assert r.status_code == 200, (user, r.status_code, r.text[:300])
    running = {j["id"]: j["state"] for j in squeue(second.hub_id)}
    assert running == {job: "RUNNING" for job in jobs.values()}, running
    cancelled = [job for job in jobs.values() if sacct_state(job).startswith("CANCELLED")]
    assert cancelled == []
    # (the hub's words when it cancels a job: hpcspawner/job.py, hpcspawner/poller.py)
    said = [line for line in second.log().splitlines()
            if "cancelled job" in line or "cancelling" in line]
    assert said == [], said
    print(f"\nfail-over to {HUB2[1]} (PostgreSQL {first.db_url.rsplit('@', 1)[1]}): "
          f"{len(jobs)} servers re-attached on {sorted(set(nodes.values()))}, 0 cancelled")
