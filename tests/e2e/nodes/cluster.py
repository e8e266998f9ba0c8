"""What the multi-node tests share: the hosts of ``scripts/cluster-up --nodes 2``
(scripts/lib/nodes.sh, docs/local-cluster.md) and hubs on its node network."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hubtools import Hub, node_network

HUB_NAME = "hpcspawner-hub"    # the hub host (the root namespace)
HUB2 = ("hpc-hub2", "hpcspawner-hub2")  # the second hub host: its namespace and name
SERVICE_NAME = "jupyter"       # the hub's service address, on the active hub host
RUN_DIR = Path("/run/hpcspawner-cluster")
REPO = Path(__file__).resolve().parents[3]

ON_NODE02 = """
profiles:
  - name: on-node02
    default: true
    backend: slurm
    partition: jupyter
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
    extra_options: ["--nodelist=node02"]
"""
ON_NODE01 = ON_NODE02.replace("on-node02", "on-node01").replace("node02", "node01")


def require_network() -> dict[str, str]:
    """The multi-node cluster's hosts. In CI its absence is a failure, never a skip."""
    names = node_network()
    partition = subprocess.run(["sinfo", "-h", "-N", "-p", "jupyter", "-t", "idle,mix,alloc",
                                "-o", "%N"], capture_output=True, text=True,
                               check=False).stdout.split()
    problem = ""
    if not {HUB_NAME, HUB2[1], SERVICE_NAME, "node01", "node02"} <= set(names):
        problem = "the node network is not up: run `sudo scripts/cluster-up --nodes 2`"
    elif sorted(partition) != ["node01", "node02"]:
        problem = f"partition jupyter has {partition}, not node01 and node02 alone"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return names


def hub_on_node_network(make_hub: Callable[..., Hub], hub_address: str, *args: object,
                        more_config: str = "", **kw: object) -> Hub:
    """A hub whose API the nodes reach on ``hub_address`` on the node network, its database
    in PostgreSQL on the database host, as a site's."""
    return make_hub(*args, postgres=True, extra_config=(
        f"c.JupyterHub.hub_ip = {hub_address!r}\n"
        f"c.JupyterHub.hub_connect_ip = {hub_address!r}\n" + more_config), **kw)


def uid_of(user: str) -> int:
    return int(subprocess.run(["id", "-u", user], capture_output=True, text=True,
                              check=True).stdout)


def processes_of(user: str) -> dict[int, tuple[int, str]]:
    """pid -> (parent, command line) of every living process of ``user`` on the machine."""
    uid, found = uid_of(user), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            stat = (entry / "stat").read_text()
            words = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, ppid = stat[stat.rfind(")") + 2:].split()[:2]
        if state != "Z":
            found[int(entry.name)] = (int(ppid), words)
    return found


def server_process(user: str, submission: str = "") -> int:
    """The PID of ``user``'s single-user server (the PID namespace is the machine's): the one
    the job of ``submission`` (its nonce, in the hub's state) started, when given; a server
    some other test's job left running is not it."""
    mark = f"HPCSPAWNER_SUBMISSION={submission}".encode()
    for pid, (_, words) in processes_of(user).items():
        if not any(word.endswith("jupyterhub-singleuser") for word in words.split()):
            continue
        try:
            if submission and mark not in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                continue
        except OSError:
            continue
        return pid
    raise AssertionError(f"no jupyterhub-singleuser of {user} runs"
                         + (f" for submission {submission}" if submission else ""))


def host_name_of(pid: int) -> str:
    """The host name a process sees (its UTS namespace)."""
    return subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True,
                          text=True, check=True).stdout.strip()


def sacct_state(job_id: str) -> str:
    """What SLURM's accounting (slurmdbd, MariaDB) says of a job ('' when it knows nothing)."""
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State"],
                         capture_output=True, text=True, check=False).stdout.split()
    return out[0] if out else ""
