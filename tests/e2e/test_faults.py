"""Fault injection on the real local SLURM: outages, jobs killed behind the hub's back,
jobs that cannot run, a hub killed mid-spawn, restarts. Nothing may be lost or orphaned."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_PROFILES, REPO
from tests.hubtools import Hub, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

FAULT_PROFILES = EXAMPLE_PROFILES + """
  - name: huge
    display_name: "Huge — 64 cores"
    pending_timeout: 15s
    resources: {cores: 64, memory: 12GiB, runtime: 1h}

  - name: later
    display_name: "Later — starts 20 s after submission"
    extra_options: ["--begin=now+20"]
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
"""
USERS = ("alice", "bob", "carol")


def start_three(hub: Hub) -> dict[str, str]:
    for user in USERS:
        assert hub.spawn(user, {"profile": "small"}).status_code in (201, 202)
    jobs = {}
    for user in USERS:
        jobs[user] = hub.wait_ready(user)["state"]["job_id"]
    return jobs


def live_jobs(hub: Hub) -> list[dict[str, str]]:
    return [j for j in squeue(hub.hub_id) if j["state"] in ("PENDING", "RUNNING", "CONFIGURING")]


def test_slurmctld_down_for_60_s_loses_no_server_and_is_logged_once(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(FAULT_PROFILES).start()
    jobs = start_three(hub)
    subprocess.run([str(REPO / "scripts/cluster-down"), "slurmctld"], check=True)
    try:
        outage_end = time.monotonic() + 60
        while time.monotonic() < outage_end:  # the outage lasts 60 s; servers must stay up
            for user in USERS:
                assert hub.server_model(user) is not None, f"{user}'s server was dropped"
            time.sleep(2)
    finally:
        subprocess.run([str(REPO / "scripts/cluster-up")], check=True, capture_output=True)
    for user in USERS:
        model = hub.wait_ready(user)
        assert model["state"]["job_id"] == jobs[user]
        assert hub.proxied(user).status_code == 200
    assert sorted(j["id"] for j in live_jobs(hub)) == sorted(jobs.values())
    log = hub.log()
    assert log.count("slurm is not answering") == 1, log[-3000:]
    wait_for("the hub to log the recovery", lambda: "slurm answers again" in hub.log(),
             timeout=30)


def test_job_cancelled_behind_the_hubs_back_is_noticed_within_one_poll_and_explained(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(FAULT_PROFILES).start()
    session = hub.login("alice")
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    job_id = hub.wait_ready("alice")["state"]["job_id"]

    subprocess.run(["scancel", job_id], check=True)
    cancelled = time.monotonic()
    hub.wait_stopped("alice", timeout=30)
    noticed = time.monotonic() - cancelled
    slow_interval = 5 * 1.1  # c.HPCSpawner.slow_poll_interval = 5 in tests, 10 % jitter
    print(f"\nserver noticed as stopped {noticed:.1f} s after scancel")
    assert noticed <= slow_interval + 2

    # the launcher told the hub its server exited (the route went at once); the scheduler's
    # reason replaces that sentence as soon as it has one
    def explained() -> str | None:
        page = hub.spawn_page(session)
        return page if f"the job was cancelled (job {job_id})" in page else None

    assert "hpcspawner-last-end" in wait_for("the reason on the spawn page", explained,
                                              timeout=30)


def test_profile_asking_more_than_the_cluster_has_times_out_with_the_reason(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(FAULT_PROFILES).start()
    started = time.monotonic()
    assert hub.spawn("alice", {"profile": "huge"}).status_code in (201, 202)
    events = hub.progress("alice", timeout=60)
    waited = time.monotonic() - started
    final = events[-1]
    assert final.get("failed"), events
    assert "waited longer than 15 s in the queue and was cancelled" in final["message"]
    assert "ReqNodeNotAvail" in final["message"]
    assert any("Waiting in queue: ReqNodeNotAvail" in e["message"] for e in events)
    assert 15 <= waited < 40
    wait_for("the job to leave the queue", lambda: live_jobs(hub) == [], timeout=15)


def test_hub_killed_right_after_sbatch_leaves_no_unowned_job(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(FAULT_PROFILES).start()
    assert hub.spawn("alice", {"profile": "later"}).status_code in (201, 202)
    [job] = wait_for("sbatch to return", lambda: live_jobs(hub), timeout=30, interval=0.05)
    hub.kill9()
    hub.start()
    # Adopted: the restarted hub owns the job and re-attaches the server once it runs.
    model = hub.wait_ready("alice", timeout=90)
    assert model["state"]["job_id"] == job["id"]
    assert hub.proxied("alice").status_code == 200
    owned = {hub.server_model(u)["state"]["job_id"] for u in USERS if hub.server_model(u)}
    assert {j["id"] for j in live_jobs(hub)} <= owned


def test_a_tagged_job_no_server_owns_is_cancelled(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(FAULT_PROFILES).start()
    # an orphan: our tag, submitted outside any spawn (e.g. state lost with the database)
    out = subprocess.run(
        ["sudo", "-u", "bob", "sbatch", "--parsable", "--job-name=jupyterhub",
         f"--comment=hpcspawner:{hub.hub_id}:bob:", "--output=/dev/null", "--wrap", "sleep 300"],
        check=True, capture_output=True, text=True)
    job_id = out.stdout.strip()
    hub.spawn("alice", {"profile": "small"})  # any spawner starts the poller
    hub.wait_ready("alice")
    wait_for("the orphan to be cancelled",
             lambda: job_id not in {j["id"] for j in live_jobs(hub)}, timeout=40)
    assert f"job {job_id} ('hpcspawner:{hub.hub_id}:bob:') has our tag but no server owns " \
        "it" in hub.log()


def test_hub_restart_reattaches_three_running_servers(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(FAULT_PROFILES).start()
    jobs = start_three(hub)
    hub.stop()
    hub.start()
    for user in USERS:
        assert hub.wait_ready(user)["state"]["job_id"] == jobs[user]
        assert hub.proxied(user).status_code == 200
    assert sorted(j["id"] for j in live_jobs(hub)) == sorted(jobs.values())


def test_hub_restart_while_a_job_is_pending_keeps_it_waiting(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub(FAULT_PROFILES).start()
    assert hub.spawn("bob", {"profile": "later"}).status_code in (201, 202)
    [job] = wait_for("the job to pend", lambda: [
        j for j in live_jobs(hub) if j["state"] == "PENDING"], timeout=30)
    assert job["reason"] == "BeginTime"
    hub.stop()
    hub.start()
    assert [j["id"] for j in live_jobs(hub)] == [job["id"]]
    model = hub.wait_ready("bob", timeout=90)
    assert model["state"]["job_id"] == job["id"]
    assert hub.proxied("bob").status_code == 200


def test_progress_messages_tell_the_story_of_a_spawn(make_hub: Callable[..., Hub]) -> None:
    # slow_spawn_timeout 0: the REST call returns at once, so every event is still to be read
    hub = make_hub(FAULT_PROFILES, extra_config='c.JupyterHub.tornado_settings = '
                   '{"slow_spawn_timeout": 0}\n').start()
    assert hub.spawn("carol", {"profile": "small"}).status_code == 202
    events = hub.progress("carol", timeout=90)
    messages = [e["message"] for e in events]
    job_id = hub.wait_ready("carol")["state"]["job_id"]
    assert messages[0] == "Server requested"  # JupyterHub's own first event
    assert messages[1] == (f"Submitted job {job_id} to partition jupyter "
                           "(Small — 1 core, 12 GiB, 12 h)")
    assert any(m.startswith("Running on node ") and m.endswith(", starting Jupyter")
               for m in messages), messages
    assert any(m.startswith("Server ready on ") for m in messages), messages
    assert events[-1].get("ready"), messages


def test_walltime_reached_is_explained_on_the_next_spawn_page(
        make_hub: Callable[..., Hub]) -> None:
    profiles = FAULT_PROFILES + """
  - name: brief
    display_name: "Brief — 1 minute"
    resources: {cores: 1, memory: 1GiB, runtime: 1m}
