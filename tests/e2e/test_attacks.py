"""Another user of the cluster (bob) tries to take over, kill or read alice's server. Real
SLURM, a real hub running as the unprivileged `jupyterhub` account under the documented
sudoers file."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_htcondor_e2e import server_token
from tests.hubtools import Hub, listener_user, run, squeue, wait_for

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


SQUATTER = r"""
import re, socket, sys, time
from pathlib import Path
victim, marker, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
held, deadline = {}, time.monotonic() + 120
while time.monotonic() < deadline:
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if proc.stat().st_uid != int(victim):
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in argv]
        marked = [i for i, w in enumerate(words) if marker in w]
        if marked and words[marked[0] + 1:marked[0] + 2] and words[marked[0] + 1].isdigit():
            port = int(words[marked[0] + 1])
            if port not in held:
                s = socket.socket()
                try:
                    s.bind(("0.0.0.0", port))
                    s.listen(5)
                except OSError:
                    continue
                held[port] = s
                out.write_text(" ".join(map(str, held)))
    time.sleep(0.01)
"""


def test_bob_squatting_the_port_alices_server_is_about_to_bind_never_gets_her_traffic(
        make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    """bob reads the port from alice's server's command line (ps is public) and listens on
    it before her server binds it. Her server cannot bind; the launcher must not report
    bob's listener: the spawn fails with a message, or succeeds on a port bob does not
    hold, and the proxy never points at bob."""
    slow_server = (': squat-me; sleep 3; exec /opt/hpcspawner/venv/bin/jupyterhub-singleuser '
                   '--port="$0" "$@"')
    hub = make_hub(extra_config=f"c.Spawner.cmd = ['/bin/sh', '-c', {slow_server!r}, "
                                "'{port}']\n").start()
    held = Path("/tmp") / f"squatted-{hub.hub_id}"
    squatter = subprocess.Popen(["sudo", "-u", "bob", sys.executable, "-c", SQUATTER,
                                 run(["id", "-u", "alice"]).stdout.strip(), "squat-me",
                                 str(held)])
    try:
        response = hub.spawn("alice", {"profile": "small"})
        if response.status_code in (201, 202):
            events = hub.progress("alice", timeout=150)
            ready, message = bool(events[-1].get("ready")), str(events[-1].get("message"))
        else:  # failed within the hub's slow_spawn_timeout: the POST carries the message
            ready, message = False, str(response.json().get("message"))
        assert held.exists(), f"bob squatted no port: the attack did not happen ({message})"
        squatted = {int(p) for p in held.read_text().split()}
        routes = hub.routes()
        if ready:
            port = hub.server_port("alice")
            assert port not in squatted
            assert listener_user(port) == "alice"
            print(f"\nalice's server started on {port}; bob squatted {sorted(squatted)}")
        else:
            assert "/user/alice" not in routes
            log = message.split("Its output is in ~/", 1)[1].split(". ", 1)[0]
            output = (Path("/home/alice") / log).read_text()
            assert any(f"another process listens on port {p}" in output for p in squatted)
            print(f"\nalice's spawn failed: {message}")
        for route in routes.values():
            assert int(route["target"].rsplit(":", 1)[1]) not in squatted
    finally:
        squatter.terminate()
        squatter.wait()
        held.unlink(missing_ok=True)
