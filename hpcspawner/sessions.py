"""Session cards and more time (docs/sessions.md): what the hub's home page shows of each
batch server, and the routes that give a running server more time.

- ``card(spawner)``: one server's facts, in words: profile and app, state (queued with the
  scheduler's reason and expected start, starting, running, ending), node and job id, limits,
  start and end (the scheduler's end: an extension or an admin's change shows within a poll),
  the warning before the end, and whether it can be extended (and why not).
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
  notification (hpcspawner.labnotify).

No request names a job: the hub acts only on the job it holds for the named server, and
checks in a fresh query that the scheduler lists it as that server's running job.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

from jupyterhub import apihandlers, handlers, orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from tornado import web

from . import messages, records, usage
from .backends.base import ExtendRefused, JobState
from .report import token_matches
from .units import format_duration, parse_duration, show_size
from .wire import SESSION_PATH

SESSIONS_ROUTE = r"/api/hpcspawner/sessions/([^/]+)"
EXTEND_ROUTE = "/api/hpcspawner/extend"
SERVER_ROUTE = "/api" + SESSION_PATH
FORM_ROUTE = "/hpcspawner/session"
ADMIN_ROUTE = "/hpcspawner/sessions"


@dataclass(frozen=True)
class Card:
    server: str  # "" for the default server
    label: str
    url: str
    profile: str
    state: str  # queued, starting, running, ending
    state_words: str
    job_id: str
    node: str
    limits: str
    started: float  # epoch; 0 unknown
    ends: float  # epoch; 0 unknown
    warning: str  # said once the end is walltime_warning away
    warn_before: int
    can_extend: bool
    extend_step: str  # "1 h"
    extend_note: str  # why it cannot be extended, or what the last try did
    used_words: str = ""  # "used 0:05:00;" (the page's script counts on)
    left_words: str = ""  # "11:55:00 left"
    ends_words: str = ""  # "(ends 2026-12-02 18:00 UTC)"
    usage_words: str = ""  # "1.2 GiB of 12 GiB memory, 0.4 of 1 core (20 s ago)"
    since_words: str = ""  # "queued since 2026-12-02 10:42 UTC"


def limits(resources: Any) -> str:
    """"1 core, 12 GiB" (and GPUs): what the job holds, without its time."""
    if resources is None:
        return ""
    parts = [f"{resources.cores} core" + ("s" if resources.cores != 1 else ""),
             show_size(resources.memory)]
    if resources.gpus:
        model = f" {resources.gpu_model}" if resources.gpu_model else ""
        parts.append(f"{resources.gpus}{model} GPU" + ("s" if resources.gpus != 1 else ""))
    return ", ".join(parts)


def hms(seconds: float) -> str:
    """12:05:09 (the cards' clock; the page's script writes the same)."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def card(spawner: Any, now: float | None = None) -> Card | None:
    """The card of one server of ``spawner``'s (None when it has no batch job)."""
    job = getattr(spawner, "job", None)
    if job is None or not job.job_id or job.ended is not None:
        return None
    now = time.time() if now is None else now
    info = job.ctx.poller.latest(job.job_id)
    ends, limit = job.time_limit()
    started = info.starts if info is not None and info.starts and job.address else 0.0
    node = info.host if info is not None and info.state is JobState.RUNNING else ""
    if job.stopping or job.exited:
        state, words = "ending", "Stopping: the job is being cancelled."
    elif job.address is not None:
        node = node or job.address[0]
        state = "ending" if ends and ends - now <= 0 else "running"
        words = f"Running on {node}." if state == "running" else "Its time limit has ended."
    elif info is not None and info.state in (JobState.PENDING, JobState.HELD):
        state = "queued"
        why = f": {messages.explain(info)}" if info.reason else ""
        words = f"Queued{why}."
        if info.starts and info.starts > now:
            words += " " + messages.expected_start(info.starts, now)
    else:
        state, words = "starting", "Starting" + (f" on {node}." if node else ".")
    profile = job.plan.profile if job.plan is not None else None
    settings = profile.extend if profile is not None else None
    can, note = False, ""
    if settings is None:
        note = "This server's profile does not allow more time."
    elif state != "running":
        note = "More time can be given once the server runs."
    elif limit + settings.step > settings.max_runtime:
        note = (f"This server has the most time its profile allows "
                f"({format_duration(settings.max_runtime)}).")
    else:
        can = True
    if can:  # what the last try did (given, or the scheduler's refusal)
        note = getattr(spawner, "extend_note", "")
    warn_before = int(spawner.walltime_warning)
    warning = ""
    if state == "running" and ends and ends - now <= warn_before:
        warning = messages.walltime_warning(spawner.name, spawner.profile_title, ends,
                                            ends - now, can)
    shown_ends = float(ends or 0) if state in ("running", "ending") else 0.0
    return Card(
        used_words=f"used {hms(now - started)};" if started else "",
        left_words=f"{hms(shown_ends - now)} left" if shown_ends else "",
        ends_words=f"(ends {messages.clock(shown_ends)})" if shown_ends else "",
        usage_words=usage.words(job.usage, job.resources, now) if state == "running" else "",
        since_words=f"{state} since {messages.clock(info.since)}" if info is not None
        and info.since and state == "queued" else "",
        server=spawner.name, label=f"Server {spawner.name!r}" if spawner.name else
        "Default server", url=spawner.user.url + (f"{spawner.name}/" if spawner.name else ""),
        profile=spawner.home_title, state=state, state_words=words, job_id=job.job_id,
        node=node, limits=limits(job.resources), started=float(started or 0),
        ends=shown_ends, warning=warning,
        warn_before=warn_before, can_extend=can,
        extend_step=format_duration(settings.step) if settings else "", extend_note=note)