"""
    hub = make_hub(profiles).start()
    session = hub.login("bob")
    assert hub.spawn("bob", {"profile": "brief"}).status_code in (201, 202)
    job_id = hub.wait_ready("bob")["state"]["job_id"]
    hub.wait_stopped("bob", timeout=150)  # SLURM ends it at 1 min (+ KillWait)
    wait_for("the reason on the spawn page", lambda: f"the job reached its time limit (job "
             f"{job_id})" in hub.spawn_page(session), timeout=30)


def test_a_restart_under_a_new_hub_id_reattaches_three_servers_and_cancels_none(
        make_hub: Callable[..., Hub]) -> None:
    """The hub's host was renamed (the old default hub_id) or it failed over: each job keeps
    the tag it was submitted with, so the hub still owns it."""
    hub = make_hub(FAULT_PROFILES).start()
    jobs = start_three(hub)
    old_id = hub.hub_id
    hub.stop()
    hub.reconfigure(hub_id=f"{old_id}-renamed")
    hub.start()
    for user in USERS:
        assert hub.wait_ready(user)["state"]["job_id"] == jobs[user]
        assert hub.proxied(user).status_code == 200
    watch_until = time.monotonic() + 3 * 5 + 5  # three slow polls and an orphan sweep
    while time.monotonic() < watch_until:
        running = {j["id"] for j in squeue(old_id) if j["state"] == "RUNNING"}
        assert running == set(jobs.values()), "a server's job was cancelled"
        time.sleep(1)
    assert "cancelling it" not in hub.log()
    for user in USERS:
        hub.stop_server(user)
    wait_for("the jobs to end", lambda: not [
        j for j in squeue(old_id) if j["state"] in ("PENDING", "RUNNING")], timeout=60)


SLURM_CONF = Path("/etc/slurm/slurm.conf")


def set_private_data(value: str | None, original: str) -> None:
    text = original + (f"PrivateData={value}\n" if value else "")
    SLURM_CONF.write_text(text)
    subprocess.run(["scontrol", "reconfigure"], check=True)
    wanted = value or "none"
    wait_for(f"PrivateData={wanted}", lambda: any(
        line.split("=", 1)[1].strip() == wanted
        for line in subprocess.run(["scontrol", "show", "config"], capture_output=True,
                                   text=True, check=True).stdout.splitlines()
        if line.startswith("PrivateData")), timeout=30)


def test_private_data_jobs_on_the_cluster_loses_no_server(make_hub: Callable[..., Hub]) -> None:
    """With PrivateData=jobs, squeue run as the hub's account shows no user's job: the hub
    must not take that for the end of every server, and must say what to grant."""
    hub = make_hub(FAULT_PROFILES, extra_config="c.HPCSpawner.gone_after_seconds = 5\n"
                                                "c.HPCSpawner.gone_after_queries = 2\n").start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    job_id = hub.wait_ready("alice")["state"]["job_id"]
    original = SLURM_CONF.read_text()
    set_private_data("jobs", original)
    try:
        hidden = subprocess.run(["sudo", "-u", "jupyterhub", "squeue", "-h", "-o", "%i"],
                                capture_output=True, text=True, check=True).stdout
        assert job_id not in hidden.split(), "PrivateData did not hide the job"
        wait_for("the hub to say what to grant", lambda: "PrivateData=jobs" in hub.log(),
                 timeout=30)
        watch_until = time.monotonic() + 3 * 5 + 5  # well past gone_after_*
        while time.monotonic() < watch_until:
            assert hub.server_model("alice") is not None, "alice's server was dropped"
            time.sleep(1)
        assert hub.proxied("alice").status_code == 200
    finally:
        set_private_data(None, original)
    assert hub.wait_ready("alice")["state"]["job_id"] == job_id
    assert [j["id"] for j in live_jobs(hub)] == [job_id]
    assert "docs/slurm.md" in hub.log()


def procs(name: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,comm="], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] == [name]]


def test_a_hung_sbatch_is_ended_with_its_sudo_and_its_job_does_not_linger(
        make_hub: Callable[..., Hub]) -> None:
    """slurmctld stops answering while alice's sbatch runs: after command_timeout the
    command and everything under sudo is gone, the user reads why, and a job the
    controller creates later from the dead request is cancelled as an orphan."""
    hub = make_hub(FAULT_PROFILES, extra_config="c.SlurmBackend.command_timeout = 3\n"
                                                "c.HPCSpawner.orphan_grace = 2\n").start()
    pid = int(Path("/run/hpcspawner-cluster/slurmctld.pid").read_text().strip())
    tokens_before = set(Path("/home/alice/.hpcspawner").glob("*.token"))
    os.kill(pid, signal.SIGSTOP)
    try:
        response = hub.spawn("alice", {"profile": "small"})
        assert response.status_code in (500, 503), response.text
        assert "did not accept the job" in response.json()["message"]
        wait_for("sbatch and its sudo to be gone", lambda: procs("sbatch") == [], timeout=3)
        assert set(Path("/home/alice/.hpcspawner").glob("*.token")) <= tokens_before
    finally:
        os.kill(pid, signal.SIGCONT)
    assert hub.spawn("bob", {"profile": "small"}).status_code in (201, 202)  # starts polling
    hub.wait_ready("bob")
    wait_for("no job of alice's to be left", lambda: not [
        j for j in live_jobs(hub) if j["user"] == "alice"], timeout=40)


def test_cluster_down_ends_a_running_notebook_and_its_job_step(
        make_hub: Callable[..., Hub]) -> None:
    """`scripts/demo stop` leaves servers running as jobs (as a real hub does); the local
    cluster's `cluster-down` must end them, not leave job steps and servers behind."""
    hub = make_hub(FAULT_PROFILES).start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    port = hub.server_port("alice") if hub.wait_ready("alice") else 0
    hub.stop()  # like `scripts/demo stop`: the server keeps running in its job
    assert procs("slurmstepd"), "the notebook's job step is not running"
    try:
        subprocess.run([str(REPO / "scripts/cluster-down")], check=True, capture_output=True)
        assert procs("slurmstepd") == []
        listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                                   text=True, check=True).stdout
        assert listening == "", f"alice's server still listens: {listening}"
    finally:
        subprocess.run([str(REPO / "scripts/cluster-up")], check=True, capture_output=True)


