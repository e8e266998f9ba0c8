"""The launcher (runs inside the job) against a fake hub: it reports only a port whose
listening socket belongs to the server it started, never a port another process holds."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hpcspawner import launcher
from tests.hubtools import wait_for

# The "server": writes the port it was given, waits for go-<port>, binds it, serves forever.
SERVER = r"""
import socket, sys, time
from pathlib import Path
port, workdir = int(sys.argv[1]), Path(sys.argv[2])
with (workdir / "ports").open("a") as f:
    f.write(f"{port}\n")
while not (workdir / f"go-{port}").exists():
    time.sleep(0.01)
s = socket.socket()
s.bind(("0.0.0.0", port))
s.listen(5)
while True:
    time.sleep(1)
"""


class FakeHub:
    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hub.reports.append(json.loads(body))
                hub.tokens.append(self.headers.get("Authorization", ""))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub()
    yield fake
    fake.server.shutdown()


def start_launcher(tmp_path: Path, hub: FakeHub, command: list[str],
                   token: str | None = "s3cret", **env: str) -> subprocess.Popen[str]:
    secret = tmp_path / "token"
    if token is not None:
        secret.write_text(json.dumps({"token": token, "env": {"PRIVATE": "x"}}))
        secret.chmod(0o600)
    environ = {"PATH": os.environ["PATH"], "HPCSPAWNER_SECRET_FILE": str(secret),
               "JUPYTERHUB_API_URL": hub.url, "HPCSPAWNER_START_TIMEOUT": "30",
               "HPCSPAWNER_REPORT_HOST": "node1", **env}
    return subprocess.Popen([sys.executable, "-m", "hpcspawner.launcher", "--", *command],
                            env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def server_command(tmp_path: Path) -> list[str]:
    return [sys.executable, "-c", SERVER, "{port}", str(tmp_path)]


def ports_seen(tmp_path: Path) -> list[int]:
    path = tmp_path / "ports"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def finish(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out


def test_reports_the_port_of_its_own_server_with_the_token(tmp_path: Path,
                                                           hub: FakeHub) -> None:
    proc = start_launcher(tmp_path, hub, server_command(tmp_path))
    try:
        [port] = wait_for("the server's port", lambda: ports_seen(tmp_path), timeout=20)
        (tmp_path / f"go-{port}").touch()
        wait_for("the report", lambda: hub.reports, timeout=20)
        assert hub.reports == [{"host": "node1", "port": port, "server_name": "",
                                "submission": "", "ends": 0}]
        assert hub.tokens == ["token s3cret"]
        assert not (tmp_path / "token").exists(), "the token file must be deleted once read"
    finally:
        finish(proc)


def test_a_port_another_process_listens_on_first_is_never_reported(tmp_path: Path,
                                                                   hub: FakeHub) -> None:
    """The squatter listens on the port before the server binds it (bob on a shared node):
    the launcher must see that the listener is not its server's and move to another port."""
    proc = start_launcher(tmp_path, hub, server_command(tmp_path))
    squatter = socket.socket()
    try:
        [first] = wait_for("the first port", lambda: ports_seen(tmp_path), timeout=20)
        squatter.bind(("0.0.0.0", first))
        squatter.listen(5)
        (tmp_path / f"go-{first}").touch()  # the server tries to bind and cannot
        ports = wait_for("a second attempt", lambda: ports_seen(tmp_path)[1:], timeout=20)
        (tmp_path / f"go-{ports[0]}").touch()
        wait_for("the report", lambda: hub.reports, timeout=20)
        assert [r["port"] for r in hub.reports] == [ports[0]]
        assert ports[0] != first
    finally:
        squatter.close()
        out = finish(proc)
    assert f"another process listens on port {first}; not reporting it" in out


def test_gives_up_with_a_sentence_when_every_port_is_squatted(tmp_path: Path,
                                                              hub: FakeHub) -> None:
    proc = start_launcher(tmp_path, hub, server_command(tmp_path))
    squatters: list[socket.socket] = []
    try:
        for attempt in range(launcher.PORT_ATTEMPTS):
            ports = wait_for(f"attempt {attempt + 1}",
                             lambda n=attempt: ports_seen(tmp_path)[n:], timeout=20)
            squatter = socket.socket()
            squatter.bind(("0.0.0.0", ports[0]))
            squatter.listen(5)
            squatters.append(squatter)
        code = proc.wait(timeout=30)
    finally:
        for squatter in squatters:
            squatter.close()
        out = finish(proc)
    assert code == 3
    assert "every port tried (3) was taken by another process" in out
    assert hub.reports == []


