"""Dask clusters from the notebook, out of the box (docs/dask.md)::

    from hpcspawner.dask import cluster
    c = cluster(workers=8)          # a dask-jobqueue cluster of this server's profile
    client = c.get_client()

The hub writes what a server's worker jobs may be into its job's environment (``Env.DASK``,
JSON, no secret): the dask-jobqueue cluster class and the options its backend gives for the
worker profile (partition or pool, account, cores, memory, runtime, and the tag that makes
the hub see the workers, cancel them with the server and sweep them up as orphans), the
most workers the user may run, and the directory for the workers' logs and certificates.

``cluster()`` in the notebook builds that cluster: scheduler, workers and clients speak TLS
with a certificate made for this server (0600 files in the user's job directory, named on
the workers' command line, never in a job script: anyone on the cluster can read those),
the dashboard is reached through the server at ``…/proxy/PORT/status`` behind the hub's
login, and asking for more workers than allowed (``scale``, ``adapt``) is refused with the
allowed range. JupyterLab's Dask sidebar makes its clusters with ``cluster`` too, and a
profile may have it start one with the server (``dask.offer_at_start``).

The hub side (``worker_plan``) needs no Dask; the notebook side imports dask-jobqueue.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import shutil
import socket
import struct
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from .backends.base import Backend
from .contract import LOGS_DIR, Env, worker_tag
from .profiles import Caps, Profile, ProfileSet, Resources
from .units import show_size

DASHBOARD_LINK = "{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/status"  # behind the hub's login
# A worker listens on the address its node's name resolves to, as the scheduler does (not
# on the address of a default route, which a node may not have). Backticks, not $(...):
# condor_submit would expand that as a macro.
WORKER_HOST = ('export DASK_WORKER_HOST=`{python} -c "import socket; '
               'print(socket.gethostbyname(socket.gethostname()))"`')


# A worker has no dashboard; its HTTP server (which distributed always starts) listens on the
# node's loopback and serves nothing (no metrics, no health page, no proxy)
WORKER_NO_DASHBOARD = ("--no-dashboard", "--dashboard-address", "127.0.0.1:0")
WORKER_HTTP_ROUTES = "export DASK_DISTRIBUTED__WORKER__HTTP__ROUTES=[]"


class TooManyWorkers(ValueError):
    """More Dask workers than this server's profile (and the user's caps) allow."""


# -- the hub: what a server's worker jobs may be ---------------------------------------------
def worker_plan(profile: Profile, profiles: ProfileSet, caps: Caps,
                backend_for: Callable[[str], Backend], tag: str,
                directory: str, held: Sequence[Resources] = ()) -> dict[str, Any] | None:
    """What the server of ``profile`` (tagged ``tag``) may start as Dask workers; None when
    its backend has no Dask cluster. The workers are the profile's ``dask.worker_profile``
    (default: the server's own profile as the user chose it), sized by ``dask.cores`` and
    ``dask.memory`` where set. ``directory``: the server's own, for the workers' logs and the
    TLS certificate. ``held``: what the user's servers hold (this one too): the workers fit
    in what the user's total caps leave beside them."""
    settings = profile.dask
    worker = profiles.by_name.get(settings.worker_profile or "", profile)
    resources = worker.resources.model_copy(update={
        k: v for k, v in (("cores", settings.cores), ("memory", settings.memory))
        if v is not None} | {"gpus": 0, "gpu_model": None})
    worker = worker.model_copy(update={"resources": resources})
    found = backend_for(worker.backend).dask_cluster(worker, worker_tag(tag))
    if found is None:
        return None
    most, limit = worker_limit(settings.most(caps), resources, held, caps)
    return {"cluster": found.cls, "options": found.options, "path": list(found.tool_dirs),
            "max_workers": most, "limit": limit, "directory": directory,
            "worker": worker.title}


def worker_limit(most: int, worker: Resources, held: Sequence[Resources],
                 caps: Caps) -> tuple[int, str]:
    """The most workers of size ``worker`` that fit beside ``held`` in the user's total
    cores and memory (and at most ``most``: the profile's and the caps' number), and what sets
    that limit, in words."""
    limit = "dask.max_workers of the profile and dask_workers of your caps"
    for name, total in (("cores", caps.total_cores), ("memory", caps.total_memory)):
        size = getattr(worker, name)
        if total is None or not size:
            continue
        used = sum(getattr(r, name) for r in held)
        fits = max(0, (total - used) // size)
        if fits < most:
            def show(value: int, what: str = name) -> str:
                if what == "memory":
                    return show_size(value)
                return f"{value} core" + ("s" if value != 1 else "")

            most = fits
            limit = (f"your total of {show(total)} for all your servers and workers: your "
                     f"servers hold {show(used)}, a worker {show(size)}")
    return most, limit


def plan_env(plan: dict[str, Any] | None, at_start: int = 0) -> dict[str, str]:
    """The job's variables for ``plan`` (none without one): the plan; the dashboard link and
    the TLS files every Dask client of the server uses (so a plain ``Client(address)``, as
    JupyterLab's Dask sidebar writes it, reaches the cluster); the sidebar's clusters made by
    ``cluster``; and ``at_start`` workers the sidebar starts with the server."""
    if plan is None:
        return {}
    cert, key = tls_files(str(plan["directory"]))
    env = {
        Env.DASK: json.dumps(plan, sort_keys=True),
        "DASK_DISTRIBUTED__DASHBOARD__LINK": DASHBOARD_LINK,
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": cert,
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": cert,
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": key,
        "DASK_LABEXTENSION__FACTORY__MODULE": __name__,
        "DASK_LABEXTENSION__FACTORY__CLASS": "cluster",
    }
    if at_start:
        env["DASK_LABEXTENSION__INITIAL"] = json.dumps(
            [{"name": f"Dask, {at_start} workers (started with the server)",
              "workers": at_start}])
    return env


def tls_files(directory: str) -> tuple[str, str]:
    """The certificate and key the server's Dask scheduler, workers and clients share."""
    return posixpath.join(directory, "tls", "cert.pem"), posixpath.join(directory, "tls",
                                                                        "key.pem")


# -- the notebook: the cluster ----------------------------------------------------------------
def _plan() -> dict[str, Any]:
    text = os.environ.get(Env.DASK, "")
    if not text:
        raise RuntimeError("This server was not started by hpcspawner with Dask workers "
                           f"allowed ({Env.DASK} is not set): ask the hub's administrators "
                           "(docs/dask.md).")
    plan: dict[str, Any] = json.loads(text)
    return plan


def check_workers(asked: float, most: int, limit: str = "", what: str = "Dask workers") -> None:
    """TooManyWorkers unless 0 <= ``asked`` <= ``most``, saying the allowed range and what
    sets it (``limit``, from the hub's plan)."""
    if asked < 0:
        raise TooManyWorkers(f"{asked} {what} is not a number of workers; ask for 0 to "
                             f"{most}.")
    if asked > most:
        allowed = f"ask for 0 to {most}" if most else "no Dask workers are allowed"
        raise TooManyWorkers(f"Your server allows at most {most} {what} at once; you asked "
                             f"for {asked:g}: {allowed} (the limit is the hub's: "
                             f"{limit or 'profiles.yaml, dask.max_workers and caps'}).")


def _capped(base: Any, most: int, limit: str = "") -> type:
    """``base`` (a dask-jobqueue cluster class) whose scale() and adapt() keep to ``most``
    worker jobs (one worker process per job); ``limit`` says what sets it."""

    def scale(self: Any, n: int | None = None, jobs: int = 0, memory: Any = None,
              cores: int | None = None) -> Any:
        job = self._dummy_job
        wanted = float(jobs if n is None else math.ceil(n / job.worker_processes))
        if memory is not None:
            from dask.utils import parse_bytes

            wanted = max(wanted, math.ceil(parse_bytes(memory) / job.worker_memory))
        if cores is not None:
            wanted = max(wanted, math.ceil(cores / job.worker_cores))
        check_workers(wanted, most, limit)
        return base.scale(self, n, jobs=jobs, memory=memory, cores=cores)

    def adapt(self: Any, *args: Any, minimum: int = 0, maximum: float | None = None,
              minimum_jobs: int | None = None, maximum_jobs: int | None = None,
              **kwargs: Any) -> Any:
        top = maximum_jobs if maximum_jobs is not None else maximum
        if top is None or top == math.inf:
            top = most
        check_workers(top, most, limit)
        check_workers(minimum_jobs if minimum_jobs is not None else minimum, most, limit)
        return base.adapt(self, *args, minimum=minimum, maximum=top, minimum_jobs=minimum_jobs,
                          maximum_jobs=maximum_jobs if maximum_jobs is None else top, **kwargs)

    return type(base.__name__, (base,), {"scale": scale, "adapt": adapt,
                                        "__module__": __name__})


def _security(directory: str) -> Any:
    """TLS for the server's clusters, from the certificate in ``directory``/tls (made on
    first use: a self-signed pair, like distributed's Security.temporary(), 0600 files in a
    0700 directory of the user's, put in place whole: two kernels never mix their pairs)."""
    from distributed.security import Security

    cert, key = tls_files(directory)
    if not os.path.exists(cert):
        made = Security.temporary()
        partial = tempfile.mkdtemp(prefix=".tls-", dir=directory)  # 0700
        for path, text in ((key, made.tls_client_key), (cert, made.tls_client_cert)):
            fd = os.open(posixpath.join(partial, posixpath.basename(path)),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
        try:
            os.rename(partial, posixpath.dirname(cert))
        except OSError:  # another kernel's pair is in place: use that one
            shutil.rmtree(partial, ignore_errors=True)
    return Security(tls_ca_file=cert, tls_client_cert=cert, tls_client_key=key,
                    tls_scheduler_cert=cert, tls_scheduler_key=key, tls_worker_cert=cert,
                    tls_worker_key=key, require_encryption=True)


# -- the scheduler's dashboard: this user's connections only ------------------------------
def _hex_address(host: str, port: int) -> str:
    """An IPv4 address as /proc/net/tcp writes it: the address's bytes as a little-endian
    word, then the port, in upper-case hex (127.0.0.1:8787 is 0100007F:2253)."""
    return f"{struct.unpack('<I', socket.inet_aton(host))[0]:08X}:{port:04X}"


def peer_uid(peer: tuple[str, int], here: tuple[str, int],
             table: str = "/proc/net/tcp") -> int | None:
    """Whose socket connected from ``peer`` to ``here`` (both on this node, IPv4): the uid
    the kernel lists for the socket at ``peer`` talking to ``here``; None when not listed."""
    mine, theirs = _hex_address(*peer[:2]), _hex_address(*here[:2])
    try:
        with open(table) as rows:
            for row in rows:
                words = row.split()
                if len(words) > 7 and words[1] == mine and words[2] == theirs:
                    return int(words[7])
    except (OSError, ValueError):
        return None
    return None


def own_user_only(handle: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """An HTTP server's ``handle_stream`` that first closes a connection from any other
    account than this process's: the node's loopback is shared by every user with a job or
    a shell on it; this user's Jupyter server (jupyter-server-proxy, behind the hub's login)
    is this account."""

    def handle_stream(stream: Any, address: Any) -> Any:
        try:
            here = stream.socket.getsockname()
        except (OSError, AttributeError):
            here = None
        if here is None or not isinstance(address, tuple) \
                or peer_uid(address, here) != os.getuid():
            stream.close()
            return None
        return handle(stream, address)

    return handle_stream


def own_dashboard_scheduler() -> type:
    """distributed's Scheduler whose dashboard answers this user's own connections only."""
    from distributed import Scheduler

    def start_http_server(self: Any, *args: Any, **kwargs: Any) -> None:
        Scheduler.start_http_server(self, *args, **kwargs)
        self.http_server.handle_stream = own_user_only(self.http_server.handle_stream)

    return type("Scheduler", (Scheduler,), {"start_http_server": start_http_server,
                                            "__module__": __name__})


def cluster(workers: int = 0, **options: Any) -> Any:
    """A dask-jobqueue cluster whose workers are batch jobs of this server's profile (or its
    worker profile), with ``workers`` of them asked for at once. ``options`` go to the
    cluster class (e.g. ``asynchronous=True`` for dask-labextension)."""
    plan = _plan()
    most, limit = int(plan["max_workers"]), str(plan.get("limit", ""))
    check_workers(workers, most, limit)
    import dask_jobqueue

    directory = str(plan["directory"])
    logs = posixpath.join(directory, LOGS_DIR)
    os.makedirs(logs, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    security = _security(directory)
    path = os.environ.get("PATH", "").split(os.pathsep)  # the site's scheduler commands first
    os.environ["PATH"] = os.pathsep.join([*plan.get("path", []), *path])
    base = getattr(dask_jobqueue, str(plan["cluster"]))
    made = _capped(base, most, limit)(
        **{**plan["options"], "security": security, "log_directory": logs,
           "job_script_prologue": [WORKER_HOST.format(python=sys.executable),
                                   WORKER_HTTP_ROUTES],
           "worker_extra_args": ["--host", "$DASK_WORKER_HOST", *WORKER_NO_DASHBOARD],
           **options},
        # workers on other nodes reach the scheduler by this node's name; the dashboard
        # only through the server (jupyter-server-proxy, behind the hub's login), on the
        # loopback and answering only this user's own connections
        scheduler_cls=own_dashboard_scheduler(),
        scheduler_options={"host": socket.gethostbyname(socket.gethostname()),
                           "dashboard_address": "127.0.0.1:0"},
    )
    if workers:
        made.scale(workers)
    return made
