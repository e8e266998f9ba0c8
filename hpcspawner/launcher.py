"""Runs inside the batch job: holds the job's TCP port, starts the server on a private Unix
socket, forwards the port to it (forwarder.py), reports "listening" to the hub, and tells
the hub when the server has ended before it lets the port go.

Usage (written by the job template)::

    python -m hpcspawner.launcher -- /opt/venv/bin/jupyterhub-singleuser [args ...]

Reads the API token from ``$HPCSPAWNER_SECRET_FILE`` (mode 0600, owned by the user) and
deletes that file, so the token is never on a command line, in the script or in the
scheduler's records. The server gets ``--sock=PATH`` (or ``{socket}`` in its command is
replaced): a socket in a directory only the user can enter, so nobody else on the node can
answer in its place, before the report or after it.
With ``$HPCSPAWNER_APP_READY`` (a path below the server, e.g. ``streamlit/_stcore/health``)
the hub hears of the server only once that path answers 2xx through the server, so "ready"
means the app (a dashboard, a site's app) is up, not just the Jupyter server.
From ``$HPCSPAWNER_RUNTIME`` (the job's time limit) the server gets ``$HPCSPAWNER_END_TIME``
(epoch seconds) and the log a warning ``$HPCSPAWNER_WALLTIME_WARNING`` seconds before it.
The launcher is the child subreaper of everything the server starts: a process whose parent
exits (vncserver's X server, anything that daemonizes) stays in the launcher's tree, not
init's, and when the server ends, the launcher ends what is left (SIGTERM, then SIGKILL after
``$HPCSPAWNER_STOP_GRACE`` seconds, default 5). So a desktop or an app never outlives its
job, even where the scheduler follows only the process tree (SLURM's proctrack/linuxproc).
And nothing it starts outlives the launcher itself: the server gets SIGKILL when the launcher
dies (PR_SET_PDEATHSIG); a keeper (forwarder.Keeper) that holds the port sees the launcher
die, kills the server and every process carrying this launcher's mark in its environment
(``$HPCSPAWNER_LAUNCHER_MARK``), tells the hub, and lets the port go only once the hub has
answered. Where the scheduler kills the whole job at once
(proctrack/cgroup, a node crash) the keeper dies with it.
Only the standard library is used: this runs in whatever Python the site's jobs use.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .contract import (
    REPORT_PATH,
    START_TIMEOUT,
    STOP_GRACE,
    WALLTIME_WARNING,
    Env,
    Report,
    parse_secrets,
)
from .forwarder import (
    SOCKET_NAME,
    Forwarder,
    Keeper,
    launcher_died,
    listen,
    private_dir,
    socket_answers,
)

SHARE = Path(__file__).with_name("share")
PROC = Path("/proc")
JUPYTER_DEFAULT_PORT = 8888  # jupyter-server's: the only port it accepts beside --sock
# The port is kept while the hub is away, however long: a route may still point at it. The
# job's time limit (or a cancel) ends the wait.
ENDED_PATIENCE = float("inf")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
PR_SET_CHILD_SUBREAPER = 36
MARK = "HPCSPAWNER_LAUNCHER_MARK"  # in the environment of everything the launcher starts
KEEP = "--keep-port"  # the keeper's argument (forwarder.Keeper)
SPARED: set[int] = set()  # the keeper: below the launcher, but not the server's to end
REAP_EVERY = 30.0  # seconds
# urllib.request (with http.client and email) takes ~25 ms to import, asyncio (the forwarder)
# ~15 ms: they are imported where they are used, while the server starts, off the path to
# "ready".


def say(message: str) -> None:
    """One line of the job's log, stamped in UTC to the millisecond (benchmarks/spawn_latency.py
    reads where a start's time goes from these stamps and the hub's log)."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    print(f"[hpcspawner-launcher {stamp}] {message}", flush=True)


