"""condor_history (the history file, newest first) and condor_status (the slots)."""

from __future__ import annotations

import re
import time

from . import formats
from .classad import ClassAd, ClassAdSyntaxError
from .classad_parse import parse
from .pool import Pool
from .tool_common import (
    Exit,
    Reply,
    Request,
    dash_colon,
    is_dash_arg_prefix,
    matches,
    no_collector_contact,
    parse_constraint,
    proc_id,
)


def condor_history(pool: Pool | None, req: Request, history_file: str | None = None) -> Reply:
    name: str | None = None
    pool_name: str | None = None
    constraints: list[str] = []
    id_cons: list[str] = []
    owner_cons: list[str] = []
    json_out = long_out = False
    projection: list[str] = []
    limit = -1
    argv = req.argv
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            pid = proc_id(a)
            if pid is not None:
                id_cons.append(f"ClusterId == {pid[0]}" if pid[1] < 0 else
                               f"ClusterId == {pid[0]} && ProcId == {pid[1]}")
            else:
                owner_cons.append(f'Owner == "{a}"')
        elif is_dash_arg_prefix(a, "long", 1):
            long_out = True
        elif is_dash_arg_prefix(a, "json", 4):
            json_out = long_out = True
        elif is_dash_arg_prefix(a, "match", 1) or is_dash_arg_prefix(a, "limit", 3):
            i += 1
            if i >= len(argv):
                raise Exit("Error: Argument -match requires a number value as a parameter.\n")
            try:
                limit = int(argv[i])
            except ValueError:
                limit = 0
        elif is_dash_arg_prefix(a, "attributes", 2):
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise Exit("Error: Argument -attributes must be followed by a list of "
                           "attributes\n")
            i += 1
            projection += [s for s in re.split(r"[\s,]+", argv[i]) if s]
        elif is_dash_arg_prefix(a, "constraint", 1):
            if i + 1 >= len(argv):
                raise Exit(f"Error: Argument {a} requires another parameter\n")
            i += 1
            constraints.append(argv[i])
        elif is_dash_arg_prefix(a, "name", 1) or is_dash_arg_prefix(a, "pool", 1):
            i += 1
            if i >= len(argv):
                raise Exit("Error: Argument -name requires name of a remote schedd\n"
                           "\t\te.g. condor_history -name submit.example.com \n")
            if is_dash_arg_prefix(a, "name", 1):
                name = argv[i]
            else:
                pool_name = argv[i]
        else:
            raise Exit(f"Error: Unknown argument {a}\n"
                       "Usage: condor_history [source] [restriction-list] [options]\n")
        i += 1
    if name is not None or pool_name is not None:
        ok = pool is not None and (name is None or pool.accepts_schedd(name)) and \
            (pool_name is None or pool.accepts_pool(pool_name))
        if not ok:
            raise Exit(f"Unable to locate remote schedd (name={name or ''}, "
                       f"pool={pool_name or ''}).\n")
    parts = [f"({c})" for c in constraints]
    ors = id_cons + owner_cons
    if ors:
        parts.append("(" + " || ".join(ors) + ")" if len(ors) > 1 else ors[0])
    full = " && ".join(parts) if parts else None
    try:
        expr = parse_constraint(full) if full else None
    except ClassAdSyntaxError:
        raise Exit(f"Error:  could not parse constraint {full}\n") from None
    if pool is not None:
        with pool.lock:
            ads = pool.queue.history()
    else:
        from .schedd import read_history
        ads = read_history(history_file or "")
    selected: list[ClassAd] = []
    for ad in ads:
        if limit >= 0 and len(selected) >= limit:
            break
        if matches(expr, ad):
            selected.append(ad)
    if json_out:
        return Reply(formats.json_ads(selected, projection or None, always_brackets=True))
    if long_out:
        return Reply("".join(formats.long_ad(ad, projection or None) for ad in selected))
    return Reply(formats.history_short(selected))


def condor_status(pool: Pool, req: Request) -> Reply:
    pool_name: str | None = None
    constraint: str | None = None
    json_out = total = False
    projection: list[str] = []
    af: list[str] | None = None
    names: list[str] = []
    argv = req.argv
    i = 0
    while i < len(argv):
        a = argv[i]
        colon = dash_colon(a, "af", 2)
        if colon is None:
            colon = dash_colon(a, "autoformat", 5)
        if not a.startswith("-"):
            names.append(a)
        elif colon is not None:
            if colon:
                raise Exit(f"Error: the HTCondor stand-in does not support {a}\n")
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise Exit(f"Error: Argument {a} requires at last one attribute parameter\n"
                           'Use "condor_status -help" for details\n')
            af = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                af.append(argv[i])
        elif is_dash_arg_prefix(a, "pool", 1):
            i += 1
            if i >= len(argv):
                raise Exit("condor_status: -pool requires a hostname as an argument.\n"
                           'Use "condor_status -help" for details\n')
            pool_name = argv[i]
        elif is_dash_arg_prefix(a, "constraint", 3):
            i += 1
            if i >= len(argv):
                raise Exit("Error: Argument -constraint requires another parameter\n"
                           'Use "condor_status -help" for details\n')
            constraint = argv[i] if constraint is None else f"({constraint}) && ({argv[i]})"
        elif is_dash_arg_prefix(a, "json", 2):
            json_out = True
        elif is_dash_arg_prefix(a, "attributes", 2):
            i += 1
            if i >= len(argv):
                raise Exit("Error: Argument -attributes requires a list of attributes\n")
            projection += [s for s in re.split(r"[\s,]+", argv[i]) if s]
        elif is_dash_arg_prefix(a, "totals", 1):
            total = True
        else:
            raise Exit(f"Error:  Unknown option {a}\n"
                       "Usage: condor_status [help-opt] [query-opt] [custom-opts] "
                       "[display-opts] [name ...]\n")
        i += 1
    if pool_name is not None and not pool.accepts_pool(pool_name):
        raise Exit(f"Error: communication error\nCEDAR:6001:Failed to connect to "
                   f"<{pool_name}>\n" + no_collector_contact(pool_name))
    try:
        expr = parse_constraint(constraint) if constraint else None
    except ClassAdSyntaxError:
        raise Exit(f"Error: Invalid constraint expression : {constraint}\n") from None
    with pool.lock:
        slots = pool.slot_ads()
    selected = [s for s in slots if matches(expr, s) and
                (not names or any(n.lower() in (s.get_str("Name").lower(),
                                                s.get_str("Machine").lower()) for n in names))]
    if af is not None:
        try:
            exprs = [parse(e) for e in af]
        except ClassAdSyntaxError:
            raise Exit("Error: invalid expression in -af arguments\n") from None
        return Reply(formats.af_lines(selected, exprs, jobid=False))
    if json_out:
        return Reply(formats.json_ads(selected, projection or None))
    if not selected:
        return Reply("")
    if total:
        return Reply("\n" + formats.status_totals(selected))
    return Reply(formats.status_table(selected, int(time.time())) + "\n"
                 + formats.status_totals(selected))
