"""The routes of session cards and more time (docs/sessions.md): what the hub's home page and
the admins' page read of each batch server, and the routes that give a running server more
time.

- the cards themselves (one server's facts, in words) are built by cards.py.
- ``GET /hub/api/hpcspawner/sessions/USER``: the cards of a user's servers (scope
  ``read:servers`` on the user), which the home page reads again to stay current.
- ``POST /hub/api/hpcspawner/extend`` with ``{"user": "alice", "server": "", "by": "1h"}``:
  more time for a running server, allowed to the user herself and to ``admin:servers`` on
  her (scope ``servers`` or ``admin:servers``); 403 otherwise, 409 with the sentence when it
  cannot (at the profile's maximum, the partition's MaxTime, the scheduler refuses).
- ``POST /hub/hpcspawner/session`` (a form: server, action extend or stop): the same for the
  card's buttons without JavaScript; it comes back to the home page with the outcome.
- ``GET /hub/api/hpcspawner/session?server_name=`` with a server's own token: its end time
  as the scheduler says now (its environment cannot change), for the server's JupyterLab
  notification (hpcspawner.server_extension).

No request names a job: the hub acts only on the job it holds for the named server, and
checks in a fresh query that the scheduler lists it as that server's running job.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from typing import Any

from jupyterhub import apihandlers, handlers, orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from . import job_usage, session_records
from .backends.base import ExtendRefused
from .cards import card, cards, extend, hms, live_session, spawner_of
from .contract import SESSION_PATH
from .job import BatchJob

SESSIONS_ROUTE = r"/api/hpcspawner/sessions/([^/]+)"
EXTEND_ROUTE = "/api/hpcspawner/extend"
SERVER_ROUTE = "/api" + SESSION_PATH
FORM_ROUTE = "/hpcspawner/session"
ADMIN_ROUTE = "/hpcspawner/sessions"


def may_change(handler: BaseHandler, user_name: str) -> bool:
    """The user herself (scope ``servers`` on her) or an admin of her servers."""
    return bool(handler.has_scope(f"servers!user={user_name}")
                or handler.has_scope(f"admin:servers!user={user_name}"))


class SessionsAPIHandler(APIHandler):
    async def get(self, user_name: str) -> None:
        if not self.has_scope(f"read:servers!user={user_name}"):
            raise web.HTTPError(403, "you may not see that user's servers")
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404)
        self.write(json.dumps({"now": time.time(), "cards": [asdict(c) for c in cards(user)]}))


class ExtendAPIHandler(APIHandler):
    async def post(self) -> None:
        body: Any = self.get_json_body()
        if not isinstance(body, dict) or not isinstance(body.get("user"), str):
            raise web.HTTPError(400, 'send {"user": NAME, "server": NAME, "by": "1h"}')
        name, server = body["user"], str(body.get("server") or "")
        if not may_change(self, name):
            raise web.HTTPError(403, "only the server's user or an admin of her servers may "
                                "give it more time")
        user = self.find_user(name)
        if user is None:
            raise web.HTTPError(404)
        try:
            ends = await extend(user, server, body.get("by"))
        except ExtendRefused as exc:
            raise web.HTTPError(409, str(exc)) from None
        self.write(json.dumps({"ends": ends}))


class SessionFormHandler(BaseHandler):
    """The card's buttons without JavaScript: extend or stop, then back to the home page."""

    @web.authenticated
    async def post(self) -> None:
        user = self.current_user
        name = self.get_body_argument("user", user.name if user else "")
        server = self.get_body_argument("server", "")
        action = self.get_body_argument("action", "")
        if user is None or not may_change(self, name):
            raise web.HTTPError(403, "only the server's user or an admin of her servers may "
                                "change it")
        owner = self.find_user(name)
        if owner is None or spawner_of(owner, server) is None:
            raise web.HTTPError(404, "no such server")
        if action == "extend":
            with contextlib.suppress(ExtendRefused):  # the card says why (extend_note)
                await extend(owner, server, self.get_body_argument("by", ""))
        elif action == "stop":
            await stop(self, owner, server)
        else:
            raise web.HTTPError(400, "action is extend or stop")
        self.redirect(self.hub.base_url + ("home" if owner.name == user.name
                                           else "hpcspawner/sessions"))


