"""Spawn latency on the local SLURM: hpcspawner, batchspawner and the floor, side by side.

Three contenders, measured interleaved in one run with the same venv and the same user:

- the floor: the single-user stack (``jupyter server`` with the same extensions) started
  directly as the user, from the start to its first 200 on ``/api/status``;
- hpcspawner, one real hub (as the ``jupyterhub`` account, as sites run it), profile
  ``bench`` (1 core, 1 GiB, partition jupyter);
- batchspawner 1.3's SlurmSpawner, one real hub (as root: it sudoes to the user), the same
  resources.

A spawn is timed from the REST POST to the first 200 from the server's ``/api/status``
through the proxy. For hpcspawner each spawn's phases are read from the hub's and the
launcher's logs (benchmarks/phases.py) and their medians printed.

    sudo /opt/hpcspawner/venv/bin/python -m benchmarks.spawn_latency            # N=10
    sudo /opt/hpcspawner/venv/bin/python -m benchmarks.spawn_latency --quick    # N=3
    sudo /opt/hpcspawner/venv/bin/python -m benchmarks.spawn_latency --burst 20

Needs the local cluster (scripts/cluster-up), the hub account (scripts/setup-machine) and
batchspawner (``pip install .[benchmark]``). Writes benchmarks/results/spawn_latency.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks import phases
from tests.hubtools import (
    VENV_BIN,
    Hub,
    drop_database,
    new_database,
    new_hub_dir,
    scontrol_job,
)

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
WORK = Path("/var/tmp/hpcspawner-bench")
COUNTER = WORK / "squeue.count"

BENCH_PROFILES = """
profiles:
  - name: bench
    default: true
    backend: slurm
    partition: {partition}
    resources: {{cores: 1, memory: 1GiB, runtime: 1h}}
"""

CONDOR_PROFILES = """
profiles:
  - name: bench
    default: true
    backend: htcondor
    resources: {cores: 1, memory: 1536MiB, runtime: 1h}
    htcondor:
      fast_path: {timeout: 8s, fallback: true, slot: {cores: 1, memory: 1536MiB}}
