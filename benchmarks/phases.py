"""Where a spawn's time goes: the moments of one start, read from the hub's log and the
launcher's (the job's output), as seconds after the REST POST.

The hub's lines (JupyterHub's format, local time, milliseconds)::

    [I 2026-12-01 00:06:43.123 JupyterHub spawner:473] alice: Submitted job 41 to ...

The launcher's lines (hpcspawner/launcher.py ``say``, UTC)::

    [hpcspawner-launcher 2026-12-01T00:06:43.456Z] started (Python 3.11.2)
"""

from __future__ import annotations

import calendar
import re
import statistics
import time
from collections.abc import Callable, Iterable

HUB_LINE = re.compile(r"^\[\w (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) [^\]]*\] (.*)$")
LAUNCHER_LINE = re.compile(r"^\[hpcspawner-launcher (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z\] "
                           r"(.*)$")

# (phase, where it is logged, what the line contains) in the order a start passes them
PHASES = (
    ("submit returned", "hub", "Submitted job"),
    ("job seen running", "hub", "Running on node"),
    ("launcher started", "launcher", "started (Python"),
    ("server started", "launcher", "starting "),
    ("server listening", "launcher", "the server listens"),
    ("report received", "hub", "the launcher reported port"),
    ("proxy route added", "hub", "Adding user {user} to proxy"),
)


def _stamped(text: str, pattern: re.Pattern[str], stamp_format: str,
             to_epoch: Callable[[time.struct_time], float]) -> list[tuple[float, str]]:
    """(epoch, message) of every line ``pattern`` matches: (stamp, milliseconds, message)."""
    out = []
    for line in text.splitlines():
        found = pattern.match(line)
        if found:
            stamp = to_epoch(time.strptime(found.group(1), stamp_format))
            out.append((stamp + int(found.group(2)) / 1000, found.group(3)))
    return out


def hub_lines(text: str) -> list[tuple[float, str]]:
    return _stamped(text, HUB_LINE, "%Y-%m-%d %H:%M:%S", time.mktime)  # local time


def launcher_lines(text: str) -> list[tuple[float, str]]:
    return _stamped(text, LAUNCHER_LINE, "%Y-%m-%dT%H:%M:%S", calendar.timegm)  # UTC


def phases(hub_log: str, launcher_log: str, user: str, posted: float,
           answered: float) -> dict[str, float]:
    """Seconds after ``posted`` at which each phase was first logged (for this spawn: lines
    from before the POST are not its own), and the first answer through the proxy."""
    lines = {"hub": hub_lines(hub_log), "launcher": launcher_lines(launcher_log)}
    found: dict[str, float] = {}
    for name, where, words in PHASES:
        words = words.format(user=user)
        for stamp, message in lines[where]:
            # the hub's log has milliseconds; allow for rounding at the POST itself
            if stamp >= posted - 0.001 and words in message and (
                    where == "launcher" or f"{user}" in message):
                found[name] = stamp - posted
                break
    found["first answer through the proxy"] = answered - posted
    return found


def job_id(hub_log: str, user: str, posted: float) -> str:
    """The job the hub submitted for ``user`` after ``posted`` ('' if none)."""
    for stamp, message in hub_lines(hub_log):
        found = re.search(r"Submitted job (\d+)", message)
        if stamp >= posted - 0.001 and found and user in message:
            return found.group(1)
    return ""


# Whose each second of a start is (issue 19): the scheduler's, from the submission to the
# launcher's first line; the server's, from its start to its socket; hpcspawner's, the rest
# (the POST to the submission, the launcher's own start, the report, the route).
OURS, SCHEDULER, SERVER = ("hpcspawner (submit, launcher, report, route)",
                           "the scheduler (submit returned → launcher started)",
                           "the server (server started → listening)")


def shares(run: dict[str, float]) -> dict[str, float]:
    """One start's seconds by whose they are; {} when a phase is missing."""
    needed = ("submit returned", "launcher started", "server started", "server listening",
              "first answer through the proxy")
    if any(name not in run for name in needed):
        return {}
    scheduler = run["launcher started"] - run["submit returned"]
    server = run["server listening"] - run["server started"]
    ours = run["first answer through the proxy"] - scheduler - server
    return {OURS: ours, SCHEDULER: scheduler, SERVER: server}


def medians(runs: Iterable[dict[str, float]]) -> dict[str, float]:
    """The median of each phase over the runs that logged it, in the order of PHASES."""
    runs = list(runs)
    order = [name for name, _, _ in PHASES] + ["first answer through the proxy"]
    return {name: statistics.median(r[name] for r in runs if name in r)
            for name in order if any(name in r for r in runs)}
