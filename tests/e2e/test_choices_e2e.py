"""User choices inside a profile's bounds and the user's caps, on the real hub and SLURM:
the REST body, a spawn URL and a forged form are checked alike; the job gets what was chosen
and the server sees its limits (MEM_LIMIT, CPU_LIMIT)."""

from __future__ import annotations

import html
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hpcspawner.sentences import clock
from tests.hubtools import Hub, scontrol_job, server_environ, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

# The local cluster's node has two fake GPUs of type a100 (scripts/cluster-up: gres.conf):
# tested are who sees the profile, the memory choice inside the caps (CC-IN2P3's scheme) and
# the GPU model choice.
CHOICE_PROFILES = """
defaults: {backend: slurm, partition: jupyter}
caps:
  default: {memory: 32GiB}
  groups: {gpu-heavy: {memory: 64GiB}}
profiles:
  - name: small
    default: true
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
  - name: gpu
    display_name: "GPU — 1 core, 28 GiB, 1 day"
    groups: [gpu]
    resources: {cores: 1, memory: 28GiB, gpus: 1, runtime: 1d}
    choices:
      memory: {min: 16GiB, max: 64GiB}
      gpu_model: {choices: [a100, h100]}
"""
GROUPS = 'c.JupyterHub.load_groups = {"gpu": {"users": ["alice", "carol"]}}\n'


