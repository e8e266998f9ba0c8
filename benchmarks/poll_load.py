"""Scheduler load of status polling: squeue calls per minute, hpcspawner vs batchspawner.

N real SLURM jobs run on the local cluster (partition `bench`, `sleep`); N spawners of each
kind are attached to them (as after a hub restart) and polled the way JupyterHub polls them
(every `poll_interval`, with jitter). Every squeue goes through a counting shim. batchspawner
runs `squeue -j ID` per spawner per interval (its issue #292); hpcspawner's spawners answer
from one shared query per interval.

    sudo /opt/hpcspawner/venv/bin/python -m benchmarks.poll_load --sizes 1,10,50

Needs the local cluster (scripts/cluster-up) and batchspawner (`pip install .[benchmark]`);
batchspawner is a benchmark-only dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from traitlets.config import Config

WORK = Path("/var/tmp/hpcspawner-bench")
SHIM = WORK / "squeue"
COUNT = WORK / "squeue.count"
REPO = Path(__file__).resolve().parent.parent
HUB = SimpleNamespace(public_host="", url="http://127.0.0.1:8081/hub/",
                      api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/")


def make_shim() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    WORK.chmod(0o755)
    SHIM.write_text(f'#!/bin/sh\necho x >> {COUNT}\nexec /usr/bin/squeue "$@"\n')
    SHIM.chmod(0o755)
    COUNT.write_text("")
    COUNT.chmod(0o666)


def calls() -> int:
    return len(COUNT.read_text().splitlines())


def submit_jobs(n: int, user: str) -> list[str]:
    ids = []
    for i in range(n):
        out = subprocess.run(
            ["sudo", "-u", user, "sbatch", "--parsable", "-p", "bench", "--job-name=jupyterhub",
             f"--comment=hpcspawner:bench:{user}:s{i}", "--mem=32M", "--output=/dev/null",
             "--wrap", "sleep 3600"], check=True, capture_output=True, text=True)
        ids.append(out.stdout.strip().split(";")[0])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        states = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%T"],
                                capture_output=True, text=True).stdout.split()
        if states.count("RUNNING") == n:
            return ids
        time.sleep(0.5)
    raise SystemExit(f"only {states.count('RUNNING')} of {n} benchmark jobs started")


def cancel_jobs(ids: list[str]) -> None:
    if ids:
        subprocess.run(["scancel", *ids], check=False)


def hpc_spawners(ids: list[str], user: str, interval: float) -> list[Any]:
    from hpcspawner.spawner import HPCSpawner

    c = Config()
    c.HPCSpawner.profiles_path = str(REPO / "profiles.yaml")
    c.HPCSpawner.hub_id = "bench"
    c.HPCSpawner.slow_poll_interval = interval
    c.HPCSpawner.orphan_grace = 3600
    c.SlurmBackend.squeue = str(SHIM)
    c.Spawner.poll_interval = interval
    out = []
    for i, job_id in enumerate(ids):
        s = HPCSpawner(user=SimpleNamespace(name=user, url=f"/user/{user}/s{i}/", groups=[]),
                       hub=HUB, config=c)
        s.load_state({"job_id": job_id, "backend": "slurm", "profile": "small",
                      "tag": f"hpcspawner:bench:{user}:s{i}", "address": ["vm", 1]})
        out.append(s)
    return out


def batch_spawners(ids: list[str], user: str, interval: float) -> list[Any]:
    import batchspawner

    c = Config()
    c.SlurmSpawner.batch_query_cmd = f"{SHIM} -h -j {{job_id}} -o '%T %B'"
    c.Spawner.poll_interval = interval
    out = []
    for i, job_id in enumerate(ids):
        s = batchspawner.SlurmSpawner(
            user=SimpleNamespace(name=user, url=f"/user/{user}/s{i}/", groups=[],
                                 escaped_name=user), hub=HUB, config=c)
        s.load_state({"job_id": job_id, "job_status": ""})
        out.append(s)
    return out


async def drive(polls: list[Callable[[], Awaitable[Any]]], interval: float,
                seconds: float) -> list[Any]:
    """Call each poll every ``interval`` s with JupyterHub's 10 % jitter, for ``seconds``."""
    results: list[Any] = []
    end = time.monotonic() + seconds

    async def one(poll: Callable[[], Awaitable[Any]]) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        while time.monotonic() < end:
            results.append(await poll())
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    await asyncio.gather(*(one(p) for p in polls))
    return results


def measure(kind: str, ids: list[str], user: str, interval: float, seconds: float) -> float:
    from hpcspawner import shared

    async def run() -> list[Any]:
        spawners = (hpc_spawners if kind == "hpcspawner" else batch_spawners)(
            ids, user, interval)
        try:
            return await drive([s.poll for s in spawners], interval, seconds)
        finally:
            shared.reset()

    before = calls()
    results = asyncio.run(run())
    made = calls() - before
    lost = sum(1 for r in results if r is not None)
    if lost:
        raise SystemExit(f"{kind}: {lost} polls said a running job was gone")
    return made * 60.0 / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,50", help="numbers of running servers")
    parser.add_argument("--interval", type=float, default=10.0,
                        help="poll interval of both spawners (s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring window (s)")
    parser.add_argument("--user", default="alice")
    args = parser.parse_args()
    make_shim()
    sizes = [int(n) for n in args.sizes.split(",")]
    rows = []
    for n in sizes:
        ids = submit_jobs(n, args.user)
        try:
            ours = measure("hpcspawner", ids, args.user, args.interval, args.seconds)
            peer = measure("batchspawner", ids, args.user, args.interval, args.seconds)
        finally:
            cancel_jobs(ids)
        rows.append((n, ours, peer))
    print(f"\nsqueue calls per minute, poll interval {args.interval:.0f} s, "
          f"window {args.seconds:.0f} s (same cluster, same run)")
    print(f"{'servers':>8} {'hpcspawner':>11} {'batchspawner':>13} {'ratio':>8}")
    for n, ours, peer in rows:
        ratio = peer / ours if ours else float("inf")
        print(f"{n:>8} {ours:>11.1f} {peer:>13.1f} {ratio:>7.1f}x")
    first, last = rows[0], rows[-1]
    grows = last[1] > first[1] * 1.5 + 2
    print(f"hpcspawner's count {'GROWS' if grows else 'does not grow'} with N "
          f"({first[1]:.1f}/min at N={first[0]}, {last[1]:.1f}/min at N={last[0]})")


if __name__ == "__main__":
    main()
