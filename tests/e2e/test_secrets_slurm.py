"""The API token of a SLURM-started server is in none of the places other users can read."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_htcondor_e2e import server_token
from tests.hubtools import Hub, server_environ, squeue

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]


def test_token_is_not_in_scontrol_squeue_the_script_ps_the_files_or_the_log(
        make_hub: Callable[..., Hub]) -> None:
    # a variable of the hub's that sudo itself keeps (its default env_keep): only the hub's
    # bare environment for commands it runs as users keeps it out of the job
    hub_secret = "FILE:/tmp/krb5cc_hub_" + secrets.token_hex(16)
    hub = make_hub(env={"KRB5CCNAME": hub_secret}).start()
    assert hub.spawn("alice", {"profile": "small"}).status_code in (201, 202)
    hub.wait_ready("alice")
    token = server_token(hub.server_port("alice"))
    assert len(token) >= 32
    # the job starts from sbatch's environment (--export=ALL): nothing of the hub's is in it
    assert hub_secret not in str(server_environ(hub.server_port("alice")))
    [job] = squeue(hub.hub_id)

    def run(*argv: str, user: str = "bob") -> str:
        out = subprocess.run(["sudo", "-u", user, *argv], capture_output=True, text=True,
                             check=False)
        return out.stdout + out.stderr

    scontrol = run("scontrol", "show", "job", "-dd", job["id"])
    assert "hpcspawner:" in scontrol and token not in scontrol
    assert token not in run("squeue", "-a", "-o", "%all")
    script = run("scontrol", "write", "batch_script", job["id"], "-", user="alice")
    assert "hpcspawner.launcher" in script and token not in script
    assert token not in run("ps", "-eo", "args")
    leftovers = subprocess.run(["grep", "-rl", "--", token, "/home/alice/.hpcspawner"],
                               capture_output=True, text=True, check=False).stdout
    assert leftovers == ""
    assert not list(Path("/home/alice/.hpcspawner").glob("*.token"))  # launcher deleted it
    assert token not in hub.log()