def read_secrets(path: str) -> tuple[str, dict[str, str]]:
    """The token and the private environment from the hand-off file (``{"token": ...,
    "env": {...}}``, written by hpcspawner-helper; a bare token from older hubs), then
    delete the file."""
    secret = Path(path)
    try:
        text = secret.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise HandOffError(
            f"cannot read the token file {path or '(none given)'} ({exc.strerror or exc}): "
            "the job must run where the user's home directory is mounted, as the user"
        ) from None
    try:
        secret.unlink()
    except OSError as exc:
        say(f"could not delete {secret}: {exc.strerror}")
    env: dict[str, str] = {}
    token = text
    if text.startswith("{"):
        try:
            token, env = parse_secrets(text)
        except ValueError:
            raise HandOffError(f"{secret} is not what the hub writes; start the server "
                               "again") from None
    if not token:
        raise HandOffError(f"{secret} is empty: the hub did not hand over the server's token")
    return token, env


class HandOffError(Exception):
    """The job cannot take over from the hub (no token file, unreadable, empty)."""


def app_environment(env: dict[str, str]) -> None:
    """Point the server at this package's files: its Jupyter config (the session extension
    that tells JupyterLab when the job ends, server_extension.py; the jupyter-server-proxy
    app of the profile, apps.py), the lab extension that shows it, and the default desktop
    session."""
    for name in ("JUPYTER_CONFIG_PATH", "JUPYTER_PATH"):
        extra = env.get(name)
        env[name] = str(SHARE / "jupyter") + (f":{extra}" if extra else "")
    if env.get(Env.APP) == "desktop" and not env.get(Env.XSTARTUP):
        env[Env.XSTARTUP] = str(SHARE / "xstartup")


X11_DIR = "/tmp/.X11-unix"


def x11_dir_problem(path: str = X11_DIR) -> str:
    """Why a desktop may not start here ('' when it may): the X server's socket goes in
    ``path``, which must be root's and sticky (1777) where it exists; a directory another
    user owns lets that user replace the desktop's X socket and read its keystrokes. Where it
    does not exist (a private /tmp) the X server makes it."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return ""
    import stat

    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or \
            stat.S_IMODE(info.st_mode) != 0o1777:
        return (f"{path} is not a directory owned by root with mode 1777 (it is "
                f"{'a directory' if stat.S_ISDIR(info.st_mode) else 'not a directory'} of "
                f"uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):o}): another user could "
                "take over the desktop's display. The desktop does not start; ask the "
                f"site's admins to fix {path} on this node (root, mode 1777).")
    return ""


def login_shell() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


def processes(proc: Path = PROC) -> Iterator[tuple[int, str, int]]:
    """(pid, state, parent pid) of every process, from /proc/PID/stat."""
    for entry in proc.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat[stat.rfind(")") + 2:].split()[:2]
        yield int(entry.name), state, int(ppid)


def process_tree(root: int, proc: Path = PROC) -> set[int]:
    """``root`` and every living process descended from it (zombies left out)."""
    children: dict[int, list[int]] = {}
    for pid, state, ppid in processes(proc):
        if state != "Z":
            children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def report(api_url: str, token: str, payload: Report, patience: float) -> None:
    """POST to the hub's report route; retry for ``patience`` seconds while the hub is away
    or busy (5xx, 429: a hub restart must not kill a job that is about to be re-attached)."""
    import urllib.error
    import urllib.request

    data = json.dumps(payload.body()).encode()
    url = api_url.rstrip("/") + REPORT_PATH
    deadline = time.monotonic() + patience
    attempt = 0
    while True:
        request = urllib.request.Request(
            url, data=data, method="POST",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")[:300]
            retry = exc.code >= 500 or exc.code == 429
            if not retry or time.monotonic() > deadline:
                raise SystemExit(f"the hub refused the report ({exc.code}): {body}") from None
            say(f"the hub answered {exc.code}; retrying")
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"the hub at {url} did not answer; giving up") from None
            if attempt % 10 == 0:
                say(f"hub not reachable at {url} ({exc}); retrying")
        attempt += 1
        time.sleep(min(0.2 * attempt, 2.0))


def unix_get(path: str, target: str, token: str, timeout: float) -> int:
    """GET ``target`` from the HTTP server on the Unix socket ``path``, as the server's owner
    (its token); the status code (a redirect, e.g. to the hub's login, is not followed)."""
    import http.client

    class UnixConnection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)

    connection = UnixConnection("localhost", timeout=timeout)
    try:
        connection.request("GET", target, headers={"Authorization": f"token {token}"})
        return connection.getresponse().status
    finally:
        connection.close()


