"""Running scheduler commands: a command that hangs past its timeout leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hpcspawner.commands import CommandError, run_command


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text()
    return status[status.rfind(")") + 2] != "Z"


async def timed_out(script: str, timeout: float) -> CommandError:
    """The error of a command that hangs; it must come soon after the timeout (a child left
    holding the output pipe would keep the hub's poll loop waiting for it)."""
    try:
        await asyncio.wait_for(run_command(["sh", "-c", script], timeout=timeout),
                               timeout + 5)
    except CommandError as exc:
        return exc
    raise AssertionError("the command did not time out")


async def gone(pids: list[int], within: float) -> list[int]:
    """The pids still alive after ``within`` seconds (checked while the hub's loop runs)."""
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_a_timeout_ends_the_whole_process_group(tmp_path: Path) -> None:
    """Like sudo running squeue: the child of the command must go too, not only the command."""
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"

    async def scenario() -> list[int]:
        error = await timed_out(script, 1)
        assert "timed out: no answer within 1 s" in str(error)
        return await gone([int(p) for p in pids.read_text().split()], within=5)

    assert asyncio.run(scenario()) == []


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"trap '' TERM; sh -c 'trap \"\" TERM; sleep 60' & echo $! > {pids}; wait"

    async def scenario() -> list[int]:
        await timed_out(script, 0.5)
        return await gone([int(pids.read_text())], within=6)

    assert asyncio.run(scenario()) == []


def test_a_failing_command_names_itself_and_its_error() -> None:
    with pytest.raises(CommandError) as failed:
        asyncio.run(run_command(["sh", "-c", "echo 'no such partition' >&2; exit 3"]))
    assert str(failed.value) == ("`sh -c 'echo '\"'\"'no such partition'\"'\"' >&2; exit 3'` "
                                 "exited with 3: no such partition")
