"""The stand-in daemon: a Unix-socket server (SO_PEERCRED tells who is asking, like
HTCondor's FS authentication) in front of the Pool, and a 0.1 s tick thread that plays the
negotiators, the starter's process reaping and the schedd's periodic policy."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import signal
import socket
import socketserver
import struct
import sys
import threading
import traceback
from types import FrameType

from .constants import DEFAULT_STATE_DIR, socket_path
from .pool import Config, Pool
from .tools import Request, run

MAX_REQUEST = 64 * 1024 * 1024


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        uid = peer_uid(self.request)
        line = self.rfile.readline(MAX_REQUEST)
        if not line:
            return
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            return
        if data.get("tool") == "ping":
            reply = {"stdout": "", "stderr": "", "rc": 0}
        else:
            user = user_name(uid)
            req = Request(tool=str(data.get("tool", "")),
                          argv=[str(a) for a in data.get("argv", [])], uid=uid,
                          user=user, cwd=str(data.get("cwd", "/")),
                          superuser=uid == 0 or user in self.server.pool.config.super_users,
                          argv0=str(data.get("argv0", "")),
                          env={str(k): str(v) for k, v in data.get("env", {}).items()},
                          submit_text=data.get("submit_text"),
                          submit_open_error=data.get("submit_open_error"))
            try:
                result = run(self.server.pool, req)
                reply = {"stdout": result.stdout, "stderr": result.stderr, "rc": result.rc}
            except Exception as e:  # a stand-in bug must not look like "schedd down"
                traceback.print_exc()
                reply = {"stdout": "", "stderr": f"HTCondor stand-in internal error: {e!r}\n",
                         "rc": 1}
        self.wfile.write(json.dumps(reply).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, pool: Pool) -> None:
        self.pool = pool
        super().__init__(path, _Handler)


def _ticker(pool: Pool, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        try:
            pool.tick()
        except Exception as e:  # keep the daemon alive; the error goes to the log
            print(f"tick failed: {e!r}", file=sys.stderr, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    host = socket.gethostname()
    p = argparse.ArgumentParser(description="HTCondor stand-in daemon (schedd + negotiators + "
                                "startds for this host or named nodes). Not HTCondor.",
                                fromfile_prefix_chars="@")
    p.add_argument("--socket", default=socket_path())
    p.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    p.add_argument("--pidfile", default=None)
    p.add_argument("--schedd-name", action="append", default=None,
                   help="names condor_* -name accepts (default: the hostname)")
    p.add_argument("--pool", action="append", default=None,
                   help="pool names -pool accepts (default: 127.0.0.1:9618 and the hostname)")
    p.add_argument("--main-cycle", type=float, default=20.0)
    p.add_argument("--fast-cycle", type=float, default=1.0)
    p.add_argument("--jupyter-slots", type=int, default=2)
    p.add_argument("--periodic-interval", type=float, default=5.0)
    p.add_argument("--queue-super-user", action="append", default=[], metavar="NAME",
                   help="QUEUE_SUPER_USERS besides root and condor (repeat)")
    p.add_argument("--node", action="append", default=[], metavar="NAME=NETNS",
                   help="an execute node: its host name and network namespace (repeat; "
                   "default: one startd on this host)")
    args = p.parse_args(argv)
    args.nodes = tuple(tuple(n.split("=", 1)) for n in args.node)
    if any(len(n) != 2 or not all(n) for n in args.nodes):
        p.error("--node takes NAME=NETNS, e.g. node01=hpc-node01")
    args.schedd_name = args.schedd_name or [host]
    args.pool = args.pool or ["127.0.0.1:9618", host]
    args.host = host
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = Config(host=args.host, state_dir=args.state_dir, schedd_names=args.schedd_name,
                    pools=args.pool, main_cycle=args.main_cycle, fast_cycle=args.fast_cycle,
                    jupyter_slots=args.jupyter_slots, periodic_interval=args.periodic_interval,
                    nodes=args.nodes,
                    super_users=frozenset({"root", "condor", *args.queue_super_user}))
    pool = Pool(config)
    sock_dir = os.path.dirname(args.socket)
    os.makedirs(sock_dir, mode=0o755, exist_ok=True)
    if os.path.exists(args.socket):
        os.unlink(args.socket)
    server = _Server(args.socket, pool)
    os.chmod(args.socket, 0o666)
    with open(args.socket + ".statedir", "w", encoding="utf-8") as f:
        f.write(os.path.abspath(args.state_dir) + "\n")
    os.chmod(args.socket + ".statedir", 0o644)
    if args.pidfile:
        with open(args.pidfile, "w", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ticker = threading.Thread(target=_ticker, args=(pool, stop), daemon=True)
    ticker.start()
    print(f"condor stand-in: pid {os.getpid()}, socket {args.socket}, state {args.state_dir}, "
          f"main cycle {args.main_cycle}s, fast cycle {args.fast_cycle}s", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        ticker.join(timeout=2)
        pool.shutdown()
        server.server_close()
        for path in (args.socket, args.socket + ".statedir", args.pidfile):
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    return 0