def wait_socket(child: subprocess.Popen[bytes], path: str, deadline: float) -> str:
    """``"listening"`` once the server accepts on its Unix socket; ``"died"`` / ``"timeout"``
    otherwise. Nobody else can create the socket (its directory is the user's, mode 0700), so
    there is no owner to check: a stat every 20 ms while the server starts, a connect once the
    file is there."""
    while time.monotonic() < deadline:
        if socket_answers(path):
            return "listening"
        if child.poll() is not None:
            return "died"
        time.sleep(0.02)
    return "timeout"


def wait_app(child: subprocess.Popen[bytes], path: str, target: str, token: str,
             deadline: float) -> str:
    """Ask ``target`` (through the server, as the server's owner) until it answers 2xx: ""
    then, else why not. The server starts the app on the first request (jupyter-server-proxy)."""
    last = "no answer"
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return f"the server exited with code {child.returncode}"
        try:
            status = unix_get(path, target, token,
                              max(1.0, min(60.0, deadline - time.monotonic())))
        except OSError as exc:
            last = str(exc)
        else:
            if 200 <= status < 300:
                return ""
            last = f"HTTP {status}"
        time.sleep(0.25)
    return last


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def end_time(env: dict[str, str], started: float) -> int:
    """When the job's time limit ends (0: unknown): the job started at most a moment before
    this process did, so this is the scheduler's end, give or take that moment."""
    try:
        runtime = int(env.get(Env.RUNTIME, "0"))
    except ValueError:
        return 0
    return int(started) + runtime if runtime > 0 else 0


def wait_warning(child: subprocess.Popen[bytes], ends: int, before: int) -> int:
    """Wait for the server to exit; say in the log ``before`` seconds ahead that the time
    limit is about to stop it. Meanwhile collect the orphans it leaves (reap)."""
    warn_at = ends - before if ends else 0
    while True:
        timeout = REAP_EVERY
        if warn_at:
            timeout = min(timeout, max(0.0, warn_at - time.time()))
        try:
            return child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        reap(child)
        if warn_at and time.time() >= warn_at:
            minutes = max(1, round((ends - time.time()) / 60))
            say(f"WARNING: this server stops at {utc(ends)} (in {minutes} min), when the "
                "job's time limit ends. Save your work; start the server again for more time.")
            warn_at = 0


def die_with_launcher() -> Callable[[], None] | None:
    """For ``Popen(preexec_fn=...)``: the server gets SIGKILL when the launcher dies
    (PR_SET_PDEATHSIG), and does not start if the launcher died before that was set. None
    where the kernel does not offer it."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    launcher = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != launcher:  # too late: the launcher is gone, start nothing
            raise OSError("the launcher exited before the server started")

    return preexec


def marked(mark: str, proc: Path = PROC) -> set[int]:
    """This user's living processes (but this one) whose environment carries ``MARK=mark``."""
    needle, me, uid = f"{MARK}={mark}".encode(), os.getpid(), os.getuid()
    found = set()
    for pid, state, _ in processes(proc):
        if pid == me or state == "Z":
            continue
        try:
            if (proc / str(pid)).stat().st_uid != uid:
                continue
            if needle in (proc / str(pid) / "environ").read_bytes().split(b"\0"):
                found.add(pid)
        except OSError:
            continue
    return found


def end_orphaned(server: int, mark: str) -> None:
    """The launcher died: SIGKILL the server and every process carrying the launcher's mark,
    until none is left (a process forked meanwhile: the next round)."""
    signal_all({server}, signal.SIGKILL)
    for _ in range(40):
        left = marked(mark)
        if not left:
            return
        signal_all(left, signal.SIGKILL)
        time.sleep(0.05)


