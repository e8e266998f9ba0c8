"""Dask from the notebook on real SLURM (hpcspawner.dask, docs/dask.md): alice's notebook
makes a cluster from her server's profile, the workers are her batch jobs of that profile,
the cap holds, the dashboard is hers alone, and her workers end with her server, or as
orphans once the hub no longer knows the server. The hub's poll stays one query."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.conftest import figure
from tests.e2e.kernel import Kernel, KernelError
from tests.e2e.test_apps_e2e import login
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.hubtools import Hub, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

PROFILES = """
profiles:
  - name: small
    display_name: "Small — 1 core, 12 GiB, 12 h"
    partition: jupyter
    default: true
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
  - name: many
    partition: bench  # (oversubscribed, as its workers: SLURM keeps the two kinds apart)
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
    dask: {worker_profile: tiny, max_workers: 20}
  - name: tiny
    partition: bench
    users: [nobody]
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
  - name: atstart
    display_name: "Analysis with Dask"
    partition: bench
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
    dask: {worker_profile: tiny, max_workers: 3, offer_at_start: true}
"""

MAKE = """
import json, os
from hpcspawner.dask import cluster
c = cluster(workers={n})
client = c.get_client()
client.wait_for_workers({n}, timeout=240)
"""
WHERE = """
import json, os
jobs = sorted(set(client.run(lambda: __import__("os").environ.get("SLURM_JOB_ID")).values()))
print(json.dumps({"worker_jobs": jobs, "notebook_job": os.environ.get("SLURM_JOB_ID")}))
"""
DASHBOARDS = """
import json
info = client.scheduler_info()
print(json.dumps({"scheduler": c.scheduler.http_server.port, "workers": [
    w["services"]["dashboard"] for w in info["workers"].values()]}))
