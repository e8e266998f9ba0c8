"""condor_q: the job queue as -af, -json, -long or the default batch table."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from . import formats
from .classad import ClassAdSyntaxError
from .classad_parse import parse
from .pool import Pool
from .tool_common import (
    Exit,
    Reply,
    Request,
    dash_colon,
    is_dash_arg_prefix,
    is_superuser,
    matches,
    no_collector_contact,
    parse_constraint,
    proc_id,
)


@dataclass
class _QArgs:
    all_users: bool = False
    name: str | None = None
    pool: str | None = None
    constraint: str | None = None
    json: bool = False
    long: bool = False
    attributes: list[str] = field(default_factory=list)
    af: list[str] | None = None
    af_jobid: bool = False
    ids: list[tuple[int, int]] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)


def _q_usage_error(req: Request, message: str) -> Exit:
    return Exit(message, stdout=f"Usage: {req.argv0 or 'condor_q'} [general-opts] "
                "[restriction-list] [output-opts | analyze-opts]\n")


def _parse_q(req: Request) -> _QArgs:
    q = _QArgs()
    argv = req.argv
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            pid = proc_id(a)
            if pid is not None:
                q.ids.append(pid)
            else:
                q.owners.append(a)
            i += 1
            continue
        colon = dash_colon(a, "af", 2)
        if colon is None:
            colon = dash_colon(a, "autoformat", 5)
        if colon is not None:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise Exit("Error: -autoformat requires at least one attribute parameter\n")
            opts = colon[1:]
            if any(c != "j" for c in opts):
                raise Exit(f"Error: the HTCondor stand-in supports only -af:j, not {a}\n")
            q.af_jobid = "j" in opts
            q.af = []
            while i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                i += 1
                q.af.append(argv[i])
        elif is_dash_arg_prefix(a, "long", 1):
            q.long = True
        elif is_dash_arg_prefix(a, "json", 2):
            q.json = q.long = True
        elif is_dash_arg_prefix(a, "name", 1):
            if i + 1 >= len(argv):
                raise Exit("Error: -name requires the name of a schedd as an argument.\n")
            i += 1
            q.name = argv[i]
        elif is_dash_arg_prefix(a, "pool", 1):
            if i + 1 >= len(argv):
                raise Exit("Error: -pool requires a hostname as an argument.\n", stdout="\n")
            i += 1
            q.pool = argv[i]
        elif is_dash_arg_prefix(a, "constraint", 1):
            if i + 1 >= len(argv):
                raise Exit("Error: -constraint requires another parameter\n")
            i += 1
            q.constraint = argv[i]
        elif is_dash_arg_prefix(a, "attributes", 2):
            if i + 1 >= len(argv):
                raise Exit("Error: -attributes requires a list of attributes to show\n")
            i += 1
            q.attributes += [s for s in re.split(r"[\s,]+", argv[i]) if s]
        elif is_dash_arg_prefix(a, "allusers", 2) or is_dash_arg_prefix(a, "all-users", 2):
            q.all_users = True
        else:
            raise _q_usage_error(req, f"Error: unrecognized argument {a}\n")
        i += 1
    return q


def condor_q(pool: Pool, req: Request) -> Reply:
    q = _parse_q(req)
    schedd_name = pool.config.schedd_names[0]
    if q.name is not None:
        if q.pool is not None and not pool.accepts_pool(q.pool):
            raise Exit(no_collector_contact(q.pool))
        if not pool.accepts_schedd(q.name):
            raise Exit("Error: Collector has no record of schedd/submitter\n")
        schedd_name = q.name
    try:
        user_expr = parse_constraint(q.constraint) if q.constraint else None
    except ClassAdSyntaxError:
        raise Exit(f'\n-- Parse error in constraint expression "{q.constraint}"\n') from None
    my_jobs = not (q.all_users or q.owners or q.ids)
    me: str | None = None
    if my_jobs and not is_superuser(req):
        me = f"{req.user}@{pool.host}"

    with pool.lock:
        now = int(time.time())
        all_jobs = [ad.copy() for _, ad in pool.queue.sorted_jobs()]
    selected = []
    for ad in all_jobs:
        if me is not None and ad.get("User") != me:
            continue
        if q.ids and not any(ad.get("ClusterId") == c and (p < 0 or ad.get("ProcId") == p)
                             for c, p in q.ids):
            continue
        if q.owners and ad.get("Owner") not in q.owners:
            continue
        if not matches(user_expr, ad):
            continue
        selected.append(ad)

    if q.af is not None:
        try:
            exprs = [parse(e) for e in q.af]
        except ClassAdSyntaxError:
            raise Exit("Error: invalid expression in -af arguments\n") from None
        return Reply(formats.af_lines(selected, exprs, q.af_jobid))
    if q.long:
        for ad in selected:
            ad["ServerTime"] = now
        projection = q.attributes or None
        if q.json:
            return Reply(formats.json_ads(selected, projection))
        return Reply("".join(formats.long_ad(ad, projection) for ad in selected))

    label = f"Schedd: {schedd_name} : {formats.summarize_sinful(pool.schedd_address)}"
    stamp = time.strftime(" @ %m/%d/%y %H:%M:%S", time.localtime(now))
    text = f"\n\n-- {label}{stamp}\n" + formats.q_batch_table(selected, show_hold=False)
    mine = formats.job_counts(ad for ad in all_jobs if ad.get("User") == me) if me else None
    text += formats.q_summary(formats.job_counts(selected), formats.job_counts(all_jobs), me,
                              mine)
    return Reply(text)
