"""Run as bob on alice's node (sudo -u bob python bob_listener.py PORT OUT SECONDS): try,
again and again, to listen on alice's port in every way the kernel might allow beside her
listener — [::1]:PORT, [::]:PORT v6-only, 127.0.0.1:PORT, 0.0.0.0:PORT — and record in OUT
(one JSON object a line) each bind that worked and every request any of them received, with
its headers. Standard library only; stops by itself after SECONDS."""

from __future__ import annotations

import json
import select
import socket
import sys
import time
from pathlib import Path

port, out, seconds = int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
WAYS = [("::1", socket.AF_INET6, False), ("::", socket.AF_INET6, True),
        ("127.0.0.1", socket.AF_INET, False), ("0.0.0.0", socket.AF_INET, False)]


def note(**event: object) -> None:
    with out.open("a") as f:
        f.write(json.dumps(event) + "\n")


held: dict[str, socket.socket] = {}
deadline = time.monotonic() + seconds
note(event="started")
while time.monotonic() < deadline:
    for address, family, v6only in WAYS:
        if address in held:
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
        try:
            sock.bind((address, port))
            sock.listen(16)
        except OSError:
            sock.close()
            continue
        held[address] = sock
        note(event="bound", address=address)
    ready, _, _ = select.select(list(held.values()), [], [], 0.01)
    for sock in ready:
        conn, _ = sock.accept()
        conn.settimeout(2)
        try:
            data = conn.recv(65536).decode(errors="replace")
        except OSError:
            data = ""
        note(event="request", head=data.split("\r\n\r\n", 1)[0])
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbob")
        conn.close()
note(event="stopped")
