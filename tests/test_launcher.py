"""The launcher (runs inside the job) against a fake hub: it holds the job's port from the
start, forwards it to the server's private Unix socket, reports, and lets the port go only
after telling the hub that the server exited."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hpcspawner import launcher
from hpcspawner.contract import Env
from tests.hubtools import wait_for

# The "server": an HTTP server on the Unix socket it is given (sys.argv[1]), once go exists;
# it answers every GET with 200 (503 on the ready path until ready exists) and the request's
# path and Authorization, logs each request in asked, exits on GET /exit.
SERVER = r"""
import json, os, socketserver, sys, time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
sock, workdir = sys.argv[1], Path(sys.argv[2])
(workdir / "env.json").write_text(json.dumps(dict(os.environ)))
(workdir / "socket").write_text(sock)
while not (workdir / "go").exists():
    time.sleep(0.01)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        with (workdir / "asked").open("a") as f:
            f.write(f"{self.path} {self.headers.get('Authorization')}\n")
        if self.path == "/exit":
            os._exit(0)
        ok = "_stcore" not in self.path or (workdir / "ready").exists()
        body = f"{self.path} {self.headers.get('Authorization')}".encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("local", 0)

Server(sock, Handler).serve_forever()
"""


class FakeHub:
    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        # what the hub does with a report: an int is the status it answers (else 200)
        self.on_report: Callable[[dict[str, Any]], object] = lambda report: None
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hub.reports.append(json.loads(body))
                hub.tokens.append(self.headers.get("Authorization", ""))
                status = hub.on_report(hub.reports[-1])
                self.send_response(status if isinstance(status, int) else 200)
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
    return [sys.executable, "-c", SERVER, "{socket}", str(tmp_path)]


def started(tmp_path: Path) -> bool:
    return (tmp_path / "socket").exists()


def finish(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    out, _ = proc.communicate(timeout=30)
    return out


def get(port: int, path: str) -> tuple[int, str]:
    """GET through the launcher's port, as the proxy does."""
    import http.client

    connection = http.client.HTTPConnection("localhost", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": "token from-the-proxy"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def binds(port: int) -> list[str]:
    """Every way another process (bob) could listen on ``port`` that works now."""
    worked = []
    for address, family, v6only in [("::1", socket.AF_INET6, 0), ("::", socket.AF_INET6, 1),
                                    ("127.0.0.1", socket.AF_INET, 0),
                                    ("0.0.0.0", socket.AF_INET, 0)]:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
            try:
                sock.bind((address, port))
                sock.listen(1)
            except OSError:
                continue
            worked.append(address)
    return worked


def test_reports_its_port_with_the_token_and_forwards_it_to_the_servers_socket(
        tmp_path: Path, hub: FakeHub) -> None:
    proc = start_launcher(tmp_path, hub, server_command(tmp_path))
    try:
        wait_for("the server to start", lambda: started(tmp_path), timeout=20)
        sock = Path((tmp_path / "socket").read_text())
        assert sock.name == "server.sock"
        assert (sock.parent.stat().st_mode & 0o777) == 0o700, "only the user may reach it"
        (tmp_path / "go").touch()
        [report] = wait_for("the report", lambda: hub.reports, timeout=20)
        port = report["port"]
        assert report == {"host": "node1", "port": port, "server_name": "",
                          "submission": "", "ends": 0}
        assert hub.tokens == ["token s3cret"]
        assert not (tmp_path / "token").exists(), "the token file must be deleted once read"
        # the hub's requests on the port reach the server, whole, on either address family
        for host in ("127.0.0.1", "::1"):
            status, body = get(port, f"/user/alice/api/status?from={host}")
        assert (status, body) == (200, "/user/alice/api/status?from=::1 token from-the-proxy")
        env = json.loads((tmp_path / "env.json").read_text())
        assert env["JUPYTERHUB_SERVICE_URL"] == "http://127.0.0.1:8888/"  # jupyter's --sock
    finally:
        finish(proc)


def test_nobody_else_can_listen_on_the_port_from_before_the_server_starts(
        tmp_path: Path, hub: FakeHub) -> None:
    """The port is the launcher's before the server exists (nothing to squat while the
    server starts), on IPv4 and IPv6 alike ([::1] and [::] v6-only beside it too)."""
    proc = start_launcher(tmp_path, hub, server_command(tmp_path))
    try:
        wait_for("the server to start", lambda: started(tmp_path), timeout=20)
        out = proc.stdout
        assert out is not None
        line = wait_for("the port", lambda: next(
            (x for x in iter(out.readline, "") if "through port" in x), None), timeout=20)
        port = int(line.rsplit(" ", 1)[1])
        assert binds(port) == [], "the port must be held before the server listens"
        (tmp_path / "go").touch()
        wait_for("the report", lambda: hub.reports, timeout=20)
        assert hub.reports[0]["port"] == port
        assert binds(port) == []
    finally:
        finish(proc)


def test_when_the_server_exits_the_hub_hears_it_before_the_port_is_let_go(
        tmp_path: Path, hub: FakeHub) -> None:
    seen_at_ended: list[list[str]] = []
    hub.on_report = lambda report: seen_at_ended.append(binds(report["port"])) \
        if report.get("ended") else None
    proc = start_launcher(tmp_path, hub, server_command(tmp_path),
                          HPCSPAWNER_SUBMISSION="abc", JUPYTERHUB_SERVER_NAME="gpu")
    try:
        wait_for("the server to start", lambda: started(tmp_path), timeout=20)
        (tmp_path / "go").touch()
        [report] = wait_for("the report", lambda: hub.reports, timeout=20)
        port = report["port"]
        with pytest.raises(OSError):  # the server exits while answering (File > Shut Down)
            get(port, "/exit")
        assert proc.wait(timeout=30) == 0
        assert hub.reports[1] == {"port": port, "server_name": "gpu", "submission": "abc",
                                  "ended": True}
        assert seen_at_ended == [[]], "the port must still be held when the hub is told"
        assert "::1" in binds(port), "and let go after"
    finally:
        out = finish(proc)
    assert "the hub took the route down" in out


def test_no_token_file_is_one_sentence_and_exit_code_2(tmp_path: Path, hub: FakeHub) -> None:
    """A node without the user's home (or the hand-off file) must say so, not crash."""
    proc = start_launcher(tmp_path, hub, server_command(tmp_path), token=None)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "cannot read the token file" in out
    assert "home directory is mounted" in out
    assert "Traceback" not in out
    assert not started(tmp_path), "nothing may start without the token"


def test_a_server_that_exits_before_listening_passes_its_exit_code(tmp_path: Path,
                                                                   hub: FakeHub) -> None:
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", "raise SystemExit(7)"])
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7
    assert "did not start listening" in out
    assert hub.reports == []


def test_the_server_is_told_its_socket_by_option_unless_its_command_names_it() -> None:
    assert launcher.server_command(["/x/jupyterhub-singleuser", "--debug"], "/t/s") == [
        "/x/jupyterhub-singleuser", "--debug", "--sock=/t/s"]
    assert launcher.server_command(["sh", "-c", "serve {socket}"], "/t/s") == [
        "sh", "-c", "serve /t/s"]


def test_an_apps_server_is_reported_only_once_its_ready_path_answers(tmp_path: Path,
                                                                     hub: FakeHub) -> None:
    proxy = '{"streamlit": {"command": ["streamlit", "run", "x.py"]}}'
    proc = start_launcher(tmp_path, hub, server_command(tmp_path),
                          HPCSPAWNER_APP_READY="streamlit/_stcore/health",
                          JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
                          HPCSPAWNER_APP="streamlit", HPCSPAWNER_SERVER_PROXY=proxy)
    asked = tmp_path / "asked"
    try:
        wait_for("the server to start", lambda: started(tmp_path), timeout=20)
        (tmp_path / "go").touch()
        wait_for("the launcher to ask the app twice", lambda: asked.exists() and len(
            asked.read_text().splitlines()) >= 2, timeout=20)
        assert hub.reports == []  # listening is not enough: the app does not answer yet
        (tmp_path / "ready").touch()
        wait_for("the report", lambda: hub.reports, timeout=20)
        assert set(asked.read_text().splitlines()) == {
            "/user/alice/streamlit/_stcore/health token s3cret"}
        env = json.loads((tmp_path / "env.json").read_text())
        config = Path(env["JUPYTER_CONFIG_PATH"]) / "jupyter_server_config.py"
        assert config.parent == Path(launcher.__file__).with_name("share") / "jupyter"
        # the config file the server reads sets its proxy from the job's variable
        from traitlets.config import Config

        c = Config()
        saved = os.environ.get(Env.SERVER_PROXY)
        os.environ[Env.SERVER_PROXY] = env[Env.SERVER_PROXY]
        try:
            exec(compile(config.read_text(), str(config), "exec"), {"c": c})
        finally:
            os.environ.pop(Env.SERVER_PROXY)
            if saved is not None:
                os.environ[Env.SERVER_PROXY] = saved
        assert c.ServerProxy.servers == json.loads(env[Env.SERVER_PROXY])
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
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", record + SERVER, "{socket}",
                                          str(tmp_path)],
                          HPCSPAWNER_RUNTIME="120", HPCSPAWNER_WALLTIME_WARNING="600")
    try:
        wait_for("the server to start", lambda: started(tmp_path), timeout=20)
        (tmp_path / "go").touch()
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
path, workdir, ignore = sys.argv[1], sys.argv[2], sys.argv[3] == "ignore-term"
trap = 'trap "" TERM; ' if ignore else ''
subprocess.run(["sh", "-c", trap + f"sleep 1000 & echo $! > {workdir}/orphan"], check=True)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
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
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", ORPHANING_SERVER, "{socket}",
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


