"""Everything about the launcher's report, in one place: the hub route
``POST /hub/api/hpcspawner/report``, its body, the token and nonce checks, and where the hub
routes to.

The body (``contract.Report``) is ``{"host": str, "port": int, "server_name": str, "submission":
str, "ends": int}`` (all but ``port`` may be empty or absent; ``ends`` is when the job's time
limit ends, shown to the user only, and bounded by the job's runtime), authenticated with the
token of that very server. The hub routes to the node the SCHEDULER runs the job on (from a
record the job's owner cannot write: ``Backend.route_hosts``) and the reported port; the
reported host is only compared with that node by name, never resolved and never used. A job
that is not running, or whose node the scheduler does not name, cannot report. Nothing but the
route (and the end time the user is shown) changes. (A handler that sets any attribute a job
posts would let a job rewrite the hub's commands.)

``{"port": int, "server_name": str, "submission": str, "ended": true}`` says the server has
exited: the hub deletes its route at once and stops it; the launcher, which holds the port
until then, lets the port go only after this answer (forwarder.py).

No user can slow the hub for others with reports: one report per server is checked at a time
(429 for the rest), no name is looked up, and a report never makes more than one extra
scheduler query per fast poll interval, however many arrive (``Poller.refresh_soon``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from jupyterhub import apihandlers
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .contract import HOST_RE, REPORT_PATH, Report
from .contract import parse_report as wire_report
from .domain import JobState
from .job import BatchJob
from .metrics import REPORTS_REFUSED

__all__ = ["Report", "parse_report"]  # (Report is the contract's, named here for the hub side)

ROUTE = "/api" + REPORT_PATH
_NOTIFYING: set[asyncio.Future[Any]] = set()  # polls the hub makes after a server exited
class Forbidden(Exception):
    """The token is not this server's (403)."""


class Refused(Exception):
    """The report cannot be true or is stale (409); the launcher gives up."""


class NotYet(Exception):
    """The report cannot be checked now (scheduler silent, job not seen running): the
    launcher retries on 503."""


class Busy(Exception):
    """Another report of the same server is being checked: 429, the launcher retries."""


def parse_report(body: Any) -> Report:
    """Validate a report body (contract.parse_report); HTTPError(400) saying what is wrong."""
    try:
        return wire_report(body)
    except ValueError as exc:
        raise web.HTTPError(400, str(exc)) from None


async def scheduler_node(job: BatchJob) -> str:
    """The one node the scheduler runs ``job`` on; NotYet while that cannot be told."""
    info = await job.where_running()
    if info is None or info.state is JobState.UNKNOWN:
        raise NotYet(f"cannot check job {job.job_id} now (the scheduler is not answering)")
    if info.state is JobState.GONE:
        raise Refused(f"job {job.job_id} has ended")
    if info.state is not JobState.RUNNING:
        raise NotYet(f"job {job.job_id} is not running yet, so it cannot be listening")
    node = info.host.strip()
    if not node:
        raise NotYet(f"the scheduler does not yet say which node runs job {job.job_id}")
    if not HOST_RE.match(node):  # a node list, or something no route may point at
        raise Refused(f"the scheduler names no single node for job {job.job_id} ({node!r})")
    return node


def same_host(reported: str, node: str) -> bool:
    """Does the launcher's host name mean the scheduler's node? The same name, or the same
    first label (``node042`` and ``node042.cluster.example``). Compared by name only: the
    hub routes to ``node`` whatever the job says, so a lookup (which a name server of the
    user's choosing could stall) would decide nothing."""
    return reported.split(".")[0].lower() == node.split(".")[0].lower()


def check_token(job: BatchJob | None, api_token: str, token: str, report: Report) -> BatchJob:
    if job is None or not job.owns_token(api_token, token):
        raise Forbidden("this token does not belong to that server")
    if job.submission and report.submission != job.submission:
        raise Refused("this report is from an earlier job of this server")
    return job


