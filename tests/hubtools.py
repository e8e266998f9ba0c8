"""A real JupyterHub + configurable-http-proxy for end-to-end tests, driven by PID."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests

VENV_BIN = Path(sys.executable).parent
HUB_ACCOUNT = "jupyterhub"  # the unprivileged account hubs run as (scripts/setup-machine)
HUB_DIRS = Path("/var/tmp/hpcspawner-e2e")  # hub directories the hub's account can reach
T = TypeVar("T")


def hub_account() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(HUB_ACCOUNT)
    except KeyError:
        raise AssertionError(f"no {HUB_ACCOUNT} account: run sudo scripts/setup-machine") \
            from None


def new_hub_dir(name: str) -> Path:
    """A fresh directory owned by the hub's account (pytest's tmp_path is root's, mode 700)."""
    HUB_DIRS.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=HUB_DIRS))
    account = hub_account()
    os.chown(path, account.pw_uid, account.pw_gid)
    path.chmod(0o755)
    return path


def wait_for(what: str, check: Callable[[], T], timeout: float = 60.0,
             interval: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def run(argv: list[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kw)


HOSTS_BEGIN = "# BEGIN hpcspawner-cluster nodes"  # scripts/lib/nodes.sh writes the block
HOSTS_END = "# END hpcspawner-cluster nodes"
DB_HOST = "hpcspawner-db"  # the database host of `cluster-up --nodes N` (scripts/lib/nodes.sh)
PG_SOCKET_DIR = "/run/hpcspawner-cluster/postgres"  # scripts/lib/postgres.sh
PG_PASSWORD_FILE = Path("/var/lib/hpcspawner-cluster/postgres-hub.password")
PG_ROLE = "jupyterhub"


def node_network() -> dict[str, str]:
    """Name → address of the hosts on the node network, from cluster-up's /etc/hosts block."""
    names: dict[str, str] = {}
    inside = False
    for line in Path("/etc/hosts").read_text().splitlines():
        if line.startswith(HOSTS_BEGIN):
            inside = True
        elif line.startswith(HOSTS_END):
            inside = False
        elif inside and line.strip():
            address, name = line.split()[:2]
            names[name] = address
    return names


def psql(sql: str) -> str:
    """Run SQL as PostgreSQL's superuser on the database host (through its Unix socket)."""
    [binary] = sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"),
                      key=lambda p: int(p.parts[-3]))[-1:]
    return run(["runuser", "-u", "postgres", "--", str(binary), "-h", PG_SOCKET_DIR,
                "-v", "ON_ERROR_STOP=1", "-Atq", "postgres"], input=sql).stdout


def new_database(name: str) -> tuple[str, dict[str, str]]:
    """A fresh PostgreSQL database for one hub: its URL and the environment with the password
    (libpq reads PGPASSWORD; the URL and so the hub's log and config hold none)."""
    psql(f'CREATE DATABASE "{name}" OWNER {PG_ROLE};')
    url = f"postgresql+psycopg://{PG_ROLE}@{node_network()[DB_HOST]}:5432/{name}"
    return url, {"PGPASSWORD": PG_PASSWORD_FILE.read_text().strip()}


def drop_database(name: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')


def squeue(hub_id: str) -> list[dict[str, str]]:
    """Live SLURM jobs (any state squeue still lists) that carry this hub's tag. Records end
    with a random frame, so a comment with a newline in it (tests/e2e/test_attacks.py) stays
    inside its own record."""
    frame = f"@end-{secrets.token_hex(8)}@"
    out = run(["squeue", "-h", "-a", "-o", f"%i|%T|%u|%C|%m|%l|%P|%r|%k{frame}"]).stdout
    jobs = []
    for record in out.split(frame):
        fields = record.strip("\n").split("|", 8)
        if len(fields) != 9 or not fields[0].isdigit():
            continue
        job_id, state, user, cpus, mem, limit, part, reason, comment = fields
        if comment.startswith(f"hpcspawner:{hub_id}:"):
            jobs.append({"id": job_id, "state": state, "user": user, "cpus": cpus,
                         "mem": mem, "time_limit": limit, "partition": part,
                         "reason": reason, "comment": comment})
    return jobs


def scontrol_job(job_id: str) -> dict[str, str]:
    out = run(["scontrol", "show", "job", "-o", job_id]).stdout
    fields: dict[str, str] = {}
    for word in out.split():
        key, _, value = word.partition("=")
        fields.setdefault(key, value)
    return fields


class Hub:
    """One hub in its own directory, ports and hub_id, so tests never meet the demo hub."""

    def __init__(self, workdir: Path, *, profiles: str, hub_id: str, port: int = 18000,
                 extra_config: str = "", users: tuple[str, ...] = ("alice", "bob", "carol"),
                 as_root: bool = False, env: dict[str, str] | None = None,
                 address: str = "127.0.0.1", db_url: str = "",
                 host: tuple[str, str] | None = None):
        self.env = env or {}  # more of the hub process's environment
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.hub_id = hub_id
        self.port = port
        self.address = address  # where the proxy listens (public side and API)
        self.url = f"http://{address}:{port}"
        self.db_url = db_url or f"sqlite:///{self.dir / 'jupyterhub.sqlite'}"
        self.host = host  # (network namespace, host name) of another host; None: this one
        self.token = secrets.token_hex(24)
        self.proxy_token = secrets.token_hex(24)
        self.password = "hpcspawner-test"
        self.users = users
        self.log_path = self.dir / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_config = extra_config
        self.as_root = as_root  # only batchspawner, the benchmarks' peer: it sudoes from root
        (self.dir / "profiles.yaml").write_text(profiles)
        self.config_path = self.dir / "jupyterhub_config.py"
        self.config_path.write_text(self._config(extra_config))

    def reconfigure(self, *, hub_id: str | None = None, profiles: str | None = None,
                    extra_config: str | None = None) -> None:
        """Change what the next start() reads (an admin editing the config)."""
        if hub_id is not None:
            self.hub_id = hub_id
        if extra_config is not None:
            self.extra_config = extra_config
        if profiles is not None:
            (self.dir / "profiles.yaml").write_text(profiles)
        self.config_path.write_text(self._config(self.extra_config))

    def _config(self, extra: str) -> str:
        return textwrap.dedent(f"""
            c = get_config()
            c.JupyterHub.spawner_class = "hpcspawner"
            c.HPCSpawner.hub_id = {self.hub_id!r}
            c.HPCSpawner.fast_poll_interval = 0.5
            c.HPCSpawner.slow_poll_interval = 5
            c.HPCSpawner.orphan_grace = 5
            c.Spawner.default_url = "/lab"
            c.JupyterHub.bind_url = "{self.url}"
            c.JupyterHub.hub_port = {self.port + 81}
            c.ConfigurableHTTPProxy.api_url = "http://{self.address}:{self.port + 1}"
            c.ConfigurableHTTPProxy.auth_token = {self.proxy_token!r}
            c.ConfigurableHTTPProxy.pid_file = {str(self.dir / "proxy.pid")!r}
            c.JupyterHub.db_url = {self.db_url!r}
            c.JupyterHub.cookie_secret_file = {str(self.dir / "cookie_secret")!r}
            c.JupyterHub.cleanup_servers = False
            c.JupyterHub.authenticator_class = "shared-password"
            c.SharedPasswordAuthenticator.user_password = {self.password!r}
            c.Authenticator.allowed_users = {set(self.users)!r}
            c.JupyterHub.services = [{{"name": "tester", "api_token": {self.token!r}}}]
            c.JupyterHub.load_roles = [{{
                "name": "tester",
                "scopes": ["admin:users", "admin:servers", "access:servers", "tokens",
                           "read:users", "admin:server_state"],
                "services": ["tester"],
            }}]
            c.JupyterHub.log_level = "DEBUG"
        """) + textwrap.dedent(extra)

    # -- process ---------------------------------------------------------------------------
    def start(self) -> Hub:
        """Start the hub as the unprivileged hub account, as sites run it: it reaches the
        users only through the sudoers file scripts/setup-machine installed."""
        log = self.log_path.open("ab")
        account = pwd.getpwnam("root") if self.as_root else hub_account()
        argv = [str(VENV_BIN / "jupyterhub"), "-f", str(self.config_path)]
        env = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": str(self.dir),
               "LANG": "C.UTF-8", **self.env}
        if self.host is None:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         user=account.pw_uid, group=account.pw_gid,
                                         extra_groups=[])
        else:  # on another host: its network and host name, then the hub's account
            netns, name = self.host
            self.proc = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{netns}", "--", "unshare", "--uts", "--",
                 "/bin/sh", "-c", 'hostname "$0" && exec "$@"', name,
                 "setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                 "--clear-groups", "--", *argv],
                cwd=self.dir, stdout=log, stderr=subprocess.STDOUT, env=env)
        (self.dir / "hub.pid").write_text(str(self.proc.pid))
        wait_for("the hub to answer", self._ready, timeout=60)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log()[-3000:]
            raise AssertionError(f"the hub exited with {self.proc.returncode}:\n{tail}")
        try:
            return requests.get(f"{self.url}/hub/api", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop_proxy(self) -> None:
        pid_file = self.dir / "proxy.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            pid_file.unlink(missing_ok=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- API -------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.token}", **kw.pop("headers", {})}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers,
                                timeout=kw.pop("timeout", 30), **kw)

    def spawn(self, user: str, options: dict[str, Any] | None = None,
              server: str = "") -> requests.Response:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        return self.api("POST", path, data=json.dumps(options or {}))

    def server_model(self, user: str, server: str = "") -> dict[str, Any] | None:
        model = self.api("GET", f"/users/{user}").json()
        return model.get("servers", {}).get(server)

    def wait_ready(self, user: str, timeout: float = 90) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            model = self.server_model(user)
            return model if model and model.get("ready") else None

        return wait_for(f"{user}'s server to be ready", ready, timeout=timeout, interval=0.3)

    def wait_stopped(self, user: str, timeout: float = 60) -> None:
        wait_for(f"{user}'s server to be gone from the hub",
                 lambda: self.server_model(user) is None, timeout=timeout, interval=0.3)

    def stop_server(self, user: str) -> requests.Response:
        return self.api("DELETE", f"/users/{user}/server")

    def user_token(self, user: str) -> str:
        """A token of ``user``'s own (what her scripts would use against the REST API)."""
        r = self.api("POST", f"/users/{user}/tokens", json={"note": "test", "expires_in": 600})
        assert r.status_code == 201, r.text[:300]
        return str(r.json()["token"])

    def extend(self, token: str, body: dict[str, Any]) -> requests.Response:
        """POST /hub/api/hpcspawner/extend with ``token`` (docs/sessions.md)."""
        return requests.post(f"{self.url}/hub/api/hpcspawner/extend", json=body, timeout=60,
                             headers={"Authorization": f"token {token}"})

    def card(self, user: str) -> dict[str, Any]:
        """The one session card of ``user`` from GET /hub/api/hpcspawner/sessions/USER."""
        r = self.api("GET", f"/hpcspawner/sessions/{user}")
        assert r.status_code == 200, r.text[:300]
        [card] = r.json()["cards"]
        return dict(card)

    def proxied(self, user: str, path: str = "api/status") -> requests.Response:
        return requests.get(f"{self.url}/user/{user}/{path}",
                            headers={"Authorization": f"token {self.token}"}, timeout=10)

    def progress(self, user: str, timeout: float = 60) -> list[dict[str, Any]]:
        """Read the spawn's progress events (what the spawn page shows) until it ends."""
        events: list[dict[str, Any]] = []
        with self.api("GET", f"/users/{user}/server/progress", stream=True,
                      timeout=timeout) as r:
            r.raise_for_status()
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    event = json.loads(line[5:])
                    events.append(event)
                    if event.get("failed") or event.get("ready"):
                        break
        return events

    def spawn_page(self, session: requests.Session) -> str:
        # JupyterHub sends no charset; the page is UTF-8 (em dashes in profile titles)
        return session.get(f"{self.url}/hub/spawn", timeout=10).content.decode("utf-8")

    def routes(self) -> dict[str, Any]:
        r = requests.get(f"http://{self.address}:{self.port + 1}/api/routes",
                         headers={"Authorization": f"token {self.proxy_token}"}, timeout=5)
        r.raise_for_status()
        result: dict[str, Any] = r.json()
        return result

    def server_port(self, user: str) -> int:
        target = self.routes()[f"/user/{user}"]["target"]
        return int(target.rsplit(":", 1)[1])

    def login(self, user: str, password: str = "") -> requests.Session:
        session = requests.Session()
        session.get(f"{self.url}/hub/login", timeout=10)
        r = session.post(f"{self.url}/hub/login", timeout=10, data={
            "username": user, "password": password or self.password,
            "_xsrf": session.cookies.get("_xsrf"),
        })
        assert r.status_code == 200, r.text[:500]
        return session


def listener_user(port: int) -> str:
    """Unix user of the process listening on ``port`` (ss + ps)."""
    out = run(["ss", "-Hltnp", f"sport = :{port}"]).stdout
    pid = out.split("pid=", 1)[1].split(",", 1)[0]
    return run(["ps", "-o", "user=", "-p", pid]).stdout.strip()


def server_environ(port: int, netns: str = "") -> dict[str, str]:
    """The environment of the single-user server behind ``port`` (root reads it): the port's
    listener is the job's launcher (forwarder.py); the server is its child. ``netns``: the
    network namespace of the node the job runs on (none: this host)."""
    enter = ["nsenter", f"--net=/run/netns/{netns}", "--"] if netns else []
    out = run([*enter, "ss", "-Hltnp", f"sport = :{port}"]).stdout
    # the launcher and its keeper (forwarder.Keeper) both hold the port: the launcher is the
    # one with children
    holders = [part.split(",", 1)[0] for part in out.split("pid=")[1:]]
    children: list[str] = []
    for launcher in holders:
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
        if children:
            break
    assert children, f"the launcher ({holders}) on port {port} runs no server"
    items = Path(f"/proc/{children[0]}/environ").read_bytes().split(b"\0")
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)
