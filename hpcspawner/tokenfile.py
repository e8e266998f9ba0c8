"""Hand the server's API token to the job through a file only the user can read.

The token never appears on a command line (`ps`), in the job script, or in the scheduler's
records (`scontrol show job`, `condor_q -l`). The file is written AS THE USER, through the
same prefix as sbatch/condor_submit, inside a 0700 directory, with umask 077, the token on
stdin; the launcher deletes it after reading it.
"""

from __future__ import annotations

import posixpath

from .backends.base import Backend

# Constant program text; the path is passed as "$1", never pasted into the string.
_WRITE_STDIN = 'umask 077 && exec cat > "$1"'


async def write_token_file(backend: Backend, username: str, path: str, token: str,
                           also_dirs: list[str] | None = None) -> None:
    """Create the 0700 job directory (and ``also_dirs``, e.g. logs/) and write the token."""
    directories = [posixpath.dirname(path), *(also_dirs or [])]
    await backend.as_user(username, ["install", "-d", "-m", "0700", *directories],
                          hint="the user's home must exist on the hub host and the job nodes")
    await backend.as_user(username, ["sh", "-c", _WRITE_STDIN, "hpcspawner-token", path],
                          input=token)


async def remove_file(backend: Backend, username: str, path: str) -> None:
    await backend.as_user(username, ["rm", "-f", "--", path])
