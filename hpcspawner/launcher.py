"""Runs inside the batch job: picks a free port, starts the app, reports "listening" to the hub.

Usage (written by the job template)::

    python -m hpcspawner.launcher -- /opt/venv/bin/jupyterhub-singleuser [args ...]

Reads the API token from ``$HPCSPAWNER_SECRET_FILE`` (mode 0600, owned by the user) and
deletes that file, so the token is never on a command line, in the script or in the
scheduler's records. ``{port}`` in the command is replaced by the chosen port.
Only the standard library is used: this runs in whatever Python the site's jobs use.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPORT_PATH = "/hpcspawner/report"


def say(message: str) -> None:
    print(f"[hpcspawner-launcher] {message}", flush=True)


def read_token(path: str) -> str:
    secret = Path(path)
    token = secret.read_text(encoding="utf-8").strip()
    try:
        secret.unlink()
    except OSError as exc:
        say(f"could not delete {secret}: {exc.strerror}")
    if not token:
        raise SystemExit(f"{secret} is empty: the hub did not hand over the server's token")
    return token


def free_port(bind_ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((bind_ip if bind_ip != "0.0.0.0" else "", 0))
        return int(sock.getsockname()[1])


def wait_listening(child: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """True once something accepts TCP connections on ``port``; False if the child died."""
    while time.monotonic() < deadline:
        if child.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def report(api_url: str, token: str, payload: dict[str, object], patience: float) -> None:
    """POST the address to the hub; retry for ``patience`` seconds while the hub is away
    (a hub restart must not kill a job that is about to be re-attached)."""
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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        raise SystemExit("usage: python -m hpcspawner.launcher -- COMMAND [ARGS...]")
    env = dict(os.environ)
    token = read_token(env.pop("HPCSPAWNER_SECRET_FILE", ""))
    env["JUPYTERHUB_API_TOKEN"] = token
    env["JPY_API_TOKEN"] = token
    bind_ip = env.get("HPCSPAWNER_BIND_IP", "0.0.0.0")
    port = free_port(bind_ip)
    prefix = env.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    env["JUPYTERHUB_SERVICE_URL"] = f"http://{bind_ip}:{port}{prefix}"
    env["HPCSPAWNER_PORT"] = str(port)
    command = [word.replace("{port}", str(port)) for word in args]
    say(f"starting {command[0]} on port {port}")
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, _frame: object) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(sig, forward)

    timeout = float(env.get("HPCSPAWNER_START_TIMEOUT", "300"))
    if not wait_listening(child, port, time.monotonic() + timeout):
        if child.poll() is None:
            child.terminate()
        code = child.wait()
        say(f"{command[0]} did not start listening on port {port} (exit code {code})")
        return code or 1
    host = env.get("HPCSPAWNER_REPORT_HOST") or socket.gethostname()
    api_url = env.get("JUPYTERHUB_API_URL", "")
    try:
        report(api_url, token, {
            "host": host, "port": port, "server_name": env.get("JUPYTERHUB_SERVER_NAME", ""),
            "submission": env.get("HPCSPAWNER_SUBMISSION", ""),
        }, patience=timeout)
    except SystemExit as exc:
        say(str(exc))
        child.terminate()
        child.wait()
        return 1
    say(f"listening on {host}:{port}; reported to the hub")
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
