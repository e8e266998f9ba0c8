"""What a server's job uses now (memory and CPU), for its session card (docs/sessions.md).

The server's Jupyter extension (server_extension.py) measures the job's processes (the launcher and
everything under it) every ``REPORT_EVERY`` seconds and tells the hub with the server's own
token; the hub keeps the last answer in memory and the card shows it against the job's
limits. The numbers come from the job's owner: shown to people, never used to decide
anything.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from .units import show_size

REPORT_EVERY = 30.0  # seconds between two measures a server sends
MAX_MEMORY = 2**50  # what a report may say at most (1 PiB; anything above is a lie)
MAX_CORES = 4096.0


@dataclass(frozen=True)
class Usage:
    memory: int  # bytes resident now
    cores: float  # CPU cores busy, on average since the last measure
    at: float  # when the hub was told (epoch)


def parse(body: Any, now: float) -> Usage:
    """A server's report ``{"memory": BYTES, "cores": N}``; ValueError with what is wrong."""
    if not isinstance(body, dict):
        raise ValueError('send {"memory": BYTES, "cores": N}')
    memory, cores = body.get("memory"), body.get("cores")
    if isinstance(memory, bool) or not isinstance(memory, int) or not 0 <= memory <= MAX_MEMORY:
        raise ValueError(f"memory must be a whole number of bytes from 0 to {MAX_MEMORY}")
    if isinstance(cores, bool) or not isinstance(cores, (int, float)) or \
            not math.isfinite(cores) or not 0 <= cores <= MAX_CORES:
        raise ValueError(f"cores must be a number from 0 to {MAX_CORES:g}")
    return Usage(memory=memory, cores=float(cores), at=now)


def words(usage: Usage | None, resources: Any, now: float) -> str:
    """"1.2 GiB of 12 GiB memory, 0.4 of 1 core (20 s ago)"; "" when none is recent."""
    if usage is None or resources is None or now - usage.at > 3 * REPORT_EVERY:
        return ""
    cores = resources.cores
    return (f"{about(usage.memory)} of {show_size(resources.memory)} memory, "
            f"{usage.cores:.1f} of {cores} core{'s' if cores != 1 else ''} "
            f"({max(0, round(now - usage.at))} s ago)")


def about(size: int) -> str:
    """A measured size, rounded for people: 1.5 GiB, 420 MiB."""
    if size >= 2**30:
        return f"{size / 2**30:.1f} GiB"
    return f"{round(size / 2**20)} MiB"


class Meter:
    """Measures a process and everything under it (psutil); cores busy between two calls."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self._last: tuple[float, float] | None = None  # (monotonic, CPU seconds)

    def measure(self) -> dict[str, float | int] | None:
        """``{"memory": BYTES, "cores": N}``; None when the processes cannot be read."""
        try:
            import psutil

            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except Exception:  # psutil missing, or the launcher gone: nothing to say
            return None
        memory, cpu = 0, 0.0
        for proc in procs:
            try:
                memory += proc.memory_info().rss
                times = proc.cpu_times()
                cpu += times.user + times.system
            except Exception:  # a process that ended between the listing and the read
                continue
        now = time.monotonic()
        last, self._last = self._last, (now, cpu)
        cores = 0.0
        if last is not None and now > last[0]:
            cores = max(0.0, (cpu - last[1]) / (now - last[0]))
        return {"memory": memory, "cores": round(cores, 2)}
