"""bob's batch job runs on alice's node — not on the hub host — and tries from there every
attack of tests/e2e/test_attacks.py (tests/e2e/bob_attacks.py): her token from the command
lines, environments and files he can reach while her server starts; squeue records forged in
a job comment (her server "cancelled", her own batch job an orphan); a flood of reports
claiming her server; her server called directly. All fail. (Listening on her port beside
her server: test_nodes.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.nodes.cluster import HUB_NAME, ON_NODE01, hub_on_node_network
from tests.hubtools import Hub, run, scontrol_job, server_environ, wait_for

pytestmark = [pytest.mark.nodes, pytest.mark.e2e, pytest.mark.slurm]

ATTACKS = Path(__file__).resolve().parents[1] / "bob_attacks.py"


def sbatch_as(user: str, *args: str) -> str:
    out = run(["sudo", "-u", user, "sbatch", "--parsable", "--output=/dev/null", *args])
    return out.stdout.strip().split(";")[0]


def job_state(job_id: str) -> str:
    return run(["squeue", "-h", "-j", job_id, "-o", "%T"], check=False).stdout.strip()


def events(path: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in (json.loads(line) for line in path.read_text().splitlines() if line)
            if e["event"] == kind]


def test_bob_on_alices_node_tries_every_attack_and_all_fail(
        make_hub: Callable[..., Hub], network: dict[str, str], tmp_path: Path) -> None:
    hub = hub_on_node_network(make_hub, network[HUB_NAME])
    hub.reconfigure(profiles=ON_NODE01)
    hub.start()
    # alice's own batch job, nothing to do with the hub
    analysis = sbatch_as("alice", "-p", "batch", "--job-name=analysis", "--wrap", "sleep 600")
    record, go = Path(f"/tmp/bob-attacks-{hub.hub_id}.jsonl"), Path(f"/tmp/bob-go-{hub.hub_id}")
    record.write_text("")
    record.chmod(0o666)
    bob = sbatch_as("bob", "-p", "batch", "--nodelist=node01",
                    f"--chdir={Path('~bob').expanduser()}",
                    f"--wrap={sys.executable} {ATTACKS} {record} {go} 300")
    bobs = [bob]
    try:
        wait_for("bob's job to start on node01", lambda: events(record, "started"), timeout=30)
        assert events(record, "started")[0]["host"] == "node01"
        wait_for("alice's analysis job to run", lambda: job_state(analysis) == "RUNNING")

        assert hub.spawn("alice").status_code in (201, 202)
        server_job = hub.wait_ready("alice", timeout=120)["state"]["job_id"]
        assert scontrol_job(server_job)["NodeList"] == "node01"  # bob's node
        # PrivateData=jobs: bob's squeue and sacct do not even list her jobs (the hub's
        # account, a SLURM operator, does)
        for command in (["squeue", "-h", "-o", "%i"], ["sacct", "-n", "-X", "-o", "JobID"]):
            listed = run(["sudo", "-u", "bob", *command]).stdout.split()
            assert server_job not in listed and analysis not in listed, (command, listed)
        assert server_job in run(["sudo", "-u", "jupyterhub", "squeue", "-h", "-o",
                                  "%i"]).stdout.split()
        port = hub.server_port("alice")
        token = server_environ(port, netns="hpc-node01")["JUPYTERHUB_API_TOKEN"]
        go.write_text(json.dumps({
            "api_url": f"http://{network[HUB_NAME]}:{hub.port + 81}/hub/api",
            "hub_id": hub.hub_id, "server_job": server_job, "analysis": analysis,
            "port": port, "node": "node01"}))
        go.chmod(0o644)
        wait_for("bob's attacks to end", lambda: events(record, "done"), timeout=120)
        bobs += [e["job"] for e in events(record, "submitted") if e["job"]]

        # her token: in no command line he saw while her server started, in nothing he read
        [seen] = [e["seen"] for e in events(record, "cmdlines")]
        assert any("hpcspawner.launcher" in c for c in seen), "bob's sampling missed the spawn"
        assert len(token) >= 32 and not [c for c in seen if token in c]
        read = events(record, "read")
        assert read and not [e for e in read if e["ok"]], read
        assert token not in hub.log()
        assert token not in run(["scontrol", "show", "job", "-dd", server_job]).stdout

        # his reports: none accepted; the hub answers everyone meanwhile
        [reports] = events(record, "reports")
        assert sum(reports["statuses"].values()) == 200
        assert not [s for s in reports["statuses"] if s.startswith("2")], reports
        # her server called directly: nothing without her cookie
        direct = events(record, "direct")
        assert len(direct) == 6 and not [e for e in direct if e["status"] == 200], direct

        # the forged records: once the hub has cancelled his genuine orphan (submitted after
        # the forgery), it has swept with the forged lines older than the orphan grace
        kinds = {e["kind"]: e["job"] for e in events(record, "submitted")}
        assert kinds["forger"] and kinds["orphan"], events(record, "submitted")
        wait_for("the hub to cancel bob's genuine orphan",
                 lambda: job_state(kinds["orphan"]) in ("", "CANCELLED", "COMPLETING"),
                 timeout=60)
        model = hub.server_model("alice")
        assert model is not None and model["ready"], "alice's server was stopped"
        assert model["state"]["job_id"] == server_job
        assert hub.proxied("alice").status_code == 200
        assert job_state(analysis) == "RUNNING", "alice's own batch job was cancelled"
        assert job_state(server_job) == "RUNNING"
        assert job_state(kinds["forger"]) == "RUNNING"  # bob's own job: not the hub's to end
        print(f"\nbob on node01: {len(seen)} command lines sampled, {len(read)} reads refused, "
              f"reports {reports['statuses']} in {reports['seconds']} s, direct "
              f"{sorted({e['status'] for e in direct})}; forged records changed nothing")
    finally:
        subprocess.run(["scancel", analysis, *bobs], check=False)
        record.unlink(missing_ok=True)
        go.unlink(missing_ok=True)