async def stop(handler: BaseHandler, user: Any, server: str) -> None:
    """Stop a server; or, while it still waits in the queue, cancel its job (the spawn then
    ends as cancelled, as the spawn page says)."""
    spawner = user.spawners[server]
    if spawner.pending == "spawn":
        await spawner.stop()
    elif spawner.active and not spawner.pending:
        await handler.stop_single_user(user, server)


class AdminSessionsHandler(BaseHandler):
    """Every user's batch sessions for the hub's admins (``admin:servers``), filterable by
    a word (user, profile, state, node or job id: ``?q=``), each with its stop button."""

    @web.authenticated
    async def get(self) -> None:
        if not self.has_scope("admin:servers"):
            raise web.HTTPError(403, "only the hub's admins see every user's sessions")
        word = self.get_argument("q", "").strip().lower()
        try:
            days = min(366, max(1, int(self.get_argument("days", "7"))))
        except ValueError:
            days = 7
        now = time.time()
        rows, live = [], []
        for orm_user in self.db.query(orm.User).order_by(orm.User.name):
            user = self.users[orm_user]
            for found in cards(user):
                text = " ".join((user.name, found.server, found.profile, found.state,
                                 found.node, found.job_id)).lower()
                if not word or word in text:
                    rows.append((user.name, found))
            live += [s for s in map(live_session, user.all_spawners(include_default=True))
                     if s is not None]
        since = now - days * 86400
        try:  # summed by the database: a bounded answer however many sessions ended
            database = session_records.hub_database(self.settings["config"])
            recorded = session_records.recorded_use(session_records.engine(*database), since,
                                                    now)
        except Exception as exc:  # the database: the sessions are still shown
            self.log.warning("hpcspawner: the session records cannot be read: %s", exc)
            recorded = {}
        use = session_records.use_by_profile(live, since, now, recorded)
        html = await self.render_template("hpcspawner-admin.html", rows=rows, q=word,
                                          use=use, days=days, hms=hms)
        self.finish(html)


class ServerSessionHandler(APIHandler):
    """A server asks its own end time, and tells what its job uses, with its own token (the
    report's token check)."""

    def _own_spawner(self) -> Any:
        user = self.current_user
        if user is None or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "a server's own token is required")
        server = self.get_argument("server_name", "")
        spawner = spawner_of(user, server)
        job = getattr(spawner, "job", None)
        token = self.get_auth_token() or ""
        if not isinstance(job, BatchJob) or not job.owns_token(spawner.api_token or "", token):
            raise web.HTTPError(403, "this token does not belong to that server")
        return spawner

    async def post(self) -> None:
        spawner = self._own_spawner()
        try:
            spawner.job.note_usage(job_usage.parse(json.loads(self.request.body or b"null"),
                                               time.time()))
        except ValueError as exc:  # JSONDecodeError too
            raise web.HTTPError(400, f"unreadable usage: {exc}") from None
        self.set_status(204)

    async def get(self) -> None:
        spawner = self._own_spawner()
        found = card(spawner)
        self.write(json.dumps({
            "ends": found.ends if found else 0.0, "warn_before": spawner.walltime_warning,
            "can_extend": bool(found and found.can_extend),
            "home": self.hub.base_url + "home", "now": time.time()}))


def register_session_handlers() -> None:
    """Add the routes to JupyterHub's handlers (idempotent; see report.py)."""
    for route, handler in ((SESSIONS_ROUTE, SessionsAPIHandler),
                           (EXTEND_ROUTE, ExtendAPIHandler),
                           (SERVER_ROUTE, ServerSessionHandler)):
        if not any(r == route for r, *_ in apihandlers.default_handlers):
            apihandlers.default_handlers.append((route, handler))
    for route, page in ((FORM_ROUTE, SessionFormHandler), (ADMIN_ROUTE, AdminSessionsHandler)):
        if not any(r == route for r, *_ in handlers.default_handlers):
            handlers.default_handlers.append((route, page))
