"""The server's own activity, apart from the proxy's: what idle culling reads.

JupyterHub keeps one ``last_activity`` per server, moved both by the server's own reports
(kernels, terminals, authenticated requests) and by the proxy's traffic, which anyone can
send: an unauthenticated request to ``/user/alice/...`` would keep alice's server from ever
being idle. So the single-user server posts its activity here (``JUPYTERHUB_ACTIVITY_URL``,
set by the spawner) — the same body, token and scope as JupyterHub's own
``/hub/api/users/NAME/activity``, which this handler also updates as usual — and the
spawner keeps the server's own time apart (``HPCSpawner.note_activity``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from jupyterhub import apihandlers
from jupyterhub.apihandlers.users import ActivityAPIHandler

from .contract import ACTIVITY_PATH

ROUTE = r"/api" + ACTIVITY_PATH + r"/([^/]+)"


class OwnActivityHandler(ActivityAPIHandler):
    def post(self, user_name: str) -> None:
        super().post(user_name)  # the scope check, validation and JupyterHub's own record
        user = self.find_user(user_name)
        body: Any = self.get_json_body()
        servers = body.get("servers") if isinstance(body, dict) else None
        if user is None or not isinstance(servers, dict):
            return
        for name, info in servers.items():
            note = getattr(user.spawners.get(name), "note_activity", None)
            if note is not None and isinstance(info, dict) and info.get("last_activity"):
                note(epoch(str(info["last_activity"])))


def epoch(stamp: str) -> float:
    """An ISO 8601 time (``2026-12-02T03:00:00.123Z``; UTC when it names no zone) -> epoch
    seconds. JupyterHub's handler has already refused a stamp it cannot read."""
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def register_activity_handler() -> None:
    """Add the route to JupyterHub's API handlers (idempotent; see report.py)."""
    if not any(route == ROUTE for route, *_ in apihandlers.default_handlers):
        apihandlers.default_handlers.append((ROUTE, OwnActivityHandler))