def adopt_orphans() -> bool:
    """Become the child subreaper (Linux): what the server starts stays below the launcher
    when its parent exits, so end_the_rest() finds it and the scheduler's tree-following
    process tracking still sees it. False where the kernel does not offer it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError):  # no _ctypes, no prctl (not Linux)
        return False


def reap(server: subprocess.Popen[bytes]) -> None:
    """Collect the exit status of the launcher's children other than the server (orphans it
    adopted), so none stays a zombie. The server's own status stays for ``server.wait()``."""
    me = os.getpid()
    for pid, state, ppid in processes():
        if state == "Z" and ppid == me and pid != server.pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def end_the_rest(server: subprocess.Popen[bytes], grace: float) -> None:
    """Once the server has exited: SIGTERM every process still below the launcher (what the
    app left running), SIGKILL what is still there after ``grace`` seconds."""
    me = os.getpid()
    spared = {me} | SPARED
    left = process_tree(me) - spared
    if not left:
        return
    say(f"ending {len(left)} process(es) the server left running")
    told: set[int] = set()
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        signal_all(left - told, signal.SIGTERM)  # and whatever they started meanwhile
        told |= left
        time.sleep(0.05)
        reap(server)
        left = process_tree(me) - spared
    for _ in range(40):  # a process forked between the read and the kill: next round
        if not left:
            return
        signal_all(left, signal.SIGKILL)
        time.sleep(0.05)
        reap(server)
        left = process_tree(me) - spared
    if left:
        say(f"could not end processes {sorted(left)}; the scheduler ends them with the job")


