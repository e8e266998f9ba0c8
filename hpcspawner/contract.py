"""What crosses between the hub and the job, defined once and imported by both sides (the
launcher inside the job, the spawner, the report route, the backends, the helper). Standard
library only, cheap to import: the launcher loads it before the server starts."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

# -- the tag on every job (SLURM comment, HTCondor attribute): which hub, user and server ----
TAG_ROOT = "hpcspawner:"  # what every tag starts with
MAX_HUB_ID, MAX_USER, MAX_SERVER = 64, 64, 255  # characters of each part of a tag
MAX_TAG = 512  # a tag is shorter (its three parts, their colons, and a worker's suffix)
# a hub's id (c.HPCSpawner.hub_id): the one rule, for the hub's setting and the helper's check
HUB_ID_RE = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_HUB_ID}}}")
_TAG_RE = re.compile(rf"{re.escape(TAG_ROOT)}(?P<hub>{HUB_ID_RE.pattern})"
                     rf":(?P<user>[^:]{{1,{MAX_USER}}}):(?P<server>.{{0,{MAX_TAG}}})", re.DOTALL)

# -- the job directory in the user's home: logs and the token hand-off files -----------------
JOB_DIR_NAME = ".hpcspawner"  # hpcspawner-helper creates and writes no other directory
LOGS_DIR = "logs"  # in it: the jobs' output (made 0700 with it)
DASK_DIR = "dask"  # in it: a server's Dask cluster files (DASK_DIR/SERVER, its logs/ too)

# -- hpcspawner-helper's refusal: the first line of its stderr when it exits 2 ----------------
REFUSED = "hpcspawner-helper: refused: "

# -- the launcher's report: POST to the hub's API URL + REPORT_PATH ----------------------------
REPORT_PATH = "/hpcspawner/report"
# a server asks its job's end time as the hub knows it now: GET the API URL + SESSION_PATH
SESSION_PATH = "/hpcspawner/session"
# a server's own activity (what idle culling reads): POST the API URL + ACTIVITY_PATH/USER
ACTIVITY_PATH = "/hpcspawner/activity"


def job_tag(hub_id: str, username: str, server_name: str) -> str:
    """The tag on every job: ``hpcspawner:HUB:USER:SERVER``."""
    return f"{tag_prefix(hub_id)}{username}:{server_name}"


def tag_prefix(hub_id: str) -> str:
    """What the tags of one hub's jobs start with (its poller asks for these)."""
    return f"{TAG_ROOT}{hub_id}:"


def parse_tag(tag: str) -> tuple[str, str, str] | None:
    """(hub id, user, server) of a hub's tag (a Dask worker's keeps its suffix on the
    server); None when ``tag`` is not one. The one tag parser, for the hub and the helper."""
    match = _TAG_RE.fullmatch(tag)
    return (match["hub"], match["user"], match["server"]) if match else None


DASK_SUFFIX = "/dask"  # a server's Dask worker jobs: its tag and this ('/' is in no server name)


def worker_tag(tag: str) -> str:
    """The tag on the Dask worker jobs a server starts (hpcspawner.dask)."""
    return tag + DASK_SUFFIX


def server_tag(tag: str) -> str:
    """The tag of the server whose worker job carries ``tag``; '' if it is no worker's."""
    return tag.removesuffix(DASK_SUFFIX) if tag.endswith(DASK_SUFFIX) else ""


def tag_user(tag: str) -> str:
    """The user a tag names (``hpcspawner:HUB:USER:SERVER``); '' if it is not one."""
    parsed = parse_tag(tag)
    return parsed[1] if parsed else ""


# -- the job's environment: set by the hub (job_builder.py, apps.py), read by the launcher --------
class Env:
    """The names of the variables the job gets; none holds a secret."""

    SECRET_FILE = "HPCSPAWNER_SECRET_FILE"  # the token hand-off file (the launcher deletes it)
    SUBMISSION = "HPCSPAWNER_SUBMISSION"  # this submission's nonce, sent back in the report
    START_TIMEOUT = "HPCSPAWNER_START_TIMEOUT"  # seconds the server may take to answer
    STOP_GRACE = "HPCSPAWNER_STOP_GRACE"  # seconds between SIGTERM and SIGKILL
    RUNTIME = "HPCSPAWNER_RUNTIME"  # the job's time limit, seconds
    WALLTIME_WARNING = "HPCSPAWNER_WALLTIME_WARNING"  # warn this long before the limit
    END_TIME = "HPCSPAWNER_END_TIME"  # set by the launcher for the server: epoch seconds
    APP = "HPCSPAWNER_APP"  # the profile's app (apps.py)
    SERVER_PROXY = "HPCSPAWNER_SERVER_PROXY"  # its jupyter-server-proxy entry, JSON
    APP_READY = "HPCSPAWNER_APP_READY"  # a path below the server the launcher waits for
    PORT = "HPCSPAWNER_PORT"  # set by the launcher: the job's TCP port
    REPORT_HOST = "HPCSPAWNER_REPORT_HOST"  # what the launcher reports instead of its name
    DASK = "HPCSPAWNER_DASK"  # the Dask worker jobs this server may start, JSON (dask.py)
    # jupyter-remote-desktop-proxy's own variable: the desktop session to start
    XSTARTUP = "JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"