def test_bob_outside_the_group_cannot_reach_the_profile_by_any_door(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(CHOICE_PROFILES, extra_config=GROUPS).start()
    r = hub.spawn("bob", {"profile": "gpu"})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == ("The profile 'gpu' is not available to you; choose one of: "
                                   "small.")
    session = hub.login("bob")
    assert "gpu" not in html.unescape(hub.spawn_page(session)).split("<select", 1)[1].split(
        "</select>", 1)[0]
    by_url = session.get(f"{hub.url}/hub/spawn?profile=gpu", timeout=30)
    assert by_url.status_code == 403
    assert "is not available to you" in html.unescape(by_url.content.decode())
    forged = session.post(f"{hub.url}/hub/spawn", timeout=30, data={
        "profile": "gpu", "_xsrf": session.cookies.get("_xsrf")})
    assert "is not available to you" in html.unescape(forged.content.decode())
    assert squeue(hub.hub_id) == []
    assert hub.server_model("bob") is None


def test_alice_gets_the_memory_she_chose_inside_her_cap_and_the_server_sees_the_limit(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(CHOICE_PROFILES, extra_config=GROUPS).start()
    r = hub.spawn("alice", {"profile": "gpu", "memory": "64GiB"})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == ("Memory 64 GiB is outside what you may ask for 'gpu': "
                                   "16 GiB to 32 GiB.")
    session = hub.login("alice")
    by_url = session.get(f"{hub.url}/hub/spawn?profile=gpu&memory=64GiB", timeout=30)
    assert by_url.status_code == 400
    assert "16 GiB to 32 GiB" in html.unescape(by_url.content.decode())
    assert squeue(hub.hub_id) == []

    r = hub.spawn("alice", {"profile": "gpu", "gpu_model": "h200"})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == ("GPU model 'h200' is not offered for 'gpu'; choose one of: "
                                   "any, a100, h100.")
    assert squeue(hub.hub_id) == []

    by_url = session.get(f"{hub.url}/hub/spawn?profile=gpu&memory=16GiB&gpu_model=a100",
                         timeout=60)
    assert by_url.status_code == 200
    model = hub.wait_ready("alice")
    [job] = squeue(hub.hub_id)
    assert job["mem"] == "16G", job
    scontrol = scontrol_job(job["id"])
    assert scontrol["MinMemoryNode"] == "16G"
    assert scontrol["TresPerJob"] == "gres:gpu:a100:1"  # the model she chose, as a gres type
    assert model["user_options"] == {"profile": "gpu", "memory": "16GiB", "gpu_model": "a100"}
    env = server_environ(hub.server_port("alice"))
    assert (env["MEM_LIMIT"], env["CPU_LIMIT"]) == (str(16 * 1024**3), "1")
    metrics = hub.proxied("alice", "api/metrics/v1")
    assert metrics.status_code == 200, metrics.text
    assert metrics.json()["limits"]["memory"]["rss"] == 16 * 1024**3  # jupyter-resource-usage

    hub.stop_server("alice")
    hub.wait_stopped("alice")
    page = html.unescape(hub.spawn_page(session))  # her last choice is preselected
    assert re.search(r'<option value="gpu"[^>]*selected', page), page
    assert 'name="gpu.memory" id="hpcspawner-gpu-memory" value="16GiB"' in page
    assert re.search(r'<option value="a100" selected>a100</option>', page), page


WIDE = CHOICE_PROFILES + """
  - name: wide
    display_name: "Wide — 16 cores, 8 GiB, 1 h"
    resources: {cores: 16, memory: 8GiB, runtime: 1h}
"""


def sinfo_calls() -> int:
    """sinfo runs as one REQUEST_PARTITION_INFO in slurmctld (sdiag counts them)."""
    out = subprocess.run(["sdiag"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if "REQUEST_PARTITION_INFO " in x)
    return int(re.search(r"count:(\d+)", line).group(1))  # type: ignore[union-attr]


def free_cores_in_jupyter() -> tuple[int, int]:
    out = subprocess.run(["sinfo", "-h", "-N", "-p", "jupyter", "-t", "idle,mix,alloc", "-O",
                          "CPUsState"], capture_output=True, text=True, check=True).stdout
    idle = total = 0
    for line in out.split():
        _a, i, _o, t = (int(x) for x in line.split("/"))
        idle, total = idle + i, total + t
    return idle, total


def outlook_of(page: str, profile: str) -> str:
    part = page.split(f'data-profile="{profile}"', 1)[1]
    return html.unescape(part.split('class="hpcspawner-outlook', 1)[1].split(">", 1)[1]
                         .split("</span>", 1)[0]).strip()


def test_the_page_says_what_can_start_now_as_sinfo_does_from_one_query_per_interval(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(WIDE, extra_config="c.HPCSpawner.availability_interval = 3\n").start()
    session = hub.login("bob")
    idle, total = free_cores_in_jupyter()
    page = hub.spawn_page(session)
    assert outlook_of(page, "small") == (f"Can start now: {idle} cores of {total} free in "
                                         "partition jupyter.")
    assert outlook_of(page, "wide").startswith("Can start now")

    before = sinfo_calls()
    started = time.monotonic()
    for _ in range(50):
        hub.spawn_page(session)
    elapsed = time.monotonic() - started
    calls = sinfo_calls() - before
    assert calls <= int(elapsed // 3) + 1, (calls, elapsed)  # one per 3 s interval at most

    # carol takes 8 cores outside the hub for at most 30 min: the page follows within the
    # interval, and says when SLURM expects the wide profile could start (her job's end)
    out = subprocess.run(["sudo", "-u", "carol", "sbatch", "--parsable", "-p", "jupyter",
                          "--cpus-per-task=8", "--mem=1G", "--time=30", "--output=/dev/null",
                          "--wrap", "sleep 300"], capture_output=True, text=True, check=True)
    job = out.stdout.strip()
    try:
        wait_for("carol's job to run", lambda: subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True,
            check=False).stdout.strip() == "RUNNING", timeout=30)
        idle_now, _ = free_cores_in_jupyter()
        assert idle_now == idle - 8
        wide = wait_for("the page to show fewer free cores", lambda: (
            lambda text: text if text.startswith("Cannot start now") else None)(
            outlook_of(hub.spawn_page(session), "wide")), timeout=15, interval=0.5)
        assert wide.startswith("Cannot start now: no node of partition jupyter has 16 cores")
        carol_ends = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True,
                                    text=True, check=True).stdout.strip()
        ends = time.mktime(time.strptime(carol_ends, "%Y-%m-%dT%H:%M:%S"))
        expected = f"The scheduler expects it could start around {clock(ends)} (in "
        assert wide.split(". ", 1)[1] in (expected + "29 min).", expected + "30 min)."), wide
        assert outlook_of(hub.spawn_page(session), "small") == (
            f"Can start now: {idle_now} cores of {total} free in partition jupyter.")
    finally:
        subprocess.run(["scancel", job], check=False)


def test_the_server_knows_when_its_time_limit_ends_and_the_home_page_warns_before(
        make_hub: Callable[..., Hub]) -> None:
    """A 10-minute job and a warning 1 h ahead: the server's environment has the end time
    SLURM gives the job, the home page shows it and warns (without JavaScript), and the job's
    log has the warning."""
    short = CHOICE_PROFILES.replace("runtime: 1h}", "runtime: 10m}", 1)
    hub = make_hub(short, extra_config=GROUPS + (
        "import hpcspawner\nc.JupyterHub.template_paths = [hpcspawner.hub_templates()]\n"
        "c.HPCSpawner.walltime_warning = 3600\n")).start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("alice")
    [job] = squeue(hub.hub_id)
    slurm_end = subprocess.run(["squeue", "-h", "-j", job["id"], "-o", "%e"],
                               capture_output=True, text=True, check=True).stdout.strip()
    slurm_epoch = time.mktime(time.strptime(slurm_end, "%Y-%m-%dT%H:%M:%S"))
    env = server_environ(hub.server_port("alice"))
    ends = int(env["HPCSPAWNER_END_TIME"])
    assert abs(ends - slurm_epoch) <= 3, (ends, slurm_end)

    home = html.unescape(hub.login("alice").get(f"{hub.url}/hub/home", timeout=30)
                         .content.decode("utf-8"))
    warning = home.split('class="alert alert-warning hpcspawner-walltime-warning"', 1)[1]
    warning = warning.split(">", 1)[1].split("</div>", 1)[0].strip()
    assert warning == (f"Your server (Small — 1 core, 2 GiB, 10 min) stops at {clock(ends)}, "
                       "in 9 min, when its job's time limit ends. Save your work; start it "
                       "again for more time."), warning
    assert f'data-end-note="Runs until {clock(ends)} (9 min left)."' in home

    log = Path(f"/home/alice/.hpcspawner/logs/default-{job['id']}.log")
    line = wait_for("the warning in the job's log", lambda: next(
        (x for x in log.read_text().splitlines() if "WARNING" in x), None), timeout=20)
    assert "this server stops at" in line and "Save your work" in line