def signal_all(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop(child: subprocess.Popen[bytes], grace: float = 5.0) -> int:
    """Stop the server (SIGTERM, SIGKILL after 10 s), then what it left running."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    code = child.wait()
    end_the_rest(child, grace)
    return code


def server_command(args: Sequence[str], sock: str) -> list[str]:
    """The server's command, listening on the Unix socket ``sock``: ``{socket}`` in a word is
    replaced, else ``--sock=PATH`` (jupyter-server's option) is added."""
    if any("{socket}" in word for word in args):
        return [word.replace("{socket}", sock) for word in args]
    return [*args, f"--sock={sock}"]


def number(env: dict[str, str], name: str, default: float, top: float) -> float:
    """A number from the job's environment, between 0 and ``top`` (else ``default``)."""
    try:
        value = float(env.get(name, default))
    except ValueError:
        return default
    return min(value, top) if value >= 0 else default  # NaN and negatives: the default


def keep() -> int:
    """The keeper (forwarder.Keeper): holds the port it was given beside the launcher; if the
    launcher dies without a word, ends what it started, tells the hub that the server ended
    (however long the hub takes) and only then exits, letting the port go."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, signal.SIG_IGN)  # the launcher answers those; SIGKILL ends us
    hello = json.loads(sys.stdin.buffer.readline() or b"{}")
    if not hello or not launcher_died(sys.stdin.buffer):
        return 0
    port = int(hello["port"])
    say(f"the launcher died: ending what it started; port {port} is kept until the hub has "
        "heard that the server ended")
    end_orphaned(int(hello["server"]), str(hello["mark"]))
    ending = Report(port, server_name=hello["server_name"], submission=hello["submission"],
                    ended=True)
    try:
        report(hello["api_url"], hello["token"], ending, patience=ENDED_PATIENCE)
    except SystemExit as exc:  # 4xx: the hub stopped the server itself (and took the route)
        say(str(exc))
    say(f"the hub has heard; letting port {port} go")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == [KEEP]:
        return keep()
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise SystemExit("usage: python -m hpcspawner.launcher -- COMMAND [ARGS...]")
    started = time.time()
    say(f"started (Python {sys.version.split()[0]})")
    env = dict(os.environ)
    try:
        token, private_env = read_secrets(env.pop(Env.SECRET_FILE, ""))
    except HandOffError as exc:
        say(str(exc))
        return 2
    env.update(private_env)
    # the user's shell for Jupyter's terminals (a login shell of it), when the scheduler
    # gave none (SLURM's --export=ALL from a bare environment, HTCondor's getenv = false)
    env.setdefault("SHELL", login_shell())
    app_environment(env)
    env["JUPYTERHUB_API_TOKEN"] = token
    env["JPY_API_TOKEN"] = token
    ends = end_time(env, started)
    if ends:
        env[Env.END_TIME] = str(ends)
        say(f"the job's time limit ends at {utc(ends)}; the server stops then")
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    timeout = number(env, Env.START_TIMEOUT, START_TIMEOUT, 86400.0)
    deadline = time.monotonic() + timeout
    grace = number(env, Env.STOP_GRACE, STOP_GRACE, 60.0)
    if env.get(Env.APP) == "desktop" and x11_dir_problem():
        say(x11_dir_problem())
        return 5
    if not adopt_orphans():
        say("cannot become the subreaper of the server's processes (prctl unavailable): "
            "what the server leaves running when it stops is left to the scheduler")
    current: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: object) -> None:
        if current and current[-1].poll() is None:
            current[-1].send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)

    # The port is ours before the server starts, and stays ours until the hub has dropped
    # the route (forwarder.py); the server listens on a socket only this user can reach.
    listener = listen()
    port = int(listener.getsockname()[1])
    private = private_dir()
    sock = str(private / SOCKET_NAME)
    # jupyter-server refuses --sock beside a port other than its default (8888); the
    # single-user server takes its port from this URL. Nothing listens on that port.
    env["JUPYTERHUB_SERVICE_URL"] = f"http://127.0.0.1:{JUPYTER_DEFAULT_PORT}{prefix}"
    env[Env.PORT] = str(port)
    env[MARK] = mark = os.urandom(8).hex()
    command = server_command(args, sock)
    say(f"starting {command[0]} on {sock}; the hub reaches it through port {port}")
    # the server dies with the launcher (PR_SET_PDEATHSIG); the keeper, which holds the port
    # beside the launcher, ends what is left if the launcher dies
    child = subprocess.Popen(command, env=env, preexec_fn=die_with_launcher())
    current.append(child)
    hello = {"api_url": env.get("JUPYTERHUB_API_URL", ""), "token": token, "port": port,
             "server_name": env.get("JUPYTERHUB_SERVER_NAME", ""), "server": child.pid,
             "submission": env.get(Env.SUBMISSION, ""), "mark": mark}
    keeper = Keeper(listener, [sys.executable, "-m", "hpcspawner.launcher", KEEP],
                    json.dumps(hello).encode())
    SPARED.add(keeper.pid)
    forwarder = Forwarder(listener, sock)
    try:
        import urllib.request  # noqa: F401  (here: while the server starts)

        code = serve(child, forwarder, env, token, port, prefix, deadline, timeout, ends,
                     grace)
    finally:
        keeper.release()
        forwarder.close()
        with contextlib.suppress(OSError):
            (private / SOCKET_NAME).unlink(missing_ok=True)
            private.rmdir()
    return code


def serve(child: subprocess.Popen[bytes], forwarder: Forwarder, env: dict[str, str],
          token: str, port: int, prefix: str, deadline: float, timeout: float, ends: int,
          grace: float) -> int:
    """From the server's start to its end: wait until it listens (and its app answers),
    forward, report to the hub, wait; once it exits, stop forwarding and tell the hub."""
    state = wait_socket(child, forwarder.target, deadline)
    if state != "listening":
        code = stop(child, grace)
        say(f"the server did not start listening ({state}, exit code {code})")
        return code or 1
    say("the server listens")
    forwarder.start()
    ready = env.get(Env.APP_READY, "")
    if ready:
        target = f"{prefix.rstrip('/')}/{ready.lstrip('/')}"
        say(f"waiting for the app to answer at {target}")
        why = wait_app(child, forwarder.target, target, token, deadline)
        if why:
            say(f"the app did not answer at {target} before the start timeout ({why}); see "
                "the messages above")
            stop(child, grace)
            return 4
    host = env.get(Env.REPORT_HOST) or socket.gethostname()
    api_url = env.get("JUPYTERHUB_API_URL", "")
    name, submission = env.get("JUPYTERHUB_SERVER_NAME", ""), env.get(Env.SUBMISSION, "")
    try:
        report(api_url, token, Report(port, host, name, submission, ends), patience=timeout)
    except SystemExit as exc:
        say(str(exc))
        stop(child, grace)
        return 1
    say(f"listening on {host}:{port}; reported to the hub")
    before = int(number(env, Env.WALLTIME_WARNING, WALLTIME_WARNING, 10**9))
    code = wait_warning(child, ends, before)
    # The server is gone: forward nothing more, and let the port go only once the hub has
    # dropped the route (until then no other process can take the port and the traffic).
    forwarder.refuse()
    say(f"the server exited with code {code}; telling the hub before giving up port {port}")
    try:
        report(api_url, token, Report(port, server_name=name, submission=submission,
                                      ended=True), patience=ENDED_PATIENCE)
        say("the hub took the route down")
    except SystemExit as exc:  # 4xx: the hub stopped the server itself (and took the route)
        say(f"{exc}; the hub takes the route down when it stops the server")
    end_the_rest(child, grace)
    return code


if __name__ == "__main__":
    sys.exit(main())
