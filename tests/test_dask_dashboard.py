"""The Dask dashboard of a server's cluster is its user's alone (docs/dask.md): the
scheduler's answers only connections from the user's own account (the node's loopback is
shared by every user on the node), the workers have none."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from hpcspawner.dask import WORKER_HTTP_ROUTES, WORKER_NO_DASHBOARD, own_user_only, peer_uid

ASK = ("import socket, sys\n"
       "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
       "try:\n"
       "    s.sendall(b'GET /status HTTP/1.0\\r\\n\\r\\n')\n"
       "    said = s.recv(100)\n"
       "except OSError:\n"
       "    said = b''\n"
       "print(said.decode(errors='replace').split('\\r\\n')[0] or 'closed')\n")


def ask(port: int, user: str | None = None) -> str:
    return subprocess.run([sys.executable, "-c", ASK, str(port)], user=user, check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()


def test_the_kernel_lists_who_owns_a_loopback_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, address = server.accept()
        with client, accepted:
            assert peer_uid(address, accepted.getsockname()) == os.getuid()
            assert peer_uid(("127.0.0.1", 1), accepted.getsockname()) is None


@pytest.mark.skipif(os.getuid() != 0, reason="connects as another account (needs root)")
def test_the_dashboard_answers_its_own_user_and_closes_on_everyone_else() -> None:
    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    class Status(RequestHandler):
        def get(self) -> None:
            self.write("dashboard")

    async def scenario() -> tuple[str, str]:
        server = HTTPServer(Application([("/status", Status)]))
        server.handle_stream = own_user_only(server.handle_stream)  # type: ignore[method-assign]
        [sock] = __import__("tornado.netutil").netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets([sock])
        port = sock.getsockname()[1]
        try:
            mine = await asyncio.to_thread(ask, port)
            theirs = await asyncio.to_thread(ask, port, "nobody")
        finally:
            server.stop()
        return mine, theirs

    mine, theirs = asyncio.run(scenario())
    assert mine == "HTTP/1.1 200 OK"
    assert theirs == "closed"


def test_workers_start_without_a_dashboard_on_the_loopback_serving_nothing() -> None:
    assert WORKER_NO_DASHBOARD == ("--no-dashboard", "--dashboard-address", "127.0.0.1:0")
    assert WORKER_HTTP_ROUTES == "export DASK_DISTRIBUTED__WORKER__HTTP__ROUTES=[]"
