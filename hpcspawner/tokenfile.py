"""Hand the server's API token (and the environment that must not be public) to the job
through a file only the user can read.

The token never appears on a command line (`ps`), in the job script, or in the scheduler's
records (`scontrol show job`, `condor_q -l`). `hpcspawner-helper write-token`, run AS THE USER
through the same sudo prefix as the submit command, creates the 0700 job directory (and its
logs/) in the user's home and the 0600 file, with the token on stdin; the launcher deletes it
after reading it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from .backends.base import Backend
from .contract import secrets_text


async def write_token_file(backend: Backend, username: str, path: str, token: str,
                           env: Mapping[str, str] | None = None) -> None:
    """Write the token and ``env`` to ``path`` (in the job directory, whose logs/ is created
    too)."""
    await backend.helper_as_user(username, ["write-token", *posixpath.split(path)],
                                 input=secrets_text(token, env or {}))


async def remove_file(backend: Backend, username: str, path: str) -> None:
    await backend.helper_as_user(username, ["remove-token", *posixpath.split(path)])