# their defaults, one set for both sides (the hub's settings of the same names default to them)
START_TIMEOUT = 3600
STOP_GRACE = 5
WALLTIME_WARNING = 900


# -- the token hand-off file: the server's token and its private environment ------------------
TOKEN_FILE_RE = re.compile(r"^(?P<server>[A-Za-z0-9_][A-Za-z0-9_.-]{0,200})-[0-9a-f]{16}\.token$")
TOKEN_FILE_FORM = "SERVER-<16 hex digits>.token"


def token_file_name(server_name: str, random_hex: str) -> str:
    """``SERVER-<16 hex digits>.token`` in the job directory (the helper writes no other)."""
    return f"{server_name or 'default'}-{random_hex}.token"


def secrets_text(token: str, env: Mapping[str, str]) -> str:
    """What the token file holds: ``{"token": ..., "env": {...}}``."""
    return json.dumps({"token": token, "env": dict(env)})


def parse_secrets(text: str) -> tuple[str, dict[str, str]]:
    """The token and the environment from a token file's text; ValueError if it is not what
    the hub writes."""
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) - {"token", "env"}:
        raise ValueError('a token file holds {"token": ..., "env": {...}}')
    env = data.get("env", {})
    if not isinstance(env, dict):
        raise ValueError("the token file's env is not an object")
    return str(data.get("token", "")), {str(k): str(v) for k, v in env.items()}


# -- the report body --------------------------------------------------------------------------
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$")


class Report:
    """``{"host", "port", "server_name", "submission", "ends"}`` once the server answers;
    ``{"port", "server_name", "submission", "ended": true}`` once it has exited. (A plain
    class: dataclasses would cost the launcher 12 ms of imports.)"""

    __slots__ = ("ended", "ends", "host", "port", "server_name", "submission")

    def __init__(self, port: int, host: str = "", server_name: str = "", submission: str = "",
                 ends: int = 0, ended: bool = False) -> None:
        self.port = port
        self.host = host
        self.server_name = server_name
        self.submission = submission
        self.ends = ends  # epoch seconds; 0: not said
        self.ended = ended  # the server has exited: drop its route

    def body(self) -> dict[str, object]:
        """The JSON body the launcher posts: the first report, or the one that says so."""
        said = ("ended",) if self.ended else ("host", "ends")
        return {k: getattr(self, k) for k in ("port", "server_name", "submission", *said)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Report) and self.body() == other.body()

    def __hash__(self) -> int:
        return hash(tuple(self.body().items()))

    def __repr__(self) -> str:
        return f"Report({self.body()!r})"


REPORT_KEYS = frozenset(Report.__slots__)


def parse_report(body: object) -> Report:
    """Validate a report body; ValueError saying what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("report must be a JSON object")
    extra = set(body) - REPORT_KEYS
    if extra:
        raise ValueError(f"unknown report fields: {', '.join(sorted(extra))}")
    host, port, name = body.get("host", ""), body.get("port"), body.get("server_name", "")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ValueError("port must be an integer from 1 to 65535")
    if not isinstance(host, str) or (host and not HOST_RE.match(host)):
        raise ValueError("host must be a host name or IPv4 address")
    if not isinstance(name, str) or len(name) > 255:
        raise ValueError("server_name must be a string")
    submission = body.get("submission", "")
    if not isinstance(submission, str) or len(submission) > 64:
        raise ValueError("submission must be a short string")
    ends = body.get("ends", 0)
    if not isinstance(ends, int) or isinstance(ends, bool) or not 0 <= ends < 2**40:
        raise ValueError("ends must be a time in seconds since 1970")
    ended = body.get("ended", False)
    if not isinstance(ended, bool):
        raise ValueError("ended must be true or false")
    return Report(port=port, host=host, server_name=name, submission=submission, ends=ends,
                  ended=ended)