async def accept(job: BatchJob | None, api_token: str, token: str, report: Report, *,
                 check_host: bool = True) -> tuple[str, int]:
    """Check a report for ``job`` and route the server; returns where the hub routes to."""
    job = check_token(job, api_token, token, report)
    if not job.job_id or job.address is not None:
        raise Refused("this server is not waiting for an address")
    with job.report_check() as mine:
        if not mine:
            raise Busy("a report of this server is being checked; try again")
        job_id = job.job_id
        node = await scheduler_node(job)
        if check_host and report.host and not same_host(report.host, node):
            raise Refused(f"job {job_id} runs on {node}, not on {report.host}")
        if job.job_id != job_id or job.address is not None:  # changed while we asked
            raise Refused("this server is not waiting for that job any more")
        job.set_address(node, report.port, float(report.ends))
        job.ctx.log.info("%s: the launcher reported port %d; routing to %s:%d", job.ctx.name,
                         report.port, node, report.port)
        return node, report.port


def ended(job: BatchJob | None, api_token: str, token: str, report: Report) -> bool:
    """Is this the routed server saying it has exited? (Only the route it names goes.)"""
    job = check_token(job, api_token, token, report)
    return job.address is not None and job.address[1] == report.port


class ReportHandler(APIHandler):
    async def post(self) -> None:
        user = self.current_user
        if user is None or not hasattr(user, "spawners"):
            raise web.HTTPError(403, "a server's own token is required")
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError:
            raise web.HTTPError(400, "report must be JSON") from None
        report = parse_report(body)
        if report.server_name not in user.orm_user.orm_spawners:
            raise web.HTTPError(404, f"no server named {report.server_name!r}")
        spawner = user.spawners[report.server_name]
        if not hasattr(spawner, "check_reported_host"):
            raise web.HTTPError(400, "that server is not run by hpcspawner")

        async def drop_route() -> None:
            await self.proxy.delete_user(user, report.server_name)

        try:
            await receive(spawner, self.get_auth_token() or "", report, drop_route)
        except Forbidden as exc:
            REPORTS_REFUSED.labels("forbidden").inc()
            self.log.warning("%s: report refused: %s", user.name, exc)
            raise web.HTTPError(403, str(exc)) from None
        except Busy as exc:
            REPORTS_REFUSED.labels("busy").inc()
            raise web.HTTPError(429, str(exc)) from None
        except NotYet as exc:  # the launcher retries on 5xx
            REPORTS_REFUSED.labels("not_yet").inc()
            raise web.HTTPError(503, str(exc)) from None
        except Refused as exc:  # an attack or a bug: the hub's log says which
            REPORTS_REFUSED.labels("refused").inc()
            self.log.warning("%s: report refused: %s", user.name, exc)
            raise web.HTTPError(409, str(exc)) from None
        self.set_status(204)


DropRoute = Callable[[], Awaitable[None]]


async def receive(spawner: Any, token: str, report: Report, drop_route: DropRoute) -> None:
    """Hand a report to the server's job, which answers (Forbidden, Refused, Busy or NotYet
    otherwise): routed to the node the scheduler runs it on; or, when its server has exited,
    its route is taken down now (the launcher holds the port until this returns) and
    JupyterHub polls it (and stops it)."""
    job = spawner.job if isinstance(spawner.job, BatchJob) else None
    api_token = spawner.api_token or ""
    if report.ended:
        if ended(job, api_token, token, report) and job is not None and job.server_exited():
            await drop_route()
            notify = asyncio.ensure_future(spawner.poll_and_notify())
            _NOTIFYING.add(notify)
            notify.add_done_callback(_NOTIFYING.discard)
        return
    await accept(job, api_token, token, report, check_host=spawner.check_reported_host)


def register_report_handler() -> None:
    """Add the route to JupyterHub's API handlers (before the hub builds its app).

    JupyterHub deprecates ``extra_handlers``; appending to ``default_handlers`` when the
    spawner class is loaded keeps the admin's setup at one line. Idempotent.
    """
    if not any(route == ROUTE for route, *_ in apihandlers.default_handlers):
        apihandlers.default_handlers.append((ROUTE, ReportHandler))
