"""The hub's own account and a flood of alice's own reports, on the one-node cluster: real
SLURM, a real hub running as the unprivileged `jupyterhub` account under the documented
sudoers file. What another user (bob) tries against alice's server, he tries from a job on
her node: tests/e2e/nodes/test_neighbour.py and test_nodes.py."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.conftest import EXAMPLE_PROFILES
from tests.hubtools import Hub, new_hub_dir, run, squeue, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


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
