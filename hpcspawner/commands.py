"""The one way hpcspawner runs a program: an argv list, never a shell string."""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class CommandError(Exception):
    """A scheduler command failed; the message names the command, exit code and stderr."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr: str, hint: str = ""):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr.strip()
        self.hint = hint
        where = shlex.join(self.argv)
        status = "timed out" if returncode is None else f"exited with {returncode}"
        text = f"`{where}` {status}"
        if self.stderr:
            text += f": {self.stderr}"
        if hint:
            text += f" — {hint}"
        super().__init__(text)


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


async def run_command(
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    check: bool = True,
    hint: str = "",
) -> Result:
    """Run ``argv``; feed ``input`` on stdin. Raise CommandError on failure when ``check``."""
    argv = [str(a) for a in argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
        )
    except OSError as exc:
        raise CommandError(argv, 127, exc.strerror or str(exc), hint) from None
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(input.encode() if input is not None else None), timeout
        )
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandError(argv, None, f"no answer within {timeout:.0f} s", hint) from None
    result = Result(argv, proc.returncode or 0, out.decode(errors="replace"),
                    err.decode(errors="replace"))
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stderr or result.stdout, hint)
    return result


def expand_prefix(prefix: Sequence[str], username: str) -> list[str]:
    """``["sudo", "-n", "-u", "{username}", "--"]`` -> the argv prefix for one user."""
    return [part.replace("{username}", username) for part in prefix]


def clean_env() -> dict[str, str]:
    """Environment for scheduler commands: the hub's, so PATH and SLURM_CONF stay as set."""
    return dict(os.environ)