def test_no_token_file_is_one_sentence_and_exit_code_2(tmp_path: Path, hub: FakeHub) -> None:
    """A node without the user's home (or the hand-off file) must say so, not crash."""
    proc = start_launcher(tmp_path, hub, server_command(tmp_path), token=None)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "cannot read the token file" in out
    assert "home directory is mounted" in out
    assert "Traceback" not in out
    assert not ports_seen(tmp_path), "nothing may start without the token"


def test_a_server_that_exits_before_listening_passes_its_exit_code(tmp_path: Path,
                                                                   hub: FakeHub) -> None:
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", "raise SystemExit(7)"])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert "did not start listening" in out
    assert hub.reports == []


def test_listeners_and_ownership_come_from_the_kernel_tables() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        inode = os.fstat(sock.fileno()).st_ino
        assert launcher.listeners(port) == {inode: os.getuid()}
        assert inode in launcher.socket_inodes({os.getpid()})
    assert launcher.listeners(port) == {}
    assert os.getpid() in launcher.process_tree(os.getppid())


# An app's server: answers the ready path 503 until ready-<port> exists, then 200; logs the
# Authorization header of each request and the environment the launcher gave it.
APP_SERVER = r"""
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
port, workdir = int(sys.argv[1]), Path(sys.argv[2])
(workdir / "env.json").write_text(json.dumps(dict(os.environ)))
with (workdir / "ports").open("a") as f:
    f.write(f"{port}\n")

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with (workdir / "asked").open("a") as f:
            f.write(f"{self.path} {self.headers.get('Authorization')}\n")
        ok = (workdir / f"ready-{port}").exists()
        self.send_response(200 if ok else 503)
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("0.0.0.0", port), Handler).serve_forever()
"""


def test_an_apps_server_is_reported_only_once_its_ready_path_answers(tmp_path: Path,
                                                                     hub: FakeHub) -> None:
    proxy = '{"streamlit": {"command": ["streamlit", "run", "x.py"]}}'
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", APP_SERVER, "{port}",
                                          str(tmp_path)],
                          HPCSPAWNER_APP_READY="streamlit/_stcore/health",
                          JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
                          HPCSPAWNER_APP="streamlit", HPCSPAWNER_SERVER_PROXY=proxy)
    asked = tmp_path / "asked"
    try:
        [port] = wait_for("the server's port", lambda: ports_seen(tmp_path), timeout=20)
        wait_for("the launcher to ask the app twice", lambda: asked.exists() and len(
            asked.read_text().splitlines()) >= 2, timeout=20)
        assert hub.reports == []  # listening is not enough: the app does not answer yet
        (tmp_path / f"ready-{port}").touch()
        wait_for("the report", lambda: hub.reports, timeout=20)
        assert hub.reports[0]["port"] == port
        assert set(asked.read_text().splitlines()) == {
            "/user/alice/streamlit/_stcore/health token s3cret"}
        env = json.loads((tmp_path / "env.json").read_text())
        config = Path(env["JUPYTER_CONFIG_PATH"]) / "jupyter_server_config.py"
        assert config.parent == Path(launcher.__file__).with_name("share") / "jupyter"
        assert "HPCSPAWNER_SERVER_PROXY" in config.read_text()
    finally:
        finish(proc)


def test_the_server_knows_when_its_time_limit_ends_and_the_log_warns_before(
        tmp_path: Path, hub: FakeHub) -> None:
    """HPCSPAWNER_RUNTIME 120 s and a warning 600 s ahead: the server's environment has the
    end time, the report carries it, and the log warns at once (the limit is that near)."""
    record = ("import os, pathlib, sys\npathlib.Path(sys.argv[2], 'end').write_text("
              "os.environ.get('HPCSPAWNER_END_TIME', ''))\n"
              "pathlib.Path(sys.argv[2], 'shell').write_text(os.environ.get('SHELL', ''))\n")
    before = time.time()
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", record + SERVER, "{port}",
                                          str(tmp_path)],
                          HPCSPAWNER_RUNTIME="120", HPCSPAWNER_WALLTIME_WARNING="600")
    try:
        [port] = wait_for("the server's port", lambda: ports_seen(tmp_path), timeout=20)
        (tmp_path / f"go-{port}").touch()
        [report] = wait_for("the report", lambda: hub.reports, timeout=20)
        ends = int((tmp_path / "end").read_text())
        assert int(before) + 120 <= ends <= int(time.time()) + 120
        assert report["ends"] == ends
        # no SHELL was given (as from a bare environment): the user's login shell, for
        # Jupyter's terminals
        assert (tmp_path / "shell").read_text() == pwd.getpwuid(os.getuid()).pw_shell
        out = proc.stdout
        assert out is not None
        line = wait_for("the warning", lambda: next(
            (x for x in iter(out.readline, "") if "WARNING" in x), None), timeout=20)
        assert f"this server stops at {launcher.utc(ends)} (in 2 min), when the job's time " \
               "limit ends. Save your work" in line
    finally:
        finish(proc)


