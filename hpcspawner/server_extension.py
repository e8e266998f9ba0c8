"""The server's side of the end-of-time warning in JupyterLab (docs/sessions.md): a Jupyter
server extension with one route, ``GET {base_url}hpcspawner/session``, that tells the
server's JupyterLab when its job's time limit ends, as the hub says now (an extension or an
admin's change moves it: the server's own environment cannot change). The lab extension
shipped beside it (share/jupyter/labextensions/hpcspawner-session) asks every minute and shows
a notification from ``warn_before`` seconds ahead, with a button to the hub's home page where
the session's card extends it.

The hub is asked with the server's own token (``JUPYTERHUB_API_TOKEN``), at most every
``ASK_EVERY`` seconds however many browser tabs ask. Every ``usage.REPORT_EVERY`` seconds the
extension also tells the hub what the job's processes use (memory, CPU: job_usage.py), which the
session's card shows.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from typing import Any

from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.ioloop import IOLoop, PeriodicCallback

from .contract import SESSION_PATH, WALLTIME_WARNING, Env
from .job_usage import REPORT_EVERY, Meter

ASK_EVERY = 20.0  # seconds between two questions to the hub
FIRST_REPORT = 5.0  # seconds from the server's start to its first usage report
_last: dict[str, Any] = {"at": 0.0, "answer": None}


def hub_request(**kw: Any) -> HTTPRequest | None:
    """A request to the hub's session API about this server, with its own token."""
    api = os.environ.get("JUPYTERHUB_API_URL", "")
    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if not api or not token:
        return None
    query = urllib.parse.urlencode({"server_name": os.environ.get("JUPYTERHUB_SERVER_NAME",
                                                                  "")})
    return HTTPRequest(f"{api.rstrip('/')}{SESSION_PATH}?{query}", request_timeout=10,
                       headers={"Authorization": f"token {token}"}, **kw)


async def ask_hub() -> dict[str, Any] | None:
    """The hub's answer about this server (None when it cannot say now)."""
    if _last["answer"] is not None and time.monotonic() - _last["at"] < ASK_EVERY:
        return dict(_last["answer"])
    request = hub_request()
    if request is None:
        return None
    try:
        response = await AsyncHTTPClient().fetch(request)
        answer = json.loads(response.body)
    except Exception:  # the hub restarts, or is slow: the last answer stands
        return dict(_last["answer"]) if _last["answer"] is not None else None
    _last.update(at=time.monotonic(), answer=answer)
    return dict(answer)


class SessionHandler(JupyterHandler):
    @web.authenticated
    async def get(self) -> None:
        answer = await ask_hub()
        if answer is None:
            answer = {"ends": float(os.environ.get(Env.END_TIME) or 0), "warn_before": int(
                os.environ.get(Env.WALLTIME_WARNING) or WALLTIME_WARNING), "can_extend": False,
                "home": ""}
        answer["now"] = time.time()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(answer))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "hpcspawner.server_extension"}]


async def tell_usage(meter: Meter) -> None:
    """Tell the hub what the job's processes use now (the card shows it); a hub that does
    not answer misses one measure."""
    measured = meter.measure()
    request = hub_request(method="POST", body=json.dumps(measured)) if measured else None
    if request is None:
        return
    try:
        await AsyncHTTPClient().fetch(request)
    except Exception:  # the hub restarts, or is slow: the next measure will do
        return


def _load_jupyter_server_extension(serverapp: Any) -> None:
    route = url_path_join(serverapp.web_app.settings["base_url"], SESSION_PATH.lstrip("/"))
    serverapp.web_app.add_handlers(".*$", [(route, SessionHandler)])
    if os.environ.get("JUPYTERHUB_API_TOKEN"):
        meter = Meter(os.getppid())  # the launcher: the job's processes are under it
        loop = IOLoop.current()  # nothing measured while the server starts
        loop.call_later(FIRST_REPORT / 2, meter.measure)  # the CPU baseline
        loop.call_later(FIRST_REPORT, lambda: tell_usage(meter))
        PeriodicCallback(lambda: tell_usage(meter), REPORT_EVERY * 1000).start()
