"""A site's own backend, defined outside hpcspawner: the package hpcspawner-sitebatch
(tests/fixtures/site_backend, installed into the venv by scripts/setup-machine), which
declares ``sitebatch`` as an entry point of hpcspawner.backends and speaks to SLURM with its
own commands and template. On the multi-node cluster, where the hub's account is a SLURM
operator (more time needs one), a real hub run as the unprivileged jupyterhub account offers
a profile ``backend: sitebatch``: alice's server starts and answers through the proxy, her
card follows the job, her extension moves SLURM's TimeLimit, and her stop cancels the job
through the real ``sudo -u alice hpcspawner-helper cancel sitebatch ...`` (issue 32: the
helper, which reads no hub configuration, refused a site's backend)."""

from __future__ import annotations

import importlib.metadata
import pwd
import subprocess
from collections.abc import Callable

import pytest

from tests.e2e.nodes.cluster import HUB_NAME, hub_on_node_network
from tests.hubtools import Hub, scontrol_job, squeue, wait_for

pytestmark = [pytest.mark.nodes, pytest.mark.e2e, pytest.mark.slurm]

PROFILES = """
profiles:
  - name: site
    display_name: "Site batch — 1 core, 1 GiB, 1 h"
    backend: sitebatch
    partition: jupyter
    default: true
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
    extend: {step: 1h, max_runtime: 3h}
"""


def accounting(job_id: str) -> str:
    """SLURM's accounting of the job's end (``CANCELLED by UID``; '' while it knows nothing)."""
    return subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State"],
                          capture_output=True, text=True, check=False).stdout.strip()


def test_a_site_backend_starts_polls_extends_and_cancels_through_the_real_helper(
        make_hub: Callable[..., Hub], network: dict[str, str]) -> None:
    try:
        importlib.metadata.distribution("hpcspawner-sitebatch")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("hpcspawner-sitebatch is not installed: run scripts/setup-machine")
    hub = hub_on_node_network(make_hub, network[HUB_NAME], PROFILES).start()
    spawned = hub.spawn("alice", {"profile": "site"})
    assert spawned.status_code in (201, 202), spawned.text[:300]
    hub.wait_ready("alice", timeout=120)

    # started by the site's backend: its own job script (template and log name)
    [job] = squeue(hub.hub_id)
    job_id = job["id"]
    details = scontrol_job(job_id)
    assert (job["user"], job["partition"], job["state"]) == ("alice", "jupyter", "RUNNING")
    assert details["TimeLimit"] == "01:00:00" and details["JobName"] == "jupyterhub"
    assert details["StdOut"].endswith(f"/.hpcspawner/logs/default-sitebatch-{job_id}.log")
    status = hub.proxied("alice", "api/status")
    assert status.status_code == 200, status.text[:300]

    # polled by its one query: the card has the job, its node and its end
    card = wait_for("the card to show the running job",
                    lambda: (c := hub.card("alice"))["state"] == "running" and c)
    assert (card["job_id"], card["node"]) == (job_id, details["NodeList"])
    assert card["can_extend"] and card["ends"]

    # more time, as the hub (a SLURM operator here): SLURM's TimeLimit moves, and so the card
    given = hub.extend(hub.user_token("alice"), {"user": "alice", "server": "", "by": "1h"})
    assert given.status_code == 200, given.text[:300]
    assert scontrol_job(job_id)["TimeLimit"] == "02:00:00"
    wait_for("the card's end to move by the hour",
             lambda: abs(hub.card("alice")["ends"] - card["ends"] - 3600) <= 61, timeout=30)

    # stop: the hub cancels as alice through the real helper, which finds sitebatch itself
    assert hub.stop_server("alice").status_code in (202, 204)
    hub.wait_stopped("alice")
    wait_for("the job to leave the queue",
             lambda: not [j for j in squeue(hub.hub_id) if j["state"] != "CANCELLED"])
    log = hub.log()
    assert f"cancelled job {job_id}" in log
    assert "hpcspawner-helper: refused" not in log and "was not cancelled" not in log
    alice = pwd.getpwnam("alice").pw_uid
    assert wait_for("accounting to record who cancelled the job",
                    lambda: accounting(job_id)) == f"CANCELLED by {alice}"
