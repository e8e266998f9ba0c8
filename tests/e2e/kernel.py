"""Run code in a user's notebook the way JupyterLab does: a kernel of the user's server (in
the server's batch job) through the hub's proxy, over the kernel's websocket."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from tests.hubtools import Hub


class KernelError(AssertionError):
    """The code raised; the message is the traceback's last line."""


class Kernel:
    """One kernel of ``user``'s server, reached with the hub's test token."""

    def __init__(self, hub: Hub, user: str) -> None:
        self.hub, self.user = hub, user
        self.headers = {"Authorization": f"token {hub.token}"}
        r = requests.post(f"{hub.url}/user/{user}/api/kernels", headers=self.headers,
                          json={"name": "python3"}, timeout=60)
        assert r.status_code == 201, r.text[:300]
        self.kernel_id = r.json()["id"]

    def run(self, code: str, timeout: float = 180) -> str:
        """The code's standard output; KernelError if it raised."""
        return asyncio.run(asyncio.wait_for(self._run(code), timeout))

    async def _run(self, code: str) -> str:
        url = (f"{self.hub.url.replace('http', 'ws', 1)}/user/{self.user}/api/kernels/"
               f"{self.kernel_id}/channels")
        ws = await websocket_connect(HTTPRequest(url, headers=self.headers))
        msg_id = uuid.uuid4().hex
        ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": self.user, "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell",
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
        }))
        out: list[str] = []
        error = ""
        try:
            while True:
                raw = await ws.read_message()
                assert raw is not None, "the kernel's websocket closed"
                msg: dict[str, Any] = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "stream":
                    out.append(content["text"])
                elif kind == "error":
                    error = f"{content['ename']}: {content['evalue']}"
                elif kind == "status" and content["execution_state"] == "idle":
                    break
        finally:
            ws.close()
        if error:
            raise KernelError(error)
        return "".join(out)

    def shutdown(self) -> None:
        requests.delete(f"{self.hub.url}/user/{self.user}/api/kernels/{self.kernel_id}",
                        headers=self.headers, timeout=30)
