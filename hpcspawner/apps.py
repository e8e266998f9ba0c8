"""What runs inside the job for a profile's app.

Today: ``notebook`` (the site's ``c.Spawner.cmd``, normally jupyterhub-singleuser). The
launcher is app-agnostic (it picks a port, substitutes ``{port}``, waits for it to listen),
so a desktop or a Streamlit app is one more entry here, not a new launcher.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence


def resolve_cmd(cmd: Sequence[str], python: str) -> list[str]:
    """A bare program name (``jupyterhub-singleuser``) is looked up beside the job's Python.

    sudo's secure_path drops the hub's PATH, so a bare name would not be found in the job.
    """
    words = list(cmd)
    if words and "/" not in words[0]:
        words[0] = posixpath.join(posixpath.dirname(python), words[0])
    return words


def app_command(app: str, cmd: Sequence[str], args: Sequence[str], python: str) -> list[str]:
    if app == "notebook":
        return [*resolve_cmd(cmd, python), *args]
    raise ValueError(f"unknown app '{app}'")
