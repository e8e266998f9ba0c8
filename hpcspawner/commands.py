"""The one way the hub runs a program: an argv list, never a shell string. (Two programs run
elsewhere: the launcher inside the job starts the server itself, and hpcspawner-helper, as the
user, runs the scheduler commands it has checked by descriptor: helper.run.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .oneline import one_line


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

    def said(self, limit: int = 300) -> str:
        """What the command printed (its error, else its output) as one line of words, cut
        after ``limit`` characters: a scheduler's refusal for a sentence a user reads."""
        return one_line(" ".join((self.stderr or self.stdout).split()), limit)


MAX_OUTPUT = 64 * 1024 * 1024  # bytes a command may print before it counts as failed


async def run_command(
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    check: bool = True,
    hint: str = "",
    max_output: int = MAX_OUTPUT,
) -> Result:
    """Run ``argv``; feed ``input`` on stdin. Raise CommandError on failure when ``check``.

    A command that prints more than ``max_output`` bytes (a scheduler listing a flood of
    other users' jobs) is ended and fails like one that does not answer: the hub never holds
    more than that of one answer."""
    argv = [str(a) for a in argv]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            start_new_session=True,  # its own process group: a timeout ends all of it
        )
    except OSError as exc:
        raise CommandError(argv, 127, exc.strerror or str(exc), hint) from None
    try:
        out, err = await asyncio.wait_for(_talk(proc, input, max_output), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError, TooMuchOutput) as exc:
        await end_group(proc)
        if isinstance(exc, asyncio.CancelledError):
            raise
        why = str(exc) if isinstance(exc, TooMuchOutput) else f"no answer within {timeout:.0f} s"
        raise CommandError(argv, None, why, hint) from None
    result = Result(argv, proc.returncode or 0, out.decode(errors="replace"),
                    err.decode(errors="replace"))
    if check and result.returncode != 0:
        raise CommandError(argv, result.returncode, result.stderr or result.stdout, hint)
    return result


class TooMuchOutput(Exception):
    """A command printed more than the hub reads of one answer."""


async def _talk(proc: asyncio.subprocess.Process, input: str | None,
                limit: int) -> tuple[bytes, bytes]:
    async def feed() -> None:
        if input is not None and proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                proc.stdin.write(input.encode())
                await proc.stdin.drain()
            proc.stdin.close()

    async def read(stream: asyncio.StreamReader | None) -> bytes:
        chunks, size = [], 0
        while stream is not None:
            chunk = await stream.read(1 << 16)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise TooMuchOutput(f"printed more than {limit} bytes; not read")
            chunks.append(chunk)
        return b"".join(chunks)

    _, out, err = await asyncio.gather(feed(), read(proc.stdout), read(proc.stderr))
    await proc.wait()
    return out, err


async def end_group(proc: asyncio.subprocess.Process, grace: float = 2.0) -> None:
    """SIGTERM the command's whole process group (sudo passes it on to the scheduler client
    it runs as the user), then SIGKILL whatever of the group is left after ``grace`` s."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()


def expand_prefix(prefix: Sequence[str], username: str) -> list[str]:
    """``["sudo", "-n", "-u", "{username}", "--"]`` -> the argv prefix for one user."""
    return [part.replace("{username}", username) for part in prefix]


# What commands run as a user (the submit command, hpcspawner-helper) keep of the hub's
# environment: where commands are, and the language (each backend adds where its scheduler's
# configuration is: Backend.config_env).
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TZ")


def bare_environment(keep: Sequence[str] = KEEP_ENV) -> dict[str, str]:
    """The environment of a command run as a user: only the ``keep`` variables of the hub's.
    Nothing else of the hub's (a proxy token, a database URL) may sit in a process the user
    owns, or in a SLURM job, which starts from sbatch's environment (``--export=ALL``)."""
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    return env
