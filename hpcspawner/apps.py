"""What runs inside the job for a profile's app, and where the user lands.

Every app runs the site's single-user server (``c.Spawner.cmd``, normally
jupyterhub-singleuser): it is what JupyterHub authenticates, so only the server's owner (and
admins with the access scope) ever reach the app. A desktop or a dashboard is a process that
jupyter-server-proxy starts inside that server and serves under ``/user/NAME/APP/``:

- ``notebook``: the server itself (its own default URL).
- ``desktop``: jupyter-remote-desktop-proxy (TigerVNC on a private Unix socket + noVNC); the
  session is ``xstartup`` (the profile's, else the one shipped in ``hpcspawner/share``).
- ``streamlit``: ``streamlit run SCRIPT`` on a private Unix socket; SCRIPT is fixed by the
  profile or named by the user (a file in their home, checked before any job is submitted).
- an app the site defines under ``apps:`` in profiles.yaml (a command with ``{unix_socket}``
  (``{port}`` is refused: anyone on the node can take a TCP port), the URL the user lands on,
  the path that answers once it is ready).

The job learns its app from its environment (public, no secret): ``HPCSPAWNER_APP``, the
jupyter-server-proxy entry as JSON in ``HPCSPAWNER_SERVER_PROXY`` (read by the config file in
``share/jupyter``, which the launcher puts on ``JUPYTER_CONFIG_PATH``), and the ready path in
``HPCSPAWNER_APP_READY``: before reporting, the launcher asks that path through the server, so
"ready" means the app answers. Paths inside the package (the config file, the default desktop
session) are resolved by the launcher (launcher.app_environment) in the job's own Python,
which may not be the hub's.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .contract import Env
from .profiles import CustomApp, Profile

SCRIPT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+@%,-]*(/[A-Za-z0-9_][A-Za-z0-9_.+@%,-]*)*$")


class ScriptError(ValueError):
    """The script a user named cannot be run; the message says why, for the user."""


@dataclass(frozen=True)
class Launch:
    """How one server runs its app: the job's extra environment, the URL the user lands on
    and the path the launcher waits for."""

    app: str = "notebook"
    env: Mapping[str, str] = field(default_factory=dict)
    url: str = ""  # the server's default URL ("" = the server's own default)
    ready_path: str = ""  # relative to the server's prefix; "" = listening is enough
    title: str = "Notebook"


def resolve_cmd(cmd: Sequence[str], python: str) -> list[str]:
    """A bare program name (``jupyterhub-singleuser``) is looked up beside the job's Python.

    sudo's secure_path drops the hub's PATH, so a bare name would not be found in the job.
    """
    words = list(cmd)
    if words and "/" not in words[0]:
        words[0] = posixpath.join(posixpath.dirname(python), words[0])
    return words


def server_command(cmd: Sequence[str], args: Sequence[str], python: str) -> list[str]:
    """The single-user server's command line (the same for every app)."""
    return [*resolve_cmd(cmd, python), *args]


def proxied(app: str, entry: Mapping[str, object], *, url: str, ready_path: str,
            title: str) -> Launch:
    """A Launch whose app jupyter-server-proxy runs inside the server."""
    return Launch(app=app, env={Env.APP: app, Env.SERVER_PROXY: json.dumps(
        {app: dict(entry)}, sort_keys=True)}, url=url, ready_path=ready_path, title=title)


def launch_for(profile: Profile, apps: Mapping[str, CustomApp], python: str,
               script: str = "") -> Launch:
    """The Launch of ``profile``'s app; ``script`` is the user's checked streamlit script."""
    choice = profile.app
    bin_dir = posixpath.dirname(python)
    if choice.name == "notebook":
        return Launch(url=choice.url or "")
    if choice.name == "desktop":
        env = {Env.APP: "desktop"}
        if choice.xstartup:
            env[Env.XSTARTUP] = choice.xstartup
        return Launch(app="desktop", url="/desktop/", title="Remote desktop", env=env)
    if choice.name == "streamlit":
        path = choice.script or script
        if not path:
            raise ScriptError("This profile runs a dashboard from your home directory: name "
                              "its script (e.g. dashboards/app.py).")
        entry = {
            "command": [posixpath.join(bin_dir, "streamlit"), "run", path,
                        "--server.address", "unix://{unix_socket}",
                        "--server.baseUrlPath", "{base_url}streamlit",
                        "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            "unix_socket": True, "absolute_url": True, "timeout": float(choice.timeout),
            "launcher_entry": {"title": "Dashboard"},
        }
        return proxied("streamlit", entry, url="/streamlit/",
                       ready_path="streamlit/_stcore/health", title="Dashboard")
    custom = apps[choice.name]
    command = list(custom.command)  # found on the job's PATH (the jobs' Python's dir first)
    entry = {
        "command": command, "timeout": float(custom.timeout), "absolute_url": custom.absolute_url,
        "unix_socket": True,
        "launcher_entry": {"title": custom.title or choice.name},
    }
    url = custom.url or f"/{choice.name}/"
    ready = (custom.ready_path or url).lstrip("/")
    return proxied(choice.name, entry, url=url, ready_path=ready,
                   title=custom.title or choice.name)


def check_script_path(raw: object, home: str) -> str:
    """The absolute path of the streamlit script a user named, or ScriptError saying why not.

    Only the name is checked here (relative to the home, or absolute inside it; no ``..``,
    nothing a shell would read specially; ``.py``); that the file exists and the user can read
    it is checked as the user (``hpcspawner-helper check-script``) before anything is submitted.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ScriptError("Name the dashboard's script, a .py file in your home directory "
                          "(e.g. dashboards/app.py).")
    text = raw.strip()
    shown = text if len(text) <= 120 else text[:117] + "..."
    home = posixpath.normpath(home)
    if text.startswith("~/"):
        text = text[2:]
    elif text.startswith("/"):
        if not text.startswith(home.rstrip("/") + "/"):
            raise ScriptError(f"The script {shown!r} is not in your home directory ({home}); "
                              "name a file there, e.g. dashboards/app.py.")
        text = text[len(home.rstrip("/")) + 1:]
    if ".." in text.split("/"):
        raise ScriptError(f"The script {shown!r} may not contain '..'; name it from your home "
                          "directory, e.g. dashboards/app.py.")
    if not SCRIPT_RE.match(text) or len(text) > 255:
        raise ScriptError(f"The script {shown!r} has characters a script name may not have; "
                          "use letters, digits and _ . - + @ % , and / between folders.")
    if not text.endswith(".py"):
        raise ScriptError(f"The script {shown!r} is not a Python file (.py).")
    return posixpath.join(home, text)