def live_session(spawner: Any, now: float | None = None) -> records.Session | None:
    """A server's batch session that has not ended, as the use-by-profile table counts it
    (up to now)."""
    job = getattr(spawner, "job", None)
    if job is None or not job.job_id or job.ended is not None or job.recorded:
        return None  # (a recorded one is being stopped: its end is in the records)
    return records.of_job(job, time.time() if now is None else now)


def spawner_of(user: Any, server: str) -> Any:
    """``user``'s spawner of the server named ``server``; None when she has no such server
    (looked up without creating one: ``user.spawners`` makes a spawner for any name)."""
    return user.spawners.get(server) if server in user.orm_user.orm_spawners else None


def cards(user: Any) -> list[Card]:
    found = (card(s) for s in user.all_spawners(include_default=True))
    return [c for c in found if c is not None]


async def extend(user: Any, server: str, raw_by: object) -> float:
    """Give ``user``'s server ``server`` the time ``raw_by`` says (a duration like 1h; the
    profile's step when not said) more; the new end. ExtendRefused says why not, and the
    card shows it."""
    spawner = spawner_of(user, server)
    job = getattr(spawner, "job", None)
    if spawner is None or job is None or not job.job_id:
        raise ExtendRefused(f"There is no running server {server!r} to give more time.")
    profile = job.plan.profile if job.plan is not None else None
    step = profile.extend.step if profile is not None and profile.extend else 0
    text = str(raw_by) if raw_by not in (None, "") else f"{step}s"
    try:
        try:
            by = int(parse_duration(text))
        except ValueError:
            raise ExtendRefused(f"{text[:40]!r} is not a duration; ask e.g. for 1h.") from None
        ends = float(await job.extend(by))  # (a profile without extend: refused first)
    except ExtendRefused as exc:
        spawner.extend_note = str(exc)
        raise
    spawner.extend_note = (f"Given {format_duration(by)} more at {messages.clock(time.time())}: "
                           f"it now runs until {messages.clock(ends)}.")
    return ends


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
        try:
            ended = records.ended_since(self.db, since)
        except Exception as exc:  # the database: the sessions are still shown
            self.log.warning("hpcspawner: the session records cannot be read: %s", exc)
            ended = []
        use = records.use_by_profile([*ended, *live], since, now)
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
        if spawner is None or job is None or not token_matches(spawner.api_token or "",
                                                                job.token_sha256, token):
            raise web.HTTPError(403, "this token does not belong to that server")
        return spawner

    async def post(self) -> None:
        spawner = self._own_spawner()
        try:
            spawner.job.usage = usage.parse(json.loads(self.request.body or b"null"),
                                            time.time())
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