"""
ASK = ("import socket, sys\n"
       "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
       "try:\n"
       "    s.sendall(b'GET ' + sys.argv[2].encode() + b' HTTP/1.0\\r\\n\\r\\n')\n"
       "    said = s.recv(100)\n"
       "except OSError:\n"
       "    said = b''\n"
       "print(said.decode(errors='replace').split('\\r\\n')[0] or 'closed')\n")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "dask.ipynb"


def ask_as(user: str, port: int, path: str) -> str:
    """The status line an HTTP request as ``user`` to 127.0.0.1:``port`` gets ("closed")."""
    return subprocess.run([sys.executable, "-c", ASK, str(port), path], user=user, check=True,
                          capture_output=True, text=True, timeout=30, cwd="/").stdout.strip()


def example_cells() -> list[str]:
    """The code cells of the example notebook the demo gives its users (docs/dask.md)."""
    cells = json.loads(EXAMPLE.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def workers_of(hub: Hub) -> list[dict[str, str]]:
    return [job for job in squeue(hub.hub_id) if job["comment"].endswith("/dask")]


def test_alices_notebook_runs_a_cluster_of_her_profile_inside_her_cap_and_it_ends_with_her_server(
        make_hub: Callable[..., Hub]) -> None:
    from playwright.sync_api import sync_playwright

    hub = make_hub(PROFILES).start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("alice")
    kernel = Kernel(hub, "alice")
    started = time.monotonic()
    shown = "".join(kernel.run(code) for code in example_cells())  # the example, as-is
    figure(f"dask (SLURM): the example notebook, cluster(workers=2) to the sum: "
           f"{time.monotonic() - started:.1f} s")
    assert "sum: 1000000" in shown, shown
    said = json.loads(kernel.run(WHERE))
    workers = workers_of(hub)
    assert len(workers) == 2, squeue(hub.hub_id)
    for job in workers:  # the small profile's own request, as alice
        assert (job["user"], job["cpus"], job["mem"], job["partition"]) == (
            "alice", "1", "12G", "jupyter"), job
        assert job["comment"] == f"hpcspawner:{hub.hub_id}:alice:/dask"
    assert said["worker_jobs"] == sorted(job["id"] for job in workers)  # ran there ...
    assert said["notebook_job"] not in said["worker_jobs"]  # ... not in the notebook's job

    with pytest.raises(KernelError) as refused:
        kernel.run("cluster(workers=5)")
    assert "allows at most 4 Dask workers at once; you asked for 5: ask for 0 to 4" in str(
        refused.value)
    with pytest.raises(KernelError, match="at most 4 Dask workers"):
        kernel.run("c.adapt(minimum=1, maximum=9)")
    assert len(workers_of(hub)) == 2  # nothing more was submitted

    link = shown.split("dashboard: ", 1)[1].split()[0]
    assert link.startswith("/user/alice/proxy/") and link.endswith("/status"), link
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = login(browser, hub, "alice")
            response = page.goto(f"{hub.url}{link}")
            assert response is not None and response.status == 200, response
            page.wait_for_function("document.title.includes('Dask')", timeout=60_000)
            # the plots draw over the dashboard's websocket, proxied the same way
            page.locator("canvas").first.wait_for(state="visible", timeout=60_000)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dask-dashboard.png"))
            bob = login(browser, hub, "bob")
            response = bob.goto(f"{hub.url}{link}")
            assert response is not None and response.status == 403, (response, bob.url)
        finally:
            browser.close()

    # no dashboard listens where another user of the node can reach it: each listener of the
    # scheduler's and the workers' HTTP servers is on the loopback only, the scheduler's
    # closes on bob, a worker's serves bob nothing (one node here: all on this host)
    ports = json.loads(kernel.run(DASHBOARDS))
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True,
                               check=True).stdout.split("\n")
    for port in [ports["scheduler"], *ports["workers"]]:
        at = [line.split()[3] for line in listening if line.split()[3:4]
              and line.split()[3].rsplit(":", 1)[1] == str(port)]
        assert at and all(a == f"127.0.0.1:{port}" for a in at), (port, at)
    assert ask_as("bob", ports["scheduler"], "/status") == "closed"
    assert ask_as("alice", ports["scheduler"], "/status").startswith("HTTP/1.1 ")
    for port in ports["workers"]:
        assert ask_as("bob", port, "/status").startswith("HTTP/1.1 404"), port
        assert ask_as("bob", port, "/metrics").startswith("HTTP/1.1 404"), port

    hub.stop_server("alice")
    # stop() cancels them itself: gone well within one slow poll (5 s here)
    wait_for("alice's workers to leave the queue", lambda: workers_of(hub) == [], timeout=10)
    hub.wait_stopped("alice")


def test_workers_of_a_server_the_hub_forgot_are_cancelled_as_orphans(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(PROFILES).start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("alice")
    Kernel(hub, "alice").run(MAKE.format(n=2))
    assert len(workers_of(hub)) == 2
    hub.kill9()
    with sqlite3.connect(Path(hub.db_url.removeprefix("sqlite:///"))) as db:
        db.execute("DELETE FROM spawners WHERE user_id = "
                   "(SELECT id FROM users WHERE name = 'alice')")
    hub.start()
    wait_for("the orphaned workers (and server job) to be cancelled",
             lambda: squeue(hub.hub_id) == [], timeout=60)
    assert "has our tag but no server owns it; cancelling it" in hub.log()


def test_twenty_workers_cost_no_query_of_their_own(make_hub: Callable[..., Hub]) -> None:
    """With 20 worker jobs running the hub still asks SLURM once per poll interval: every
    squeue goes through a counting shim, as in benchmarks/poll_load.py."""
    hub = make_hub(PROFILES)
    count, shim = hub.dir / "squeue.count", hub.dir / "squeue"
    shim.write_text(f'#!/bin/sh\necho x >> {count}\nexec /usr/bin/squeue "$@"\n')
    shim.chmod(0o755)
    hub.reconfigure(extra_config=f"c.SlurmBackend.squeue = {str(shim)!r}\n")
    hub.start()
    assert hub.spawn("alice", {"profile": "many"}).status_code in (201, 202)
    hub.wait_ready("alice")
    kernel = Kernel(hub, "alice")
    started = time.monotonic()
    kernel.run(MAKE.format(n=20), timeout=400)
    figure(f"dask (SLURM): cluster(workers=20) → 20 workers connected: "
           f"{time.monotonic() - started:.1f} s")
    assert len([j for j in workers_of(hub) if j["state"] == "RUNNING"]) == 20
    before = count.read_text().count("x")
    window = 3 * 5.0  # three slow poll intervals
    time.sleep(window)  # the measured window itself, not a synchronisation
    asked = count.read_text().count("x") - before
    assert asked <= 3 + 1, f"{asked} squeue calls in {window:.0f} s with 20 workers"
    hub.stop_server("alice")
    wait_for("the 20 workers to leave the queue", lambda: workers_of(hub) == [], timeout=30)


def test_a_cluster_started_with_the_server_is_in_jupyterlabs_dask_sidebar(
        make_hub: Callable[..., Hub]) -> None:
    """CSCS's "start Dask automatically? how many workers?": the form's Dask workers start
    with the server (dask-labextension's initial cluster, made by hpcspawner.dask.cluster);
    the sidebar lists it, a plain Client(address) of the sidebar's kind reaches it over TLS,
    the sidebar's "new cluster" and scaling keep to the cap, and the home page says so."""
    hub = make_hub(PROFILES, extra_config="import hpcspawner\n"
                   "c.JupyterHub.template_paths = [hpcspawner.hub_templates()]\n").start()
    assert hub.spawn("alice", {"profile": "atstart", "dask_workers": "2"}).status_code in (
        201, 202)
    hub.wait_ready("alice")
    wait_for("the 2 workers started with the server",
             lambda: len([j for j in workers_of(hub) if j["state"] == "RUNNING"]) == 2,
             timeout=120)
    sidebar = f"{hub.url}/user/alice/dask/clusters"
    auth = {"Authorization": f"token {hub.token}"}

    def listed() -> list[dict[str, object]]:
        clusters = requests.get(sidebar, headers=auth, timeout=30).json()
        return clusters if clusters and clusters[0]["workers"] == 2 else []

    [model] = wait_for("the sidebar to list the cluster with its workers", listed,
                       timeout=120)
    assert str(model["name"]).startswith("Dask, 2 workers")
    assert str(model["dashboard_link"]).startswith("/user/alice/proxy/")
    address = str(model["scheduler_address"])
    assert address.startswith("tls://"), address
    said = Kernel(hub, "alice").run(
        f"from distributed import Client\nclient = Client({address!r})\n"
        "import dask.array as da\n"
        "print(int(da.ones((1000, 1000), chunks=(100, 100)).sum().compute()))")
    assert said.split() == ["1000000"]
    too_many = requests.patch(f"{sidebar}/{model['id']}", headers=auth,
                              data=json.dumps({"workers": 4}), timeout=30)
    assert too_many.status_code == 500 and "at most 3 Dask workers" in too_many.text
    made = requests.put(sidebar, headers=auth, timeout=120)  # the sidebar's "+ NEW"
    assert made.status_code == 200, made.text[:300]
    assert str(made.json()["scheduler_address"]).startswith("tls://")
    session = hub.login("alice")
    home = session.get(f"{hub.url}/hub/home", timeout=10).content.decode()
    assert "Analysis with Dask + Dask cluster, 2 workers" in home
    hub.stop_server("alice")
    wait_for("the workers to leave the queue", lambda: workers_of(hub) == [], timeout=10)
