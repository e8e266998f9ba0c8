"""Runs inside the batch job: starts the app on a free port, checks that the socket listening
on it is the app's own, reports "listening" to the hub.

Usage (written by the job template)::

    python -m hpcspawner.launcher -- /opt/venv/bin/jupyterhub-singleuser [args ...]

Reads the API token from ``$HPCSPAWNER_SECRET_FILE`` (mode 0600, owned by the user) and
deletes that file, so the token is never on a command line, in the script or in the
scheduler's records. ``{port}`` in the command is replaced by the chosen port.
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
from collections.abc import Iterator, Sequence
from pathlib import Path

# urllib.request (with http.client and email) takes ~25 ms to import: it is imported where it
# is used, and main() first imports it while the server starts, off the path to "ready".

REPORT_PATH = "/hpcspawner/report"
SHARE = Path(__file__).with_name("share")
PROC = Path("/proc")
PORT_ATTEMPTS = 3
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
REAP_EVERY = 30.0  # seconds


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
            data = json.loads(text)
            token = str(data.get("token", ""))
            env = {str(k): str(v) for k, v in dict(data.get("env", {})).items()}
        except (ValueError, TypeError, AttributeError):
            raise HandOffError(f"{secret} is not what the hub writes; start the server "
                               "again") from None
    if not token:
        raise HandOffError(f"{secret} is empty: the hub did not hand over the server's token")
    return token, env


class HandOffError(Exception):
    """The job cannot take over from the hub (no token file, unreadable, empty)."""


def app_environment(env: dict[str, str]) -> None:
    """Point the server at this package's files for the profile's app (apps.py): the
    jupyter-server-proxy config file, and the default desktop session."""
    if env.get("HPCSPAWNER_SERVER_PROXY"):
        extra = env.get("JUPYTER_CONFIG_PATH")
        env["JUPYTER_CONFIG_PATH"] = str(SHARE / "jupyter") + (f":{extra}" if extra else "")
    if env.get("HPCSPAWNER_APP") == "desktop" and not env.get(
            "JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"):
        env["JUPYTER_REMOTE_DESKTOP_PROXY_XSTARTUP"] = str(SHARE / "xstartup")


def login_shell() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


def free_port(bind_ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((bind_ip if bind_ip != "0.0.0.0" else "", 0))
        return int(sock.getsockname()[1])


def listeners(port: int, proc: Path = PROC) -> dict[int, int]:
    """Socket inode -> owner uid of every TCP socket LISTENing on ``port`` (IPv4 and IPv6),
    from the kernel's tables: a connect() cannot tell whose socket answers."""
    found: dict[int, int] = {}
    for table in ("net/tcp", "net/tcp6"):
        try:
            lines = (proc / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
                continue
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                found[int(fields[9])] = int(fields[7])
    return found


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


def socket_inodes(pids: set[int], proc: Path = PROC) -> set[int]:
    inodes: set[int] = set()
    for pid in pids:
        try:
            fds = list((proc / str(pid) / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def port_owner(child: subprocess.Popen[bytes], port: int) -> str:
    """``"ours"`` when every listener on ``port`` is a socket of ``child`` or its
    descendants, ``"foreign"`` when any other process (another user's job on a shared node)
    listens there, ``"none"`` while nobody does."""
    found = listeners(port)
    if not found:
        return "none"
    if any(uid != os.getuid() for uid in found.values()):
        return "foreign"
    ours = socket_inodes(process_tree(child.pid))
    return "ours" if set(found) <= ours else "foreign"


def wait_listening(child: subprocess.Popen[bytes], port: int, deadline: float) -> str:
    """``"ours"`` once the child's own socket listens on ``port``; ``"foreign"`` if another
    process holds it; ``"died"`` / ``"timeout"`` otherwise."""
    while time.monotonic() < deadline:
        exited = child.poll() is not None
        # Another listener first: the server could not bind (or may not yet have tried).
        owner = port_owner(child, port)
        if owner != "none":
            return owner
        if exited:
            return "died"
        time.sleep(0.02)  # a few reads of /proc/net/tcp: cheap next to the server's start
    return "timeout"


def report(api_url: str, token: str, payload: dict[str, object], patience: float) -> None:
    """POST the address to the hub; retry for ``patience`` seconds while the hub is away
    (a hub restart must not kill a job that is about to be re-attached)."""
    import urllib.error
    import urllib.request

    data = json.dumps(payload).encode()
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
            if exc.code < 500 or time.monotonic() > deadline:
                raise SystemExit(f"the hub refused the report ({exc.code}): {body}") from None
            say(f"the hub answered {exc.code}; retrying")
        except OSError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"the hub at {url} did not answer; giving up") from None
            if attempt % 10 == 0:
                say(f"hub not reachable at {url} ({exc}); retrying")
        attempt += 1
        time.sleep(min(0.2 * attempt, 2.0))


def wait_app(child: subprocess.Popen[bytes], url: str, token: str, deadline: float) -> str:
    """Ask ``url`` (through the server, as the server's owner) until it answers 2xx: "" then,
    else why not. The server starts the app on the first request (jupyter-server-proxy)."""
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None  # a redirect (e.g. to the hub's login) is not an answer from the app

    opener = urllib.request.build_opener(NoRedirect)
    last = "no answer"
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return f"the server exited with code {child.returncode}"
        request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        try:
            with opener.open(request, timeout=max(1.0, min(60.0, deadline - time.monotonic()))):
                return ""
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    return last


def utc(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def end_time(env: dict[str, str], started: float) -> int:
    """When the job's time limit ends (0: unknown): the job started at most a moment before
    this process did, so this is the scheduler's end, give or take that moment."""
    try:
        runtime = int(env.get("HPCSPAWNER_RUNTIME", "0"))
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
    left = process_tree(me) - {me}
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
        left = process_tree(me) - {me}
    for _ in range(40):  # a process forked between the read and the kill: next round
        if not left:
            return
        signal_all(left, signal.SIGKILL)
        time.sleep(0.05)
        reap(server)
        left = process_tree(me) - {me}
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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise SystemExit("usage: python -m hpcspawner.launcher -- COMMAND [ARGS...]")
    started = time.time()
    say(f"started (Python {sys.version.split()[0]})")
    env = dict(os.environ)
    try:
        token, private_env = read_secrets(env.pop("HPCSPAWNER_SECRET_FILE", ""))
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
        env["HPCSPAWNER_END_TIME"] = str(ends)
        say(f"the job's time limit ends at {utc(ends)}; the server stops then")
    bind_ip = env.get("HPCSPAWNER_BIND_IP", "0.0.0.0")
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    timeout = float(env.get("HPCSPAWNER_START_TIMEOUT", "300"))
    deadline = time.monotonic() + timeout
    try:
        grace = float(env.get("HPCSPAWNER_STOP_GRACE", "5"))
    except ValueError:
        grace = 5.0
    grace = min(grace, 60.0) if grace >= 0 else 5.0  # NaN and negatives: the default
    if not adopt_orphans():
        say("cannot become the subreaper of the server's processes (prctl unavailable): "
            "what the server leaves running when it stops is left to the scheduler")
    current: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: object) -> None:
        if current and current[-1].poll() is None:
            current[-1].send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)

    # The server binds the port itself; we report it only once the listening socket is
    # provably the server's (owner and inode). Another process on a shared node that
    # listens there first costs one more attempt on another port, never alice's traffic.
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = free_port(bind_ip)
        env["JUPYTERHUB_SERVICE_URL"] = f"http://{bind_ip}:{port}{prefix}"
        env["HPCSPAWNER_PORT"] = str(port)
        command = [word.replace("{port}", str(port)) for word in args]
        say(f"starting {command[0]} on port {port}")
        child = subprocess.Popen(command, env=env)
        current.append(child)
        import urllib.request  # noqa: F401  (here: while the server starts)
        owner = wait_listening(child, port, deadline)
        if owner == "ours":
            say(f"the server listens on port {port}")
            break
        code = stop(child, grace)
        if owner == "foreign":
            say(f"another process listens on port {port}; not reporting it "
                f"(attempt {attempt} of {PORT_ATTEMPTS})")
            continue
        say(f"{command[0]} did not start listening on port {port} (exit code {code})")
        return code or 1
    else:
        say(f"every port tried ({PORT_ATTEMPTS}) was taken by another process before the "
            "server could bind it; giving up")
        return 3
    ready = env.get("HPCSPAWNER_APP_READY", "")
    if ready:
        local = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_ip, bind_ip)
        local = f"[{local}]" if ":" in local else local
        url = f"http://{local}:{port}{prefix.rstrip('/')}/{ready.lstrip('/')}"
        say(f"waiting for the app to answer at {prefix.rstrip('/')}/{ready.lstrip('/')}")
        why = wait_app(child, url, token, deadline)
        if why:
            say(f"the app did not answer at {url} before the start timeout ({why}); see "
                "the messages above")
            stop(child, grace)
            return 4
    host = env.get("HPCSPAWNER_REPORT_HOST") or socket.gethostname()
    api_url = env.get("JUPYTERHUB_API_URL", "")
    try:
        report(api_url, token, {
            "host": host, "port": port, "server_name": env.get("JUPYTERHUB_SERVER_NAME", ""),
            "submission": env.get("HPCSPAWNER_SUBMISSION", ""), "ends": ends,
        }, patience=timeout)
    except SystemExit as exc:
        say(str(exc))
        stop(child, grace)
        return 1
    say(f"listening on {host}:{port}; reported to the hub")
    try:
        before = int(env.get("HPCSPAWNER_WALLTIME_WARNING", "900"))
    except ValueError:
        before = 900
    code = wait_warning(child, ends, before)
    end_the_rest(child, grace)
    return code


if __name__ == "__main__":
    sys.exit(main())
