"""What bin/condor_* run: send argv (and, for condor_submit, the submit description read
with the caller's own permissions) to the stand-in daemon and print its answer.  When the
daemon does not answer, print what HTCondor prints when the schedd is down."""

from __future__ import annotations

import json
import os
import socket
import sys

from .constants import socket_path

TIMEOUT = 120.0


def _submit_file_arg(argv: list[str]) -> str | None:
    """The submit file condor_submit would read (None: stdin), skipping option values."""
    cmd_file: str | None = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("-") and a != "-":
            body = a.lstrip("-")
            if body and ("name".startswith(body) or ("pool".startswith(body) and len(body) >= 2)):
                i += 1
        elif a != "-" and "=" in a:
            pass
        else:
            cmd_file = a
        i += 1
    return cmd_file


def _option_value(argv: list[str], word: str, min_len: int = 1) -> str | None:
    for i, a in enumerate(argv[:-1]):
        body = a[1:] if a.startswith("-") else ""
        body = body[1:] if body.startswith("-") else body
        if body and len(body) >= min_len and word.startswith(body):
            return argv[i + 1]
    return None


def build_request(tool: str, argv: list[str]) -> dict[str, object]:
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = os.environ.get("HOME", "/")
    req: dict[str, object] = {"tool": tool, "argv0": sys.argv[0], "argv": argv, "cwd": cwd}
    if tool == "condor_submit":
        req["env"] = dict(os.environ)
        path = _submit_file_arg(argv)
        try:
            if path is None or path == "-":
                req["submit_text"] = sys.stdin.read()
            else:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    req["submit_text"] = f.read()
        except OSError as e:
            req["submit_open_error"] = e.strerror or str(e)
    return req


def call(req: dict[str, object], path: str | None = None) -> dict[str, object] | None:
    """The daemon's reply, or None if it does not answer."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(TIMEOUT)
            s.connect(path or socket_path())
            s.sendall(json.dumps(req).encode() + b"\n")
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
    except OSError:
        return None
    if not buf.strip():
        return None
    reply: dict[str, object] = json.loads(buf)
    return reply


def schedd_down(tool: str, argv: list[str]) -> tuple[str, str, int]:
    """(stdout, stderr, rc) of a tool whose schedd is not running."""
    host = socket.gethostname()
    name = _option_value(argv, "name")
    if tool == "condor_submit":
        where = f"schedd {name}" if name else "local schedd"
        return "", f"\nERROR: Can't find address of {where}\n", 1
    if tool == "condor_q":
        if name:
            return "", "Error: Collector has no record of schedd/submitter\n", 1
        from .formats import wrapped
        text = (f"Error: Can't find address for schedd {host}\n\n"
                + wrapped("Extra Info: You probably saw this error because the condor_schedd "
                          "is not running on the machine you are trying to query.  If the "
                          "condor_schedd is not running, the Condor system will not be able "
                          "to find an address and port to connect to and satisfy this "
                          "request.  Please make sure the Condor daemons are running and try "
                          "again.\n")
                + wrapped("Extra Info: If the condor_schedd is running on the machine you are "
                          "trying to query and you still see the error, the most likely cause "
                          "is that you have setup a personal Condor, you have not defined "
                          "SCHEDD_NAME in your condor_config file, and something is wrong "
                          "with your SCHEDD_ADDRESS_FILE setting. You must define either or "
                          "both of those settings in your config file, or you must use the "
                          "-name option to condor_q. Please see the Condor manual for details "
                          "on SCHEDD_NAME and SCHEDD_ADDRESS_FILE."))
        return "", text, 1
    if tool in ("condor_rm", "condor_hold"):
        if name:
            return "", f"Error: cannot get address of schedd {name}\n", 1
        return "", f"{tool}: Can't find address for schedd {host}\n", 1
    if tool == "condor_reschedule":
        if name:
            return "", (f"Can't find address for schedd {name}\nCan't find address for {name}\n"
                        "Perhaps you need to query another pool.\n"), 1
        return "", ("Can't find address for local schedd\n"
                    "Perhaps you need to query another pool.\n"), 1
    if tool == "condor_history":
        return _local_history(argv)
    if tool == "condor_status":
        from .tools import no_collector_contact
        return "", ("Error: communication error\nCEDAR:6001:Failed to connect to "
                    "<127.0.0.1:9618>\n" + no_collector_contact("127.0.0.1:9618")), 1
    return "", f"{tool}: the HTCondor stand-in daemon is not running\n", 1


def _local_history(argv: list[str]) -> tuple[str, str, int]:
    """condor_history reads the history file itself when it cannot reach the schedd."""
    from .tools import Exit, Request, condor_history
    history = ""
    try:
        with open(socket_path() + ".statedir", encoding="utf-8") as f:
            history = os.path.join(f.read().strip(), "history.jsonl")
    except OSError:
        pass
    try:
        r = condor_history(None, Request("condor_history", argv, os.getuid(), ""), history)
    except Exit as e:
        r = e.reply
    return r.stdout, r.stderr, r.rc


def main(tool: str) -> int:
    argv = sys.argv[1:]
    req = build_request(tool, argv)
    reply = call(req)
    if reply is None:
        out, err, rc = schedd_down(tool, argv)
    else:
        out, err, rc = str(reply["stdout"]), str(reply["stderr"]), int(str(reply["rc"]))
    sys.stdout.buffer.write(out.encode("utf-8", "surrogateescape"))
    sys.stdout.flush()
    sys.stderr.buffer.write(err.encode("utf-8", "surrogateescape"))
    sys.stderr.flush()
    return rc
