"""Hub-side cost of many running servers: CPU per poll cycle and memory per server.

N HPCSpawners are attached to N running jobs (as after a hub restart) of a fake SLURM whose
squeue answers at once with N framed records, so what is measured is the hub's own work:
one poll cycle is the shared poller's query (parsing N records) and one poll() of every
spawner, as JupyterHub makes them once per poll_interval. The fake scheduler's own time to
print its answer is measured and taken out.

    /opt/hpcspawner/venv/bin/python -m benchmarks.hub_scale --sizes 1000,5000

Needs no cluster. Target (issue 13): one cycle of 5,000 servers < 10 % of the slow poll
interval (30 s), growth linear or better.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

from traitlets.config import Config

from hpcspawner import shared
from hpcspawner.backends.slurm import SlurmBackend
from hpcspawner.commands import Result

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
HUB = SimpleNamespace(public_host="", url="http://127.0.0.1:8081/hub/",
                      api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/")
SLOW_POLL = 30.0


class FakeSlurm(SlurmBackend):
    """squeue of N running jobs, answered in-process; its own time is counted apart."""

    records: ClassVar[list[str]] = []
    spent = 0.0  # CPU seconds the fake spent printing answers

    async def as_hub(self, argv: list[str], *, check: bool = True) -> Result:
        began = time.process_time()
        if argv[0] == self.squeue:
            fmt = argv[argv.index("-o") + 1]
            head, tail = fmt.split("|", 1)[0], fmt.rsplit("|", 1)[1]
            out = "".join(f"{head}|{r}|{tail}\n" for r in self.records)
            result = Result(argv, 0, out, "")
        else:  # scontrol show config: no PrivateData
            result = Result(argv, 0, "", "")
        FakeSlurm.spent += time.process_time() - began
        return result


def spawners(n: int) -> list[Any]:
    from hpcspawner.spawner import HPCSpawner

    FakeSlurm.records = [f"{1000 + i}|RUNNING|None|vm|u{i}|2026-12-01T00:00:00|"
                         f"hpcspawner:scale:u{i}:" for i in range(n)]
    c = Config()
    c.HPCSpawner.profiles_path = str(REPO / "profiles.yaml")
    c.HPCSpawner.hub_id = "scale"
    c.HPCSpawner.orphan_grace = 3600
    c.HPCSpawner.slow_poll_interval = SLOW_POLL
    shared.reset()
    shared.use_backend("slurm", FakeSlurm(config=c))
    out = []
    for i in range(n):
        s = HPCSpawner(user=SimpleNamespace(name=f"u{i}", url=f"/user/u{i}/", groups=[]),
                       hub=HUB, config=c)
        s.load_state({"job_id": str(1000 + i), "backend": "slurm", "profile": "small",
                      "tag": f"hpcspawner:scale:u{i}:", "address": ["vm", 40000 + i % 20000],
                      "runtime": 43200, "ends_at": time.time() + 43200})
        out.append(s)
    return out


async def cycle(items: list[Any]) -> float:
    """CPU seconds of one poll cycle: the shared query and every spawner's poll()."""
    poller = items[0].job.ctx.poller
    spent_before = FakeSlurm.spent
    began = time.process_time()
    await poller.refresh()
    results = await asyncio.gather(*(s.poll() for s in items))
    cpu = time.process_time() - began - (FakeSlurm.spent - spent_before)
    lost = sum(1 for r in results if r is not None)
    if lost:
        raise SystemExit(f"{lost} polls said a running server was gone")
    return cpu


def measure(n: int, cycles: int) -> dict[str, float]:
    spawners(10)  # warm: imports, the profiles file, class-level traitlets caches
    shared.reset()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    items = spawners(n)
    gc.collect()
    per_server = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()

    async def run() -> list[float]:
        try:
            await cycle(items)  # warm: first parse, profile file read
            return [await cycle(items) for _ in range(cycles)]
        finally:
            shared.reset()

    times = asyncio.run(run())
    best = min(times)
    return {"servers": n, "cpu_per_cycle_s": round(best, 4),
            "cpu_per_server_us": round(best / n * 1e6, 1),
            "memory_per_server_kib": round(per_server / 1024, 1),
            "share_of_slow_poll": round(best / SLOW_POLL, 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--cycles", type=int, default=3)
    args = parser.parse_args(argv)
    rows = [measure(int(n), args.cycles) for n in args.sizes.split(",")]
    print(f"\nhub-side cost per poll cycle (one shared squeue + every server's poll; fake "
          f"scheduler's own time taken out; best of {args.cycles})")
    print(f"{'servers':>8} {'CPU/cycle':>10} {'per server':>11} {'memory/server':>14} "
          f"{'of 30 s poll':>13}")
    for r in rows:
        print(f"{r['servers']:>8} {r['cpu_per_cycle_s']:>9.3f}s {r['cpu_per_server_us']:>9.0f}µs "
              f"{r['memory_per_server_kib']:>11.1f}KiB {r['share_of_slow_poll']:>12.1%}")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = (last["cpu_per_cycle_s"] / first["cpu_per_cycle_s"]) / (
            last["servers"] / first["servers"])
        met = "met" if last["share_of_slow_poll"] < 0.1 else "NOT met"
        print(f"CPU grows {growth:.2f}x as fast as the number of servers (1.00 = linear); "
              f"{last['servers']} servers: {last['share_of_slow_poll']:.1%} of the slow poll "
              f"interval (target < 10 %: {met})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hub_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
