"""Runs inside the job, in the launcher: the one TCP port the hub routes to.

The server (and every app inside it) listens on a Unix socket in a directory only the job's
user can enter. The launcher binds the TCP port BEFORE the server starts and holds it until
the hub has taken the route away, forwarding each connection to that socket. So no other
process can ever answer on the port while the route exists:

- the port is the launcher's from the first moment (no window before the server binds);
- the socket is dual-stack (``[::]`` with ``IPV6_V6ONLY`` off), so nobody can bind the same
  port on ``[::1]``, on ``[::]`` v6-only, on ``127.0.0.1`` or on ``0.0.0.0`` beside it (the
  kernel refuses a second listener on a port a wildcard listener holds, and SO_REUSEPORT only
  joins sockets of the same user);
- when the server exits, the launcher first stops forwarding, tells the hub (which deletes
  the route), and only then lets the port go;
- a keeper (``Keeper``, a small process the launcher starts beside the server) holds the
  same socket: if the launcher dies without letting the port go itself (SIGKILL,
  the OOM killer), the keeper still holds it, unanswered, while it ends what the launcher
  started and tells the hub; it lets the port go only once the hub has answered.

Standard library only; asyncio is imported when forwarding starts, while the server starts.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading
from pathlib import Path

TYPE_CHECKING = False  # typing is not imported: the launcher loads this before the server
if TYPE_CHECKING:
    from typing import Any

SOCKET_NAME = "server.sock"
MAX_SUN_PATH = 100  # sockaddr_un holds 108 bytes; keep a margin
CHUNK = 256 * 1024


def listen() -> socket.socket:
    """A listening TCP socket on a free port of every address, IPv4 and IPv6 alike (one
    dual-stack socket); IPv4 only where the node has no IPv6 (then nobody can listen on
    IPv6 either)."""
    try:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("0.0.0.0", 0))
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
    sock.listen(128)
    return sock


def private_dir() -> Path:
    """A new directory only this user can enter (mode 0700, a random name made with
    O_EXCL semantics): the server's socket goes in it. ``$TMPDIR`` when its path is short
    enough for a Unix socket, else /tmp."""
    base = tempfile.gettempdir()
    if len(base) + 40 > MAX_SUN_PATH:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="hpcspawner-", dir=base))


def socket_answers(path: str) -> bool:
    """Whether something listens on the Unix socket ``path`` (a connect, nothing sent)."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
    return True


class Forwarder:
    """Forward every connection on ``listener`` to the Unix socket ``target``, in a thread
    with its own event loop. ``refuse()`` stops forwarding (new and open connections are
    closed) but keeps the port; ``close()`` lets the port go."""

    def __init__(self, listener: socket.socket, target: str) -> None:
        self.listener = listener
        self.target = target
        self.refusing = False
        self._loop: Any = None
        self._writers: set[Any] = set()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forwarder", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        import asyncio

        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(asyncio.start_server(self._handle, sock=self.listener,
                                                     limit=CHUNK))
        self._ready.set()
        loop.run_forever()

    async def _handle(self, client_r: Any, client_w: Any) -> None:
        import asyncio

        if self.refusing:
            client_w.close()
            return
        try:
            server_r, server_w = await asyncio.open_unix_connection(self.target, limit=CHUNK)
        except OSError:
            client_w.close()
            return
        self._writers.update((client_w, server_w))
        try:
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        finally:
            for writer in (client_w, server_w):
                self._writers.discard(writer)
                writer.close()

    def refuse(self) -> None:
        """Forward nothing more: close every open connection; the port stays held."""
        self.refusing = True
        if self._loop is not None:
            done = threading.Event()

            def close_all() -> None:
                for writer in list(self._writers):
                    writer.close()
                done.set()

            self._loop.call_soon_threadsafe(close_all)
            done.wait(5)

    def close(self) -> None:
        """Let the port go (after the hub took the route away)."""
        self.refuse()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        with contextlib.suppress(OSError):
            self.listener.close()


class Keeper:
    """A small process that holds ``listener`` (the job's port) beside the launcher, started
    with ``argv`` and told ``hello`` on its standard input. When the launcher dies without a
    word (SIGKILL, the OOM killer) the keeper still holds the port, unanswered, while it ends
    what the launcher started and tells the hub, and lets it go only once the hub has
    answered. ``release()`` (the launcher lets the port go itself) ends it at once."""

    def __init__(self, listener: socket.socket, argv: list[str], hello: bytes) -> None:
        import subprocess

        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE,
                                        pass_fds=(listener.fileno(),))
        self.pid = self.process.pid
        assert self.process.stdin is not None
        self._stdin = self.process.stdin
        with contextlib.suppress(OSError):
            self._stdin.write(hello + b"\n")
            self._stdin.flush()

    def release(self) -> None:
        """The launcher lets the port go itself: the keeper exits at once (collected here)."""
        with contextlib.suppress(OSError):
            self._stdin.write(b"x")
            self._stdin.close()
        self.process.wait()


def launcher_died(stream: Any) -> bool:
    """The keeper's side: wait on ``stream`` (its standard input, after the hello) until the
    launcher says it lets the port go itself (False) or dies without a word (True)."""
    try:
        return not stream.read(1)
    except OSError:
        return True


async def _pipe(reader: Any, writer: Any) -> None:
    """Copy until end of file, then pass the end on (half-close) rather than hanging up."""
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()
