"""What every tool shares: the request/reply, exiting with a message, and HTCondor's option
matching (is_dash_arg_prefix: `-name` may be abbreviated to its first letters, `--name` must
be spelled out)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import formats
from .classad import ClassAd, Expr
from .classad_eval import evaluate
from .classad_parse import parse


@dataclass
class Request:
    tool: str
    argv: list[str]
    uid: int
    user: str
    cwd: str = "/"
    argv0: str = ""
    env: dict[str, str] = field(default_factory=dict)
    submit_text: str | None = None
    submit_open_error: str | None = None
    superuser: bool = False  # a queue super user (QUEUE_SUPER_USERS), set by the daemon


@dataclass
class Reply:
    stdout: str = ""
    stderr: str = ""
    rc: int = 0


class Exit(Exception):
    """Stop the tool now with this reply (like exit() in the C++ tools)."""

    def __init__(self, stderr: str = "", rc: int = 1, stdout: str = "") -> None:
        super().__init__(stderr)
        self.reply = Reply(stdout, stderr, rc)


def is_dash_arg_prefix(arg: str, word: str, min_len: int = 0) -> bool:
    colon = dash_colon(arg, word, min_len)
    return colon is not None and colon == ""


def dash_colon(arg: str, word: str, min_len: int) -> str | None:
    """is_dash_arg_colon_prefix: None if no match, else the ':options' suffix ('' if none)."""
    if not arg.startswith("-"):
        return None
    body = arg[1:]
    if body.startswith("-"):
        body, min_len = body[1:], -1
    head, sep, opts = body.partition(":")
    if not head or not word.startswith(head):
        return None
    if min_len < 0 and head != word:
        return None
    if len(head) < max(min_len, 1):
        return None
    return sep + opts


def proc_id(text: str) -> tuple[int, int] | None:
    """StrIsProcId: '31' -> (31, -1), '31.0' -> (31, 0)."""
    m = re.fullmatch(r"(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)) if m.group(2) is not None else -1


def is_superuser(req: Request) -> bool:
    return req.superuser


def parse_constraint(text: str) -> Expr:
    return parse(text)


def matches(expr: Expr | None, ad: ClassAd) -> bool:
    return expr is None or evaluate(expr, ad) is True


def no_collector_contact(host: str) -> str:
    return (formats.wrapped(f"Error: Couldn't contact the condor_collector on {host}.") + "\n"
            + formats.wrapped("Extra Info: the condor_collector is a process that runs on the "
                              "central manager of your Condor pool and collects the status of "
                              "all the machines and jobs in the Condor pool. The "
                              "condor_collector might not be running, it might be refusing to "
                              "communicate with you, there might be a network problem, or "
                              "there may be some other problem. Check with your system "
                              "administrator to fix this problem.") + "\n"
            + formats.wrapped(f"If you are the system administrator, check that the "
                              f"condor_collector is running on {host}, check the ALLOW/DENY "
                              "configuration in your condor_config, and check the MasterLog "
                              "and CollectorLog files in your log directory for possible clues "
                              "as to why the condor_collector is not responding. Also see the "
                              "Troubleshooting section of the manual."))