def test_a_tagged_job_of_a_cluster_user_who_is_not_a_hub_user_is_left_alone(
        make_hub: Callable[..., Hub]) -> None:
    """carol has a shell on the cluster but no account on this hub; her job carries the hub's
    tag with her own name (owner = tag user). The hub never cancels it and says so once."""
    hub = make_hub(FAULT_PROFILES, users=("alice", "bob")).start()
    out = subprocess.run(
        ["sudo", "-u", "carol", "sbatch", "--parsable", "--job-name=jupyterhub",
         f"--comment=hpcspawner:{hub.hub_id}:carol:", "--output=/dev/null", "--wrap",
         "sleep 300"], check=True, capture_output=True, text=True)
    job_id = out.stdout.strip()
    try:
        hub.spawn("alice", {"profile": "small"})  # any spawner starts the poller
        hub.wait_ready("alice")
        said = f"job {job_id} carries this hub's tag but 'carol' is not a user of this hub"
        wait_for("the hub to say it leaves carol's job alone", lambda: said in hub.log(),
                 timeout=40)
        watch_until = time.monotonic() + 2 * 5 + 5  # two more sweeps (orphan_grace 5 s)
        while time.monotonic() < watch_until:
            assert job_id in {j["id"] for j in live_jobs(hub)}, "carol's job was cancelled"
            time.sleep(1)
        assert hub.log().count(said) == 1
    finally:
        subprocess.run(["scancel", job_id], check=False)
