"""Another user of the cluster (bob) tries to take over, kill or read alice's server. Real
SLURM, a real hub running as the unprivileged `jupyterhub` account under the documented
sudoers file."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import EXAMPLE_PROFILES
from tests.e2e.test_htcondor_e2e import server_token
from tests.hubtools import Hub, new_hub_dir, run, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


def sbatch_as(user: str, *args: str) -> str:
    out = run(["sudo", "-u", user, "sbatch", "--parsable", "--output=/dev/null", *args])
    return out.stdout.strip().split(";")[0]


def job_state(job_id: str) -> str:
    return run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False).stdout.strip()


def test_a_comment_with_newlines_neither_stops_alices_server_nor_cancels_her_jobs(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    server_job = hub.wait_ready("alice")["state"]["job_id"]
    # alice's own batch job, nothing to do with the hub
    analysis = sbatch_as("alice", "-p", "batch", "--job-name=analysis", "--wrap", "sleep 600")
    wait_for("alice's analysis job to run", lambda: job_state(analysis) == "RUNNING")
    # bob's job, named like the hub's jobs, with records for alice's jobs in its comment:
    # her server "cancelled", her analysis job an orphan of the hub's to be cancelled
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    forged = (f"x\n{server_job}|CANCELLED|None|vm|alice|{stamp}|hpcspawner:{hub.hub_id}:alice:"
              f"\n{analysis}|RUNNING|None|vm|alice|{stamp}|hpcspawner:{hub.hub_id}:alice:gone")
    forger = sbatch_as("bob", "-p", "batch", "--job-name=jupyterhub", f"--comment={forged}",
                       "--wrap", "sleep 600")
    # a genuine orphan submitted after the forgery: once the hub cancels it, the hub has
    # swept at least once with the forged records older than the orphan grace
    orphan = sbatch_as("bob", "-p", "batch", "--job-name=jupyterhub",
                       f"--comment=hpcspawner:{hub.hub_id}:bob:", "--wrap", "sleep 600")
    try:
        wait_for("the hub to cancel the genuine orphan",
                 lambda: job_state(orphan) in ("", "CANCELLED", "COMPLETING"), timeout=60)
        model = hub.server_model("alice")
        assert model is not None and model["ready"], "alice's server was stopped"
        assert model["state"]["job_id"] == server_job
        assert hub.proxied("alice").status_code == 200
        assert job_state(analysis) == "RUNNING", "alice's own batch job was cancelled"
        assert job_state(server_job) == "RUNNING"
    finally:
        subprocess.run(["scancel", analysis, forger, orphan], check=False)


def test_the_hub_account_may_run_no_shell_rm_or_install_as_a_user() -> None:
    listed = run(["sudo", "-l", "-U", "jupyterhub"]).stdout
    assert "hpcspawner-helper" in listed and "/usr/bin/sbatch" in listed
    commands = listed.split("NOPASSWD:", 1)[1]
    for word in ("/bin/sh", "bash", "/bin/rm", "/usr/bin/install", " ALL\n", "/bin/cat"):
        assert word not in commands, listed
    # and the hub runs as that account in this tier
    assert Path("/etc/sudoers.d/hpcspawner").exists()


def test_the_hub_process_runs_as_the_unprivileged_account(
        make_hub: Callable[..., Hub]) -> None:
    hub = make_hub().start()
    assert hub.proc is not None
    owner = run(["ps", "-o", "user=", "-p", str(hub.proc.pid)]).stdout.strip()
    assert owner == "jupyterhub"


def test_the_token_is_in_no_argv_while_the_server_starts(make_hub: Callable[..., Hub]) -> None:
    """Every process's command line is sampled DURING the spawn (sudo, sbatch, the helper,
    the launcher, the server), then searched for the token the server got."""
    hub = make_hub().start()
    seen: set[str] = set()
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    seen.add(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
        hub.wait_ready("alice")
    finally:
        done.set()
        sampler.join()
    token = server_token(hub.server_port("alice"))
    assert len(token) >= 32
    assert any("hpcspawner-helper write-token" in c for c in seen), "sampling missed the spawn"
    assert any("hpcspawner.launcher" in c for c in seen)
    assert not [c for c in seen if token in c]
    assert token not in hub.log()
    [job] = squeue(hub.hub_id)
    assert token not in run(["scontrol", "show", "job", "-dd", job["id"]]).stdout


COUNTING_SQUEUE = """#!/bin/sh
echo "$(date +%s.%N)" >> {log}
exec /usr/bin/squeue "$@"
"""


def test_two_hundred_reports_at_once_stall_nobody_and_cost_at_most_a_query_a_second(
        make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    """alice's job (her code, her token) posts 200 reports at once while it still queues:
    one is checked, the rest get 429 at once; squeue is asked at most once more per fast poll
    interval than the poller asks anyway; bob's server starts meanwhile."""
    where = new_hub_dir("squeue-count")  # the hub's account reaches it (pytest's is root's)
    calls = where / "squeue.calls"
    wrapper = where / "squeue"
    wrapper.write_text(COUNTING_SQUEUE.format(log=calls))
    wrapper.chmod(0o755)
    calls.write_text("")
    calls.chmod(0o666)
    profiles = EXAMPLE_PROFILES + """
  - name: later
    extra_options: ["--begin=now+40"]
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
"""
    hub = make_hub(profiles, extra_config=f"c.SlurmBackend.squeue = {str(wrapper)!r}\n").start()
    assert hub.spawn("alice", {"profile": "later"}).status_code in (201, 202)
    [token_file] = wait_for("the token hand-off file", lambda: list(
        Path("/home/alice/.hpcspawner").glob("*.token")), timeout=30)
    token = json.loads(token_file.read_text())["token"]  # root reads what her job will read
    [job] = squeue(hub.hub_id)
    script = run(["scontrol", "write", "batch_script", job["id"], "-"]).stdout
    nonce = script.split("HPCSPAWNER_SUBMISSION=", 1)[1].split()[0].strip("'")
    url = f"{hub.url}/hub/api/hpcspawner/report"
    body = {"host": "vm", "port": 80, "server_name": "", "submission": nonce}

    def post(_: int) -> int:
        return requests.post(url, json=body, timeout=60,
                             headers={"Authorization": f"token {token}"}).status_code

    assert hub.spawn("bob", {"profile": "small"}).status_code in (201, 202)
    before = len(calls.read_text().split())
    began = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(post, range(200)))
    took = time.monotonic() - began
    during = len(calls.read_text().split()) - before
    assert set(statuses) <= {429, 503} and statuses.count(429) >= 150, sorted(set(statuses))
    # the poller's own cycles (fast while two servers start: 0.5 s) and at most one extra a
    # fast interval, for 200 reports together
    allowed = 2 * (1 + int(took / 0.5)) + 1
    assert during <= allowed, f"{during} squeue in {took:.1f} s for 200 reports"
    hub.wait_ready("bob", timeout=90)
    assert hub.proxied("bob").status_code == 200
    print(f"\n200 reports in {took:.1f} s: {statuses.count(429)} answered 429, "
          f"{statuses.count(503)} 503; {during} squeue meanwhile; bob's server ready")