"""

HPC_CONFIG = """
c.SlurmBackend.squeue = {squeue!r}
"""

# on the multi-node cluster (scripts/cluster-up --nodes N): the nodes reach the hub's API
# on the hub host's address on the node network
NODE_NETWORK_CONFIG = """
c.JupyterHub.hub_ip = {address!r}
c.JupyterHub.hub_connect_ip = {address!r}
"""

BATCH_CONFIG = """
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.SlurmSpawner.req_partition = {partition!r}
c.SlurmSpawner.req_memory = "1G"
c.SlurmSpawner.req_nprocs = "1"
c.SlurmSpawner.req_runtime = "1:00:00"
c.SlurmSpawner.batch_query_cmd = {squeue!r} + " -h -j {{job_id}} -o '%T %B'"
c.SlurmSpawner.batchspawner_singleuser_cmd = {wrapper!r}
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.http_timeout = 120
c.Spawner.start_timeout = 300
"""


PHASE = random.Random()  # the pause before each measured spawn (measure)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile, interpolated between the two nearest runs (numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def counting_squeue() -> str:
    """A squeue that counts its calls (both hubs' queries go through it)."""
    WORK.mkdir(parents=True, exist_ok=True)
    WORK.chmod(0o755)
    shim = WORK / "squeue"
    shim.write_text(f'#!/bin/sh\necho x >> {COUNTER}\nexec /usr/bin/squeue "$@"\n')
    shim.chmod(0o755)
    COUNTER.write_text("")
    COUNTER.chmod(0o666)
    return str(shim)


def squeue_calls() -> int:
    return len(COUNTER.read_text().splitlines()) if COUNTER.exists() else 0


def wait_200(url: str, headers: dict[str, str], deadline: float, step: float = 0.02,
             alive: subprocess.Popen[bytes] | None = None) -> float:
    """Poll ``url`` until it answers 200; the time it did."""
    session = requests.Session()
    while time.time() < deadline:
        if alive is not None and alive.poll() is not None:
            raise SystemExit(f"the server for {url} exited with {alive.returncode}")
        with contextlib.suppress(requests.RequestException):
            r = session.get(url, headers=headers, timeout=5, allow_redirects=False)
            if r.status_code == 200:
                return time.time()
        time.sleep(step)
    raise SystemExit(f"no answer from {url} before the deadline")


class Floor:
    """The least a spawn can take: the server started directly as the user, from the start to
    its first 200. ``singleuser``: the same stack a job runs (jupyterhub-singleuser, with the
    environment a hub gives and the benchmark's hub to ask its version; first 200 on the
    server's ``api``); ``server``: a bare ``jupyter server`` with the same extensions."""

    def __init__(self, user: str, kind: str, hub_api: str = "", port: int = 19900):
        self.user, self.kind, self.hub_api, self.port = user, kind, hub_api, port
        self.name = "floor" if kind == "singleuser" else "bare_server"

    def spawn_once(self) -> float:
        token = secrets.token_hex(16)
        home = pwd.getpwnam(self.user).pw_dir
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}
        if self.kind == "singleuser":
            prefix = f"/user/{self.user}/"
            env.update({"JUPYTERHUB_API_TOKEN": token, "JUPYTERHUB_API_URL": self.hub_api,
                        "JUPYTERHUB_SERVICE_PREFIX": prefix, "JUPYTERHUB_USER": self.user,
                        "JUPYTERHUB_CLIENT_ID": f"jupyterhub-user-{self.user}",
                        "JUPYTERHUB_BASE_URL": "/",
                        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{self.port}{prefix}"})
            argv = [str(VENV_BIN / "jupyterhub-singleuser")]
            url = f"http://127.0.0.1:{self.port}{prefix}api"
        else:
            argv = [str(VENV_BIN / "jupyter-server"), "--no-browser", "--ip=127.0.0.1",
                    f"--port={self.port}", "--ServerApp.port_retries=0",
                    f"--ServerApp.root_dir={home}", f"--IdentityProvider.token={token}"]
            url = f"http://127.0.0.1:{self.port}/api/status"
        started = time.time()
        with tempfile.TemporaryFile() as output:  # the server's own words, should it fail
            proc = subprocess.Popen(["/usr/sbin/runuser", "-u", self.user, "--", *argv],
                                    stdout=output, stderr=subprocess.STDOUT, cwd=home,
                                    env=env, start_new_session=True)
            try:
                answered = wait_200(url, {"Authorization": f"token {token}"}, started + 120,
                                    alive=proc)
            except SystemExit as exc:
                output.seek(0)
                tail = output.read().decode(errors="replace").strip().splitlines()[-5:]
                raise SystemExit(f"{exc}; its last lines: " + " | ".join(tail)) from None
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        return answered - started

    def close(self) -> None:
        pass


class HubContender:
    """One real hub and its spawner; a spawn is POST → 200 through the proxy → stop."""

    def __init__(self, name: str, hub: Hub, user: str):
        self.name, self.hub, self.user = name, hub, user
        self.phases: list[dict[str, float]] = []

    def spawn_once(self) -> float:
        hub, user = self.hub, self.user
        posted = time.time()
        r = hub.spawn(user)
        if r.status_code not in (201, 202):
            raise SystemExit(f"{self.name}: spawn refused ({r.status_code}): {r.text[:300]}")
        answered = wait_200(f"{hub.url}/user/{user}/api/status",
                            {"Authorization": f"token {hub.token}"}, posted + 300)
        if self.name.startswith("hpcspawner"):
            self.phases.append(self._phases(posted, answered))
        hub.stop_server(user)
        hub.wait_stopped(user, timeout=120)
        return answered - posted

    def _phases(self, posted: float, answered: float) -> dict[str, float]:
        log = self.hub.log()
        job = phases.job_id(log, self.user, posted)
        home = pwd.getpwnam(self.user).pw_dir
        job_log = Path(home, ".hpcspawner", "logs", f"default-{job}.log")
        text = job_log.read_text(errors="replace") if job and job_log.exists() else ""
        return phases.phases(log, text, self.user, posted, answered)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.hub.stop_server(self.user)
        self.hub.stop()
        self.hub.stop_proxy()


def make_hubs(partition: str, users: tuple[str, ...], squeue: str,
              which: tuple[str, ...], hub_address: str = "", database: str = "") -> dict[str, Hub]:
    """The contenders' hubs, started. ``database``: the hpcspawner hub's database is this new
    one in the multi-node cluster's PostgreSQL (dropped by the caller), not SQLite."""
    hubs: dict[str, Hub] = {}
    if "hpcspawner" in which:
        db_url, env = new_database(database) if database else ("", {})
        hubs["hpcspawner"] = Hub(
            new_hub_dir("bench-hpcspawner"), profiles=BENCH_PROFILES.format(partition=partition),
            hub_id=f"bench{secrets.token_hex(2)}", port=19000, users=users, db_url=db_url,
            env=env, extra_config=HPC_CONFIG.format(squeue=squeue) + (
                NODE_NETWORK_CONFIG.format(address=hub_address) if hub_address else ""))
    if "batchspawner" in which:
        hubs["batchspawner"] = Hub(
            new_hub_dir("bench-batchspawner"), profiles=BENCH_PROFILES.format(
                partition=partition), hub_id="benchpeer", port=19100, users=users, as_root=True,
            extra_config=BATCH_CONFIG.format(partition=partition, squeue=squeue,
                                             singleuser=str(VENV_BIN / "jupyterhub-singleuser"),
                                             wrapper=str(VENV_BIN / "batchspawner-singleuser")))
    for hub in hubs.values():
        hub.start()
    return hubs


def table(results: dict[str, list[float]]) -> list[str]:
    floor50 = statistics.median(results["floor"]) if results.get("floor") else None
    floor95 = percentile(results["floor"], 95) if results.get("floor") else None
    width = max(14, *(len(name) for name in results))
    rows = [f"{'':<{width}} {'p50':>7} {'p95':>7} {'max':>7} {'over the floor (p50 / p95)':>28}"]
    for name, values in results.items():
        p50, p95 = statistics.median(values), percentile(values, 95)
        over = (f"{p50 - floor50:+.2f} s / {p95 - floor95:+.2f} s"
                if floor50 is not None and floor95 is not None and name != "floor" else "—")
        rows.append(f"{name:<{width}} {p50:>6.2f}s {p95:>6.2f}s {max(values):>6.2f}s "
                    f"{over:>28}")
    return rows


def measure(n: int, warmup: int, user: str, partition: str,
            which: tuple[str, ...]) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    squeue = counting_squeue()
    hubs = make_hubs(partition, (user,), squeue, which)
    contenders: list[Any] = []
    if "floor" in which:
        api = hub_api(hubs["hpcspawner"]) if "hpcspawner" in hubs else ""
        contenders.append(Floor(user, "singleuser", api))
    if "bare" in which:
        contenders.append(Floor(user, "server", port=19901))
    contenders += [HubContender(name, hub, user) for name, hub in hubs.items()]
    return take_turns(contenders, n, warmup, pause=True)


def take_turns(contenders: list[Any], n: int, warmup: int, *,
               pause: bool) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    """``warmup`` spawns each, then ``n`` each, interleaved; the times per contender and the
    phases of hpcspawner's. Closes the contenders."""
    results: dict[str, list[float]] = {c.name: [] for c in contenders}
    try:
        for _ in range(warmup):  # caches, the page cache, the first import of everything
            for c in contenders:
                c.spawn_once()
        for c in contenders:
            if isinstance(c, HubContender):
                c.phases.clear()
        for i in range(n):
            order = contenders[i % len(contenders):] + contenders[:i % len(contenders)]
            for c in order:  # interleaved, the order rotating, so drift hits all alike
                if pause:
                    # a random pause first: spawns that follow each other at a steady pace
                    # would meet SLURM's one-second scheduling passes at the same moment
                    # every time, one contender always just after a pass, another just before
                    time.sleep(PHASE.random())
                results[c.name].append(c.spawn_once())
                print(f"  {c.name} #{i + 1}: {results[c.name][-1]:.2f} s", flush=True)
    finally:
        for c in contenders:
            c.close()
    ours: list[dict[str, float]] = next(
        (c.phases for c in contenders if c.name.startswith("hpcspawner")), [])
    return results, ours


def measure_htcondor(kind: str, n: int, warmup: int, user: str) -> tuple[
        dict[str, list[float]], list[dict[str, float]], dict[str, Any]]:
    """The HTCondor fast path (reserved notebook slots, docs/htcondor.md) on the stand-in or
    a real pool, beside the floor: time to the first answer and its phases, as for SLURM. The
    user's first start on the new hub (the pool has no claim of the user's to reuse) is
    measured apart, before the warm-up: the cold start."""
    from tests.e2e.condor import find_condor

    condor, why = find_condor(kind)
    if condor is None:
        raise SystemExit(why)
    hub = Hub(new_hub_dir(f"bench-htcondor-{kind}"), profiles=CONDOR_PROFILES,
              hub_id=f"bench{secrets.token_hex(2)}", port=19200, users=(user,),
              extra_config=condor.hub_config()).start()
    ours = HubContender(f"hpcspawner-htcondor-{kind}", hub, user)
    try:
        cold = ours.spawn_once()
    except BaseException:
        ours.close()
        raise
    print(f"  {ours.name} cold (the user's first start on this hub): {cold:.2f} s", flush=True)
    first = {"s": round(cold, 3),
             "phases": {k: round(v, 3) for k, v in ours.phases.pop().items()}}
    results, phased = take_turns([Floor(user, "singleuser", hub_api(hub)), ours], n, warmup,
                                 pause=False)
    return results, phased, first


def hub_api(hub: Hub, address: str = "") -> str:
    """The hub's API URL as the floor's server asks it (the hub's own port, not the proxy;
    ``address``: where the hub binds it, when not loopback)."""
    return f"http://{address or '127.0.0.1'}:{hub.port + 81}/hub/api"


def burst(n: int, partition: str, interval: float, hub_address: str = "",
          postgres: bool = False) -> dict[str, Any]:
    """``n`` users press Start within one second on one hpcspawner hub."""
    users = tuple(f"hpcb{i:02d}" for i in range(1, n + 1))
    for user in users:
        ensure_user(user)
    squeue = counting_squeue()
    database = f"bench_burst_{secrets.token_hex(3)}" if postgres else ""
    hub = make_hubs(partition, users, squeue, ("hpcspawner",), hub_address,
                    database)["hpcspawner"]
    failures: list[str] = []
    done: dict[str, float] = {}
    landed: dict[str, int] = {}
    try:
        floors = floor_burst(users, hub_api(hub, hub_address))
        before = squeue_calls()
        started = time.time()

        def one(user: str) -> None:
            """POST, then the first 200 through the proxy; every failure is counted."""
            try:
                r = hub.spawn(user)
                if r.status_code not in (201, 202):
                    failures.append(f"{user}: {r.status_code} {r.text[:200]}")
                    return
                done[user] = wait_200(f"{hub.url}/user/{user}/api/status",
                                      {"Authorization": f"token {hub.token}"}, started + 600)
            except BaseException as exc:  # every failure is counted
                failures.append(f"{user}: {exc}")

        threads = [threading.Thread(target=one, args=(u,)) for u in users]
        for i, thread in enumerate(threads):
            thread.start()
            time.sleep(1.0 / n * (i < n - 1))  # all within one second
        for thread in threads:
            thread.join()
        ended = max(done.values(), default=started)
        elapsed = ended - started
        queries = squeue_calls() - before  # all threads are done: this is the burst's own
        landed = where_they_landed(hub, users)
    finally:
        for user in users:
            with contextlib.suppress(Exception):
                hub.stop_server(user)
        for user in users:
            with contextlib.suppress(Exception):
                hub.wait_stopped(user, timeout=60)
        hub.stop()
        hub.stop_proxy()
        if database:
            drop_database(database)
    return {"users": n, "all_ready_s": round(elapsed, 2), "ready": len(done), "landed": landed,
            "failures": failures, "squeue_calls": queries, "floor": floors,
            "squeue_calls_per_fast_interval": round(queries / max(elapsed, 1e-9) * interval, 2)}


# Targets as ratios to the floor measured in the same run (issue 19): they hold on any machine.
P50_RATIO, P50_OVER, P95_OVER = 1.10, 0.3, 0.8
SERVER_OVER = 0.2  # the server's own start inside the job against the floor's
BURST_RATIO = 1.2
CONDOR_WARM_OVER = 1.0  # the HTCondor fast path, warm: p50 ≤ floor p50 + 1.0 s


def said(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(report: dict[str, Any]) -> list[str]:
    """The spawn targets, each said met or NOT met, with the figures they compare."""
    floor50, floor95 = report["floor_p50"], report["floor_p95"]
    ours50, ours95 = report["hpcspawner_p50"], report["hpcspawner_p95"]
    ratio, over50, over95 = ours50 / floor50, ours50 - floor50, ours95 - floor95
    report["targets"] = {"p50_ratio": round(ratio, 3), "p50_over_s": round(over50, 3),
                         "p95_over_s": round(over95, 3)}
    return [f"\ntarget p50 ≤ {P50_RATIO:.2f} × floor p50: {said(ratio <= P50_RATIO)} "
            f"({ratio:.2f} ×: {ours50:.2f} s vs {floor50:.2f} s)",
            f"target p50 ≤ floor p50 + {P50_OVER} s: {said(over50 <= P50_OVER)} "
            f"({over50:+.2f} s)",
            f"target p95 ≤ floor p95 + {P95_OVER} s: {said(over95 <= P95_OVER)} "
            f"({over95:+.2f} s: {ours95:.2f} s vs {floor95:.2f} s)"]


def condor_targets(report: dict[str, Any], name: str) -> list[str]:
    """The HTCondor fast path's target (warm p50 ≤ floor + 1 s) and its cold start."""
    floor50, ours50 = report["floor_p50"], report[f"{name}_p50"]
    over = ours50 - floor50
    report["targets"] = {"warm_p50_over_s": round(over, 3),
                         "cold_over_s": round(report["cold"]["s"] - floor50, 3)}
    return [f"\ntarget warm p50 ≤ floor p50 + {CONDOR_WARM_OVER} s: "
            f"{said(over <= CONDOR_WARM_OVER)} ({over:+.2f} s: {ours50:.2f} s vs "
            f"{floor50:.2f} s)",
            f"cold (the user's first start on this hub): {report['cold']['s']:.2f} s "
            f"({report['cold']['s'] - floor50:+.2f} s over the floor p50)"]


def where_the_time_goes(report: dict[str, Any], name: str,
                        runs: list[dict[str, float]]) -> list[str]:
    """The phases' medians, then each start's seconds by whose they are (their medians) and
    the server's own start against the floor's."""
    medians = phases.medians(runs)
    report[f"{name}_phases_p50"] = {k: round(v, 3) for k, v in medians.items()}
    lines = [f"\n{name}: where the time goes (median seconds after the POST; step)"]
    previous = 0.0
    for phase, at in medians.items():
        lines.append(f"  {phase:<32} {at:>6.2f} s   ({at - previous:+.2f} s)")
        previous = at
    split = [found for found in map(phases.shares, runs) if found]
    if not split:
        return lines
    shares = {k: statistics.median(found[k] for found in split) for k in split[0]}
    report[f"{name}_shares_p50"] = {k: round(v, 3) for k, v in shares.items()}
    lines.append(f"{name}: whose the seconds are (median of each start's share)")
    lines += [f"  {k:<52} {v:>6.2f} s" for k, v in shares.items()]
    if "floor_p50" in report:
        server, floor50 = shares[phases.SERVER], report["floor_p50"]
        lines.append(f"target the server's start inside the job within {SERVER_OVER} s of the "
                     f"floor's: {said(server <= floor50 + SERVER_OVER)} ({server:.2f} s vs "
                     f"{floor50:.2f} s, {server - floor50:+.2f} s)")
    return lines


def where_they_landed(hub: Hub, users: tuple[str, ...]) -> dict[str, int]:
    """How many of the users' servers run on each node (the scheduler's node of each job)."""
    nodes: dict[str, int] = {}
    for user in users:
        model = hub.server_model(user) or {}
        job_id = (model.get("state") or {}).get("job_id", "")
        node = scontrol_job(job_id).get("NodeList", "?") if job_id else "?"
        nodes[node] = nodes.get(node, 0) + 1
    return dict(sorted(nodes.items()))


def floor_burst(users: tuple[str, ...], api: str) -> dict[str, Any]:
    """The burst's physical limit: the floor (the same single-user server, started directly)
    for each of ``users`` within one second, to the last first 200."""
    n = len(users)
    done: dict[str, float] = {}
    failures: list[str] = []
    started = time.time()

    def one(i: int, user: str) -> None:
        try:
            floor = Floor(user, "singleuser", api, port=19900 + i)
            done[user] = started + floor.spawn_once()
        except BaseException as exc:  # every failure is counted
            failures.append(f"{user}: {exc}")

    threads = [threading.Thread(target=one, args=(i, u)) for i, u in enumerate(users)]
    for i, thread in enumerate(threads):
        thread.start()
        time.sleep(1.0 / n * (i < n - 1))
    for thread in threads:
        thread.join()
    return {"users": n, "all_ready_s": round(max(done.values(), default=started) - started, 2),
            "failures": failures}


def ensure_user(name: str) -> None:
    """A benchmark user like alice: own home, in group jupyterusers (the hub's sudoers)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", "-G", "jupyterusers", name],
                       check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="spawns per contender (default 10)")
    parser.add_argument("--quick", action="store_true", help="N=3, one warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--user", default="alice")
    parser.add_argument("--partition", default="jupyter")
    parser.add_argument("--only", default="floor,bare,hpcspawner,batchspawner",
                        help="contenders, comma-separated")
    parser.add_argument("--htcondor", choices=("standin", "real"),
                        help="instead: hpcspawner on the HTCondor fast path (stand-in or pool)")
    parser.add_argument("--burst", type=int, default=0,
                        help="also: this many users press Start within one second")
    parser.add_argument("--hub-address", default="",
                        help="the hub host's address on the node network (scripts/cluster-up "
                        "--nodes prints it): the hubs bind their API there")
    parser.add_argument("--postgres", action="store_true",
                        help="the burst hub's database in the PostgreSQL of scripts/cluster-up "
                        "--nodes (its database host), as a site's")
    parser.add_argument("--burst-partition", default="bench",
                        help="partition of the burst (bench: oversubscribed, all fit at once)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root (the floor starts servers as the user; batchspawner sudoes)",
              file=sys.stderr)
        return 2
    n = 3 if args.quick else args.n
    which = tuple(args.only.split(","))
    report: dict[str, Any] = {"n": n, "user": args.user, "partition": args.partition,
                              "machine": machine()}
    if args.htcondor:
        results, ours, report["cold"] = measure_htcondor(args.htcondor, n, args.warmup,
                                                         args.user)
    elif which != ("",):
        results, ours = measure(n, args.warmup, args.user, args.partition, which)
    else:
        results, ours = {}, []
    if results:
        print(f"\nspawn → first 200 through the proxy, {n} interleaved spawns each "
              f"(after {args.warmup} warm-up), same user, same venv, same run")
        for row in table(results):
            print(row)
    for name, values in results.items():
        report[f"{name}_p50"] = round(statistics.median(values), 3)
        report[f"{name}_p95"] = round(percentile(values, 95), 3)
        report[f"{name}_max"] = round(max(values), 3)
        report[f"{name}_all"] = [round(v, 3) for v in values]
    ours_name = next((k for k in results if k.startswith("hpcspawner")), "")
    if ours:
        for line in where_the_time_goes(report, ours_name, ours):
            print(line)
    if args.htcondor and "floor" in results:
        for line in condor_targets(report, ours_name):
            print(line)
    elif "floor" in results and "hpcspawner" in results:
        for line in targets(report):
            print(line)
    if "batchspawner" in results and "hpcspawner" in results:
        ratio = report["batchspawner_p50"] / report["hpcspawner_p50"]
        print(f"hpcspawner p50 < batchspawner p50: "
              f"{'met' if ratio > 1 else 'NOT met'} (batchspawner takes {ratio:.2f}x)")
    if args.burst:
        found = burst(args.burst, args.burst_partition, 1.0, args.hub_address, args.postgres)
        floors = found["floor"]
        report["burst"] = found
        ratio = found["all_ready_s"] / max(floors["all_ready_s"], 1e-9)
        print(f"\nburst: {found['users']} users within 1 s: all ready after "
              f"{found['all_ready_s']:.1f} s, {found['ready']} ready, "
              f"{len(found['failures'])} failed; squeue calls {found['squeue_calls']} "
              f"({found['squeue_calls_per_fast_interval']} per 1 s fast poll interval)")
        print("where they landed: " + ", ".join(f"{node} {count}" for node, count in
                                                  found["landed"].items()))
        print(f"floor burst: {floors['users']} servers started directly as {floors['users']} "
              f"users within 1 s: all answering after {floors['all_ready_s']:.1f} s, "
              f"{len(floors['failures'])} failed")
        ok = ratio <= BURST_RATIO and not found["failures"]
        print(f"target burst ≤ {BURST_RATIO} × the floor's burst, 0 failed: {said(ok)} "
              f"({ratio:.2f} ×)")
        for failure in found["failures"] + floors["failures"]:
            print(f"  failed: {failure}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("spawn_latency.json" if not args.htcondor
                     else f"spawn_latency_htcondor_{args.htcondor}.json")
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: {out.relative_to(REPO)}")
    return 0


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "slurm": subprocess.run(["sinfo", "--version"], capture_output=True,
                                    text=True).stdout.strip()}


if __name__ == "__main__":
    sys.exit(main())