def test_without_a_runtime_there_is_no_end_time_and_no_warning() -> None:
    assert launcher.end_time({}, 1000.0) == 0
    assert launcher.end_time({"HPCSPAWNER_RUNTIME": "x"}, 1000.0) == 0
    assert launcher.end_time({"HPCSPAWNER_RUNTIME": "3600"}, 1000.5) == 4600


# A server that leaves a process running when it exits, the way vncserver's X server outlives
# jupyter-server-proxy: sh starts `sleep` in the background and exits, so `sleep`'s parent is
# gone at once. With "ignore-term", `sleep` ignores SIGTERM (as an interactive bash does).
ORPHANING_SERVER = r"""
import socket, subprocess, sys, time
port, workdir, ignore = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "ignore-term"
trap = 'trap "" TERM; ' if ignore else ''
subprocess.run(["sh", "-c", trap + f"sleep 1000 & echo $! > {workdir}/orphan"], check=True)
s = socket.socket()
s.bind(("0.0.0.0", port))
s.listen(5)
while True:
    time.sleep(1)
"""


def process_state(pid: int) -> tuple[str, int]:
    """(state, parent) of a process; ("gone", 0) when there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone", 0
    state, ppid = stat[stat.rfind(")") + 2:].split()[:2]
    return state, int(ppid)


@pytest.mark.parametrize("orphan_mode", ["plain", "ignore-term"])
def test_what_the_server_leaves_running_ends_with_it(tmp_path: Path, hub: FakeHub,
                                                      orphan_mode: str) -> None:
    """SIGTERM to the launcher (what scancel and condor_rm send) ends the server and then the
    processes it left behind, even one whose parent exited (adopted by the launcher, not by
    init, so still in the job's process tree) and one that ignores SIGTERM (SIGKILL after
    HPCSPAWNER_STOP_GRACE)."""
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", ORPHANING_SERVER, "{port}",
                                          str(tmp_path), orphan_mode],
                          HPCSPAWNER_STOP_GRACE="0.5")
    orphan = 0
    try:
        wait_for("the report", lambda: hub.reports, timeout=20)
        orphan = int((tmp_path / "orphan").read_text())
        assert process_state(orphan) == ("S", proc.pid), "adopted by the launcher"
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        assert "ending 1 process(es) the server left running" in out
        assert process_state(orphan)[0] in ("gone", "Z")  # no longer running
    finally:
        finish(proc)
        if orphan and process_state(orphan)[0] not in ("gone", "Z"):
            os.kill(orphan, 9)


# In a process of its own (a subreaper collects every orphan below it): an orphan that has
# exited is collected by reap(), while the server's own exit status stays for Popen.
REAP_CHECK = r"""
import json, subprocess, sys, time
from hpcspawner import launcher
assert launcher.adopt_orphans()
server = subprocess.Popen(["sh", "-c", "exit 3"])
subprocess.run(["sh", "-c", "sleep 0.05 & echo $! > " + sys.argv[1]], check=True)
orphan = int(open(sys.argv[1]).read())
def state(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return "gone"
    return stat[stat.rfind(")") + 2:].split()[0]
deadline = time.monotonic() + 10
while time.monotonic() < deadline and (state(orphan) != "Z" or state(server.pid) != "Z"):
    time.sleep(0.01)
before = (state(orphan), state(server.pid))
launcher.reap(server)
print(json.dumps({"before": before, "after": (state(orphan), state(server.pid)),
                  "server_code": server.wait()}))
"""


def test_orphans_that_exit_are_collected_but_the_servers_status_is_kept(
        tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", REAP_CHECK, str(tmp_path / "orphan")],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    result = json.loads(out)
    assert result["before"] == ["Z", "Z"]  # both exited, neither collected yet
    assert result["after"] == ["gone", "Z"]  # the orphan collected, the server left alone
    assert result["server_code"] == 3