def test_a_desktop_does_not_start_where_another_user_owns_the_x_socket_directory(
        tmp_path: Path) -> None:
    x11 = tmp_path / ".X11-unix"
    assert launcher.x11_dir_problem(str(x11)) == ""  # none: the X server makes it
    x11.mkdir()
    x11.chmod(0o1777)
    os.chown(x11, 0, 0)
    assert launcher.x11_dir_problem(str(x11)) == ""
    os.chown(x11, 65534, 65534)  # nobody's (bob's, in the attack)
    why = launcher.x11_dir_problem(str(x11))
    assert "is not a directory owned by root with mode 1777" in why and "uid 65534" in why
    os.chown(x11, 0, 0)
    x11.chmod(0o777)
    assert "mode 777" in launcher.x11_dir_problem(str(x11))
    x11.rmdir()
    x11.symlink_to(tmp_path)
    assert "not a directory" in launcher.x11_dir_problem(str(x11))


def test_a_launcher_killed_hard_leaves_nothing_running_and_the_port_held_until_the_hub_heard(
        tmp_path: Path, hub: FakeHub) -> None:
    """SIGKILL of the launcher (the OOM killer, a hard kill): the server and what it left
    running die with it, even where the scheduler would not follow them (proctrack/linuxproc:
    parent 1, outside the job); the port stays held, unanswered, while the hub is told the
    server ended, and is let go only once the hub has answered."""
    answer = threading.Event()
    at_ended: list[list[str]] = []

    def on_report(report: dict[str, Any]) -> None:
        if report.get("ended"):
            time.sleep(1.0)  # a hub slow to answer: the port must stay held meanwhile
            at_ended.append(binds(report["port"]))
            answer.set()

    hub.on_report = on_report
    proc = start_launcher(tmp_path, hub, [sys.executable, "-c", ORPHANING_SERVER, "{socket}",
                                          str(tmp_path), "plain"],
                          HPCSPAWNER_SUBMISSION="abc", JUPYTERHUB_SERVER_NAME="gpu")
    orphan = server = 0
    try:
        [report] = wait_for("the report", lambda: hub.reports, timeout=20)
        port = report["port"]
        orphan = int((tmp_path / "orphan").read_text())
        children = {pid: Path(f"/proc/{pid}/cmdline").read_bytes()
                    for pid, _, ppid in launcher.processes() if ppid == proc.pid}
        [server] = [pid for pid, words in children.items() if words.split(b"\0")[1] == b"-c"]
        [keeper] = [pid for pid, words in children.items() if words.split(b"\0")[1] == b"-m"]
        proc.kill()
        proc.wait(timeout=10)
        wait_for("the server and its orphan to die with the launcher",
                 lambda: all(process_state(p)[0] in ("gone", "Z") for p in (server, orphan)),
                 timeout=10)
        assert binds(port) == [], "the port went with the launcher"
        wait_for("the hub to hear that the server ended", answer.is_set, timeout=20)
        assert hub.reports[-1] == {"port": port, "server_name": "gpu", "submission": "abc",
                                   "ended": True}
        assert at_ended == [[]], "the port must be held until the hub has answered"
        wait_for("the port to be let go after the hub's answer", lambda: "::1" in binds(port),
                 timeout=10)
        wait_for("the keeper to exit", lambda: process_state(keeper)[0] in ("gone", "Z"),
                 timeout=10)
    finally:
        finish(proc)
        for pid in (server, orphan):
            if pid and process_state(pid)[0] not in ("gone", "Z"):
                os.kill(pid, 9)


