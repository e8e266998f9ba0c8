"""The hub route a job's launcher reports its address to: ``POST /hub/api/hpcspawner/report``.

It accepts exactly ``{"host": str, "port": int, "server_name": str}``, authenticated with the
token of that very server, and changes nothing but where the hub finds the server. (A
handler that sets any attribute a job posts lets a job rewrite the hub's commands.)
"""

from __future__ import annotations

import json
import re
from typing import Any

from jupyterhub import apihandlers
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .starting import NotYet

ROUTE = r"/api/hpcspawner/report"
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                     r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*$")
ALLOWED_KEYS = {"host", "port", "server_name", "submission"}


def parse_report(body: Any) -> tuple[str, int, str, str]:
    """Validate a report body; raise HTTPError(400) saying what is wrong."""
    if not isinstance(body, dict):
        raise web.HTTPError(400, "report must be a JSON object")
    extra = set(body) - ALLOWED_KEYS
    if extra:
        raise web.HTTPError(400, f"unknown report fields: {', '.join(sorted(extra))}")
    host, port, name = body.get("host"), body.get("port"), body.get("server_name", "")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise web.HTTPError(400, "port must be an integer from 1 to 65535")
    if not isinstance(host, str) or not HOST_RE.match(host):
        raise web.HTTPError(400, "host must be a host name or IPv4 address")
    if not isinstance(name, str) or len(name) > 255:
        raise web.HTTPError(400, "server_name must be a string")
    submission = body.get("submission", "")
    if not isinstance(submission, str) or len(submission) > 64:
        raise web.HTTPError(400, "submission must be a short string")
    return host, port, name, submission


class ReportHandler(APIHandler):
    async def post(self) -> None:
        user = self.current_user
        if user is None or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "a server's own token is required")
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, "report must be JSON") from None
        host, port, server_name, submission = parse_report(body)
        if server_name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, f"no server named {server_name!r}")
        spawner = user.spawners[server_name]
        owns_token = getattr(spawner, "owns_token", None)
        receive = getattr(spawner, "receive_report", None)
        if owns_token is None or receive is None:
            raise web.HTTPError(400, "that server is not run by hpcspawner")
        if not owns_token(self.get_auth_token() or ""):
            raise web.HTTPError(403, "this token does not belong to that server")
        try:
            await receive(host, port, submission)
        except NotYet as exc:  # the launcher retries on 5xx
            raise web.HTTPError(503, str(exc)) from None
        except ValueError as exc:
            raise web.HTTPError(409, str(exc)) from None
        self.set_status(204)


def register_report_handler() -> None:
    """Add the route to JupyterHub's API handlers (before the hub builds its app).

    JupyterHub deprecates ``extra_handlers``; appending to ``default_handlers`` when the
    spawner class is loaded keeps the admin's setup at one line. Idempotent.
    """
    if not any(route == ROUTE for route, *_ in apihandlers.default_handlers):
        apihandlers.default_handlers.append((ROUTE, ReportHandler))
