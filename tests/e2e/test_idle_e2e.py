"""Idle culling per profile, on the real hub and SLURM, from the servers' own activity: a
server idle past its profile's idle_timeout is stopped and its job leaves the queue; a server
in use is not; anonymous requests through the proxy (anyone can send them) keep nothing
alive."""

from __future__ import annotations

import html
import time
from collections.abc import Callable

import pytest
import requests

from tests.hubtools import Hub, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

IDLE_PROFILES = """
defaults: {backend: slurm, partition: jupyter}
profiles:
  - name: small
    display_name: "Small — 1 core, 1 GiB, 1 h"
    default: true
    idle_timeout: 20s
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
"""
# activity reaches the hub every 2-3 s (the proxy's and the servers' own reports)
FAST_ACTIVITY = """
c.JupyterHub.last_activity_interval = 2
c.HPCSpawner.poll_interval = 3
c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": "3"}
"""


def test_an_idle_server_is_stopped_at_its_profiles_timeout_and_a_used_one_is_not(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(IDLE_PROFILES, extra_config=FAST_ACTIVITY).start()
    users = ("alice", "bob", "carol")
    for user in users:
        assert hub.spawn(user, {"profile": "small"}).status_code in (201, 202)
    jobs = {user: hub.wait_ready(user)["state"]["job_id"] for user in users}
    started = time.monotonic()

    def alice_and_carol_stopped_while_bob_works() -> bool:
        assert hub.proxied("bob", "api/contents").status_code == 200  # bob is working
        # carol's server only gets requests nobody logged in sent (bob's, a scanner's)
        requests.get(f"{hub.url}/user/carol/api/contents", timeout=10, allow_redirects=False)
        return hub.server_model("alice") is None and hub.server_model("carol") is None

    wait_for("alice's and carol's idle servers to be stopped",
             alice_and_carol_stopped_while_bob_works, timeout=90, interval=1)
    assert time.monotonic() - started >= 15  # not before her idle time (20 s from her start)
    wait_for("alice's job to leave the queue",
             lambda: jobs["alice"] not in {j["id"] for j in squeue(hub.hub_id)}, timeout=30)
    bob = hub.server_model("bob")
    assert bob is not None and bob["ready"] and bob["state"]["job_id"] == jobs["bob"]
    assert jobs["bob"] in {j["id"] for j in squeue(hub.hub_id)}
    assert "idle for" in hub.log()
    page = html.unescape(hub.spawn_page(hub.login("alice")))
    assert "stops idle servers after 20 s" in page  # she reads why on her next visit