def test_the_port_is_held_however_long_the_hub_is_away_after_the_server_exited(
        tmp_path: Path, hub: FakeHub) -> None:
    """A hub down (restarting, the proxy run apart) longer than any patience: the proxy may
    still route to the port, so the launcher holds it until the hub has answered."""
    away = 25.0  # longer than the 20 s the launcher used to wait
    first: list[float] = []
    held: list[list[str]] = []

    def on_report(report: dict[str, Any]) -> int | None:
        if not report.get("ended"):
            return None
        first.append(first[0] if first else time.monotonic())
        held.append(binds(report["port"]))
        return 503 if time.monotonic() - first[0] < away else 200

    hub.on_report = on_report
    proc = start_launcher(tmp_path, hub, server_command(tmp_path))
    try:
        wait_for("the server to start", lambda: started(tmp_path), timeout=20)
        (tmp_path / "go").touch()
        [report] = wait_for("the report", lambda: hub.reports, timeout=20)
        port = report["port"]
        with pytest.raises(OSError):
            get(port, "/exit")
        assert proc.wait(timeout=away + 30) == 0
        assert time.monotonic() - first[0] >= away
        assert len(held) > 5 and all(b == [] for b in held), held
        assert "::1" in binds(port), "let go once the hub answered"
    finally:
        out = finish(proc)
    assert "the hub took the route down" in out
