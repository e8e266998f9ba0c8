"""What a server tells the hub its job uses (job_usage.py): read strictly, shown against the
job's limits while recent, measured over the launcher's process tree."""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from hpcspawner.job_usage import MAX_MEMORY, REPORT_EVERY, Meter, Usage, parse, words

GIB = 2**30
SMALL = SimpleNamespace(cores=1, memory=12 * GIB)


def test_a_report_is_read_and_shown_against_the_limits_while_recent() -> None:
    told = parse({"memory": 3 * GIB // 2, "cores": 0.42}, now=1000.0)
    assert told == Usage(memory=3 * GIB // 2, cores=0.42, at=1000.0)
    assert words(told, SMALL, now=1020.0) == \
        "1.5 GiB of 12 GiB memory, 0.4 of 1 core (20 s ago)"
    assert words(told, SimpleNamespace(cores=4, memory=8 * GIB), now=1000.0).endswith(
        "0.4 of 4 cores (0 s ago)")
    assert words(told, SMALL, now=1000.0 + 3 * REPORT_EVERY + 1) == ""  # the server went quiet
    assert words(None, SMALL, now=1000.0) == ""


@pytest.mark.parametrize(("body", "says"), [
    ([1, 2], "send {"),
    ({"memory": -1, "cores": 0}, "memory must be"),
    ({"memory": MAX_MEMORY + 1, "cores": 0}, "memory must be"),
    ({"memory": True, "cores": 0}, "memory must be"),
    ({"memory": 1.5, "cores": 0}, "memory must be"),
    ({"memory": 1, "cores": float("nan")}, "cores must be"),
    ({"memory": 1, "cores": 1e9}, "cores must be"),
    ({"memory": 1, "cores": "2"}, "cores must be"),
])
def test_a_forged_report_is_refused_with_what_is_wrong(body: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse(body, now=0.0)


def test_the_meter_counts_the_whole_tree_under_the_launcher() -> None:
    """A child that holds 64 MiB and spins counts: memory and CPU of the tree, not the root."""
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nx = bytearray(64 * 2**20)\nprint('ready', flush=True)\n"
        "end = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        meter = Meter(os.getpid())
        first = meter.measure()
        assert first is not None and first["memory"] >= 64 * 2**20 and first["cores"] == 0
        spin = subprocess.run([sys.executable, "-c", "import time\nend = time.monotonic() + "
                               "0.5\nwhile time.monotonic() < end: pass\n"])
        assert spin.returncode == 0
        second = meter.measure()
        assert second is not None and second["cores"] > 0.2  # the spinning child
    finally:
        child.kill()
        child.wait()
    assert Meter(2**22 + 12345).measure() is None  # no such process: nothing said
