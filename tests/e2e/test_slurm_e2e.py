"""Real JupyterHub + configurable-http-proxy + real SLURM: the issue's must-show lines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hubtools import Hub, listener_user, scontrol_job, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


def test_medium_runs_as_alice_in_partition_jupyter_and_stop_removes_the_job(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    session = hub.login("alice")
    r = session.post(f"{hub.url}/hub/spawn", data={
        "profile": "medium", "_xsrf": session.cookies.get("_xsrf")}, allow_redirects=False)
    assert r.status_code == 302, r.text[:500]

    hub.wait_ready("alice")
    jobs = squeue(hub.hub_id)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert (job["user"], job["partition"], job["state"]) == ("alice", "jupyter", "RUNNING")
    details = scontrol_job(job["id"])
    assert details["NumCPUs"] == "2"
    assert details["MinMemoryNode"] == "20G"
    assert details["TimeLimit"] == "06:00:00"
    assert details["UserId"].startswith("alice(")

    status = hub.proxied("alice", "api/status")
    assert status.status_code == 200, status.text[:300]
    assert "started" in status.json()
    assert listener_user(hub.server_port("alice")) == "alice"

    assert hub.stop_server("alice").status_code in (202, 204)
    hub.wait_stopped("alice")
    wait_for("the job to leave the queue",
             lambda: not [j for j in squeue(hub.hub_id) if j["state"] != "CANCELLED"])


def test_rest_spawn_with_unknown_profile_is_a_400_naming_the_valid_ones_and_submits_nothing(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    r = hub.spawn("alice", {"profile": "nope"})
    assert r.status_code == 400, r.text
    message = r.json()["message"]
    assert "nope" in message
    for name in ("small", "medium", "large"):
        assert name in message
    assert squeue(hub.hub_id) == []
    assert hub.server_model("alice") is None  # no server, no job, no token file
    assert not list(Path("/home/alice/.hpcspawner").glob("*.token"))


def test_rest_spawn_with_unknown_option_is_a_400(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    r = hub.spawn("bob", {"profile": "small", "cores": 64})
    assert r.status_code == 400, r.text
    assert "cores" in r.json()["message"]
    assert squeue(hub.hub_id) == []


def test_hub_restart_keeps_the_running_server_and_its_job(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    assert hub.spawn("bob", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("bob")
    [job] = squeue(hub.hub_id)

    hub.stop()
    hub.start()

    model = hub.wait_ready("bob")
    assert model["state"]["job_id"] == job["id"]
    assert hub.proxied("bob").status_code == 200
    assert [j["id"] for j in squeue(hub.hub_id)] == [job["id"]]
    # the restarted hub can still stop the job it re-attached
    hub.stop_server("bob")
    hub.wait_stopped("bob")
    wait_for("the job to leave the queue",
             lambda: not [j for j in squeue(hub.hub_id) if j["state"] != "CANCELLED"])
