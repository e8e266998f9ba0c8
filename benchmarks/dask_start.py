"""Time from ``cluster(workers=N)`` to N Dask workers connected, in alice's notebook on the
local SLURM cluster, beside dask-jobqueue's own ``SLURMCluster`` configured by hand in the
same kernel and the same run (the figure to beat), for N = 2 and 20. Printed as seconds and
as the ratio to the hand-made cluster; nothing is asserted here (docs/dask.md).

    python -m benchmarks.dask_start [--sizes 2,20] [--repeat 2]

Both clusters ask for the same worker jobs (1 core, 1 GiB, partition bench, one worker
process per job); hpcspawner's adds TLS and the hub's tag. The kernel is alice's, in her
server's batch job, reached through the hub as JupyterLab does (tests/e2e/kernel.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from tests.e2e.kernel import Kernel
from tests.e2e.test_dask_e2e import PROFILES  # "many": workers of "tiny", 1 core, 1 GiB, bench
from tests.hubtools import Hub, new_hub_dir, run, squeue, wait_for

OURS = """
import time
from hpcspawner.dask import cluster
t0 = time.monotonic()
c = cluster(workers={n})
c.get_client().wait_for_workers({n}, timeout=600)
took = time.monotonic() - t0
c.close()
print(took)
"""
BY_HAND = """
import socket, time
from dask_jobqueue import SLURMCluster
from distributed import Client
t0 = time.monotonic()
c = SLURMCluster(queue="bench", cores=1, processes=1, memory="1GiB", walltime="01:00:00",
                 job_name="dask-by-hand", log_directory="/tmp",
                 scheduler_options={{"host": socket.gethostbyname(socket.gethostname())}})
c.scale({n})
Client(c).wait_for_workers({n}, timeout=600)
took = time.monotonic() - t0
c.close()
print(took)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="2,20")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    hub = Hub(new_hub_dir("dask-bench"), profiles=PROFILES, hub_id="daskbench")
    hub.start()
    results: dict[int, dict[str, list[float]]] = {}
    try:
        assert hub.spawn("alice", {"profile": "many"}).status_code in (201, 202)
        hub.wait_ready("alice", timeout=120)
        kernel = Kernel(hub, "alice")
        for n in sizes:
            results[n] = {"hpcspawner": [], "by hand": []}
            for _ in range(args.repeat):  # alternate, so both see the same machine
                for name, code in (("by hand", BY_HAND), ("hpcspawner", OURS)):
                    took = float(kernel.run(code.format(n=n), timeout=900).split()[-1])
                    results[n][name].append(took)
                    wait_for("the workers to leave the queue", lambda: len(squeue(
                        hub.hub_id)) <= 1 and not _by_hand_jobs(), timeout=120)
    finally:
        hub.stop_server("alice")
        hub.stop()
        hub.stop_proxy()
    print("\ncluster(workers=N) to N workers connected, alice's notebook, local SLURM "
          "(median of runs, seconds)")
    print(f"{'N':>4} {'by hand':>9} {'hpcspawner':>11} {'ratio':>7}")
    for n, got in results.items():
        hand, ours = statistics.median(got["by hand"]), statistics.median(got["hpcspawner"])
        print(f"{n:>4} {hand:>9.1f} {ours:>11.1f} {ours / hand:>6.2f}×")
    print(json.dumps({str(n): got for n, got in results.items()}))
    return 0


def _by_hand_jobs() -> bool:
    return "dask-by-hand" in run(["squeue", "-h", "-o", "%j"]).stdout


if __name__ == "__main__":
    sys.exit(main())
