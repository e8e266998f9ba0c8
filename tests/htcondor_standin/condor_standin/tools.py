"""The command-line tools, evaluated inside the daemon: argv in, (stdout, stderr, rc) out.

Only the options listed in README.md are implemented; any other option gets the tool's own
"unrecognized option" line.  One module per tool family: tool_submit, tool_q, tool_act
(condor_rm, condor_hold, condor_qedit, condor_reschedule), tool_info (condor_history,
condor_status).
"""

from __future__ import annotations

from collections.abc import Callable

from .pool import Pool
from .tool_act import condor_act, condor_qedit, condor_reschedule
from .tool_common import Exit, Reply, Request, no_collector_contact
from .tool_info import condor_history, condor_status
from .tool_q import condor_q
from .tool_submit import condor_submit

__all__ = ["Exit", "Reply", "Request", "condor_history", "no_collector_contact", "run"]

TOOLS: dict[str, Callable[[Pool, Request], Reply]] = {
    "condor_submit": condor_submit,
    "condor_q": condor_q,
    "condor_rm": condor_act,
    "condor_hold": condor_act,
    "condor_qedit": condor_qedit,
    "condor_reschedule": condor_reschedule,
    "condor_history": condor_history,
    "condor_status": condor_status,
}


def run(pool: Pool, req: Request) -> Reply:
    tool = TOOLS.get(req.tool)
    if tool is None:
        return Reply("", f"unknown tool {req.tool}\n", 1)
    try:
        return tool(pool, req)
    except Exit as e:
        return e.reply
