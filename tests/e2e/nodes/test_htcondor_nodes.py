"""HTCondor on the hub host apart from its nodes: the schedd and both negotiators on the hub
host, a startd on node01 and one on node02. On the stand-in (``--node``: it starts each job
in its node's network and UTS namespaces) and on the real pool where this machine has one
(``scripts/condor-pool up --nodes 2``: a condor_master with a startd in each node's
namespace). A notebook on the fast path lands on a node and is routed by that node's
address."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest

from tests.e2e.condor import STANDIN_BIN, Condor, find_condor
from tests.e2e.nodes.cluster import (
    HUB_NAME,
    REPO,
    host_name_of,
    hub_on_node_network,
    server_process,
)
from tests.e2e.test_htcondor_e2e import PROFILES
from tests.hubtools import Hub, server_environ, wait_for

pytestmark = [pytest.mark.nodes, pytest.mark.e2e, pytest.mark.htcondor]

STANDIN_UP = REPO / "tests" / "htcondor_standin" / "standin-up"
CONDOR_POOL = REPO / "scripts" / "condor-pool"


@pytest.fixture(scope="module", params=["standin", "real"])
def condor_on_nodes(request: pytest.FixtureRequest, network: dict[str, str]) -> Iterator[Condor]:
    """HTCondor with a startd on each node; one node's pool again afterwards, as scripts/test
    started it."""
    if request.param == "real":
        found, why = find_condor("real")
        if found is None:
            pytest.skip(why)
        up = [str(CONDOR_POOL), "up"]
        done = subprocess.run([*up, "--nodes", "2"], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        yield found
        subprocess.run(up, check=True, capture_output=True)
        return
    subprocess.run([str(STANDIN_UP), "--node", "node01=hpc-node01", "--node",
                    "node02=hpc-node02"], check=True, capture_output=True)
    yield Condor("standin", str(STANDIN_BIN))
    subprocess.run([str(STANDIN_UP)], check=True, capture_output=True)


def test_a_fast_path_notebook_lands_on_a_node_and_is_routed_there(
        condor_on_nodes: Condor, make_hub: Callable[..., Hub],
        network: dict[str, str]) -> None:
    condor = condor_on_nodes
    names = condor.run("condor_status", "-af", "Name").stdout.split()
    assert {"slot2@node01", "slot2@node02", "slot1@node01", "slot1@node02"} <= set(names)
    hub = hub_on_node_network(make_hub, network[HUB_NAME], PROFILES,
                              more_config=condor.hub_config()).start()
    try:
        assert hub.spawn("alice", {"profile": "condor-fast"}).status_code in (201, 202)
        hub.wait_ready("alice", timeout=90)
        [job] = condor.jobs(hub.hub_id)
        slot, _, node = str(job["RemoteHost"]).partition("@")
        assert node in ("node01", "node02") and slot in ("slot2", "slot3"), job  # reserved
        target = urlparse(hub.routes()["/user/alice"]["target"])
        assert target.hostname == node, target  # the node's name: its address on the network
        submission = (hub.server_model("alice") or {})["state"]["submission"]
        assert host_name_of(server_process("alice", submission)) == node
        env = server_environ(target.port or 0, netns=f"hpc-{node}")
        assert urlparse(env["JUPYTERHUB_API_URL"]).hostname == network[HUB_NAME]
        r = hub.proxied("alice")
        assert r.status_code == 200, r.text[:300]
    finally:
        hub.stop_server("alice")
        hub.wait_stopped("alice")
    wait_for("the job to leave the queue", lambda: condor.jobs(hub.hub_id) == [], timeout=30)
