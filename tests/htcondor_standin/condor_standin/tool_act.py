"""condor_rm, condor_hold (schedd job actions) and condor_reschedule."""

from __future__ import annotations

import re

from .classad import ClassAd, ClassAdSyntaxError
from .pool import HOLD_USER_REQUEST, Pool
from .schedd import JobKey
from .tool_common import (
    Exit,
    Reply,
    Request,
    is_dash_arg_prefix,
    is_superuser,
    matches,
    parse_constraint,
    proc_id,
)


def _rm_usage(tool: str) -> str:
    return f"Usage: {tool} [options] [constraints]\n"


def condor_act(pool: Pool, req: Request) -> Reply:
    tool = req.tool
    hold = tool == "condor_hold"
    verb_past = "held" if hold else "marked for removal"
    verb = "hold" if hold else "remove"
    argv = req.argv
    if not argv:
        raise Exit("You did not specify any jobs\n" + _rm_usage(tool))
    name: str | None = None
    pool_name: str | None = None
    constraint: str | None = None
    ids: list[str] = []
    usercluster: list[str] = []
    kinds: list[str] = []
    all_jobs = False
    i = 0
    errors: list[str] = []
    had_error = False
    while i < len(argv):
        a = argv[i]
        if a.startswith("-"):
            if is_dash_arg_prefix(a, "constraint", 1):
                i += 1
                if i >= len(argv) or argv[i].startswith("-"):
                    raise Exit(f"{tool}: -constraint requires another argument\n")
                constraint = argv[i] if constraint is None else f"({constraint}) && ({argv[i]})"
            elif is_dash_arg_prefix(a, "all", 1):
                if constraint is not None or usercluster:
                    raise Exit(f"{tool}: can't mix -all with other constraints\n")
                all_jobs = True
            elif is_dash_arg_prefix(a, "name", 1) or is_dash_arg_prefix(a, "pool", 1):
                opt = "name" if is_dash_arg_prefix(a, "name", 1) else "pool"
                i += 1
                if i >= len(argv):
                    raise Exit(f"{tool}: -{opt} requires another argument\n")
                if opt == "name":
                    name = argv[i]
                else:
                    pool_name = argv[i]
            else:
                raise Exit(f"Unrecognized option: {a}\n" + _rm_usage(tool))
        else:
            if all_jobs:
                raise Exit(_rm_usage(tool))
            pid = proc_id(a)
            if pid is None and re.fullmatch(r"[0-9.]+", a):
                errors.append(f'Warning: unrecognized "{a}" skipped.\n')
            elif pid is not None and pid[0] <= 0:
                errors.append(f"Invalid cluster # from {a}.\n")
                had_error = True
            elif pid is not None and pid[1] >= 0:
                ids.append(a)
            elif pid is not None:
                usercluster.append(f"ClusterId == {pid[0]}")
                kinds.append("cluster")
            else:
                usercluster.append(f'Owner == "{a}"')
                kinds.append("user")
        i += 1
    if not (constraint or usercluster or ids or all_jobs):
        if had_error:
            return Reply("", "".join(errors), 1)
        raise Exit("".join(errors) + "You did not specify any jobs\n" + _rm_usage(tool))

    if name is not None and pool_name is None and not pool.accepts_schedd(name):
        raise Exit(f"Error: cannot get address of schedd {name}\n")
    if (name is not None and not pool.accepts_schedd(name)) or \
            (pool_name is not None and not pool.accepts_pool(pool_name)):
        raise Exit(f"{tool}: Can't find address for schedd {name or pool.host}\n")

    reason = f"via {tool} (by user {req.user})"
    out: list[str] = []
    err: list[str] = list(errors)

    def act(key: JobKey, ad: ClassAd) -> str:
        """'ok', 'denied', 'done' (already held/removed) for one job."""
        if not is_superuser(req) and ad.get("Owner") != req.user:
            return "denied"
        status = ad.get("JobStatus")
        if hold:
            if status == 5 and ad.get("HoldReasonCode") in (1, 12):
                return "done"
            if status in (3, 4):
                return "denied"
            pool.hold_job(key, reason, HOLD_USER_REQUEST, 0)
        else:
            if status == 3:
                return "done"
            pool.remove_job(key, reason)
        return "ok"

    with pool.lock:
        if ids:
            if constraint:
                err.append("Warning, -constraint is ignored for fully qualified job ids\n")
            results = []
            for text in ids:
                c, p = proc_id(text) or (0, 0)
                ad = pool.queue.jobs.get((c, p))
                results.append(((c, p), "missing" if ad is None else act((c, p), ad)))
            if not any(r == "ok" for _, r in results):
                had_error = True
            for (c, p), r in results:
                if r == "ok":
                    out.append(f"Job {c}.{p} {verb_past}\n")
                elif r == "missing":
                    err.append(f"Job {c}.{p} not found\n")
                elif r == "denied":
                    err.append(f"Permission denied to {verb} job {c}.{p}\n")
                else:
                    err.append(f"Job {c}.{p} already {'held' if hold else 'marked for removal'}\n")

        if usercluster or constraint or all_jobs:
            parts = []
            if all_jobs:
                parts.append("ClusterId >= 0")
                cmsg = ""
            user_cons = " || ".join(usercluster)
            if constraint:
                parts.append(constraint)
            if user_cons:
                parts.append(user_cons)
            full = " && ".join(f"({p})" for p in parts) if len(parts) > 1 else parts[0]
            if not all_jobs:
                if constraint or len(usercluster) > 1:
                    cmsg = f" matching constraint ({full})"
                elif kinds[0] == "cluster":
                    cmsg = f" in cluster {usercluster[0].split(' == ')[1]}"
                else:
                    cmsg = f" of user {usercluster[0].split(' == ')[1]}"
            try:
                expr = parse_constraint(full)
            except ClassAdSyntaxError:
                raise Exit(f"{tool}: invalid constraint {full}\n") from None
            total = len(pool.queue.jobs)
            done = 0
            for key, ad in list(pool.queue.sorted_jobs()):
                status = ad.get("JobStatus")
                if hold and status in (3, 4):
                    continue
                if not hold and status == 3:
                    continue
                if matches(expr, ad) and act(key, ad) == "ok":
                    done += 1
            if done:
                out.append(f"All jobs{cmsg} have been {verb_past}\n")
            elif total == 0:
                err.append(f"{tool}:0:There are no jobs in the queue\n")
            else:
                had_error = True
                err.append(f"\nCouldn't find/{verb} all jobs{cmsg}\n")
    return Reply("".join(out), "".join(err), 1 if had_error else 0)


def condor_reschedule(pool: Pool, req: Request) -> Reply:
    names: list[str] = []
    pool_name: str | None = None
    argv = req.argv
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            names.append(a)
        elif is_dash_arg_prefix(a, "name", 2):
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                raise Exit("ERROR: -name requires another argument\n"
                           'Use "-help" to see usage information\n')
            i += 1
            names.append(argv[i])
        elif is_dash_arg_prefix(a, "pool", 1):
            if i + 1 >= len(argv):
                raise Exit("ERROR: -pool requires another argument\n"
                           'Use "-help" to see usage information\n')
            i += 1
            pool_name = argv[i]
        else:
            raise Exit(f'ERROR: invalid argument "{a}"\n'
                       "Usage: condor_reschedule [general-options] [targets]\n")
        i += 1
    if not names:
        if pool_name is not None:
            raise Exit("ERROR: You have asked to find a machine in another pool (with\n"
                       "the -pool option) but you have not specified which machine.\n"
                       "Please also use -addr, -name, or list the name(s).\n"
                       "For more information, use -help.\n")
        pool.reschedule()
        return Reply('Sent "Reschedule" command to local schedd\n')
    if pool_name is not None and not pool.accepts_pool(pool_name):
        raise Exit(f"\nERROR: can't connect to collector {pool_name}\n"
                   + "".join(f"Can't find address for schedd {n}\n" for n in names)
                   + "Perhaps you need to query another pool.\n")
    out, err = [], []
    missing = []
    for n in names:
        if pool.accepts_schedd(n):
            pool.reschedule()
            out.append(f'Sent "Reschedule" command to schedd {n}\n')
        else:
            err.append(f"Can't find address for schedd {n}\n")
            missing.append(n)
    if missing:
        err += [f"Can't find address for {n}\n" for n in missing]
        err.append("Perhaps you need to query another pool.\n")
    return Reply("".join(out), "".join(err), 1 if missing else 0)


# SYSTEM_IMMUTABLE_JOB_ATTRS of HTCondor 25 (src/condor_utils/param_info.in).
IMMUTABLE = {"Owner", "ClusterId", "JobUniverse", "ProcId", "MyType", "TargetType", "User",
             "OsUser"}
ATTR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def condor_qedit(pool: Pool, req: Request) -> Reply:
    """``condor_qedit [-forward] JOBID... ATTR VALUE`` (or ``ATTR=VALUE``): what a pool user
    may do to their own jobs (src/condor_tools/qedit.cpp): set any attribute that is neither
    immutable nor protected (PROTECTED_JOB_ATTRS: queue super users only) to any valid
    ClassAd expression, whatever type our parser expects. ``-forward`` also hands a running
    job's new AllowedJobDuration to its shadow, which otherwise keeps the one it started
    with."""
    argv, i = req.argv, 0
    ids: list[str] = []
    edits: dict[str, str] = {}
    forward = False
    while i < len(argv):
        a = argv[i]
        if is_dash_arg_prefix(a, "name", 1) or is_dash_arg_prefix(a, "pool", 1):
            i += 2
            continue
        if is_dash_arg_prefix(a, "forward", 3):
            forward = True
            i += 1
            continue
        if a.startswith("-"):
            raise Exit(f"condor_qedit: {a} is not a valid option\n")
        if a[:1].isdigit() and not edits:
            ids.append(a)
        elif not ids:
            raise Exit("condor_qedit : Error - there were no jobs specified.\n")
        else:
            attr, eq, value = a.partition("=")
            if not eq:
                i += 1
                if i >= len(argv):
                    raise Exit(f"condor_qedit : expression required after attribute {a}\n")
                value = argv[i]
            attr, value = attr.strip(), value.strip()
            if not ATTR_NAME.fullmatch(attr):
                raise Exit("Update aborted, illegal attribute-name specified for attribute "
                           f'"{attr}".\nTransaction failed.  No attributes were set.\n')
            try:
                parse_constraint(value)
            except ClassAdSyntaxError:
                raise Exit(f"Update aborted, illegal value for : {attr}\n"
                           "Transaction failed.  No attributes were set.\n") from None
            edits[attr] = value
        i += 1
    for attr in edits:
        if attr in IMMUTABLE:
            raise Exit(f'Update of immutable attribute "{attr}" is not allowed.\n'
                       "Transaction failed.  No attributes were set.\n")
    out: list[str] = []
    with pool.lock:
        for attr, value in sorted(edits.items()):
            for text in ids:
                c, p = proc_id(text) or (0, 0)
                keys = [k for k in pool.queue.jobs if k[0] == c and (p < 0 or k[1] == p)]
                ads = [pool.queue.jobs[k] for k in keys]
                refused = not is_superuser(req) and (
                    attr in pool.config.protected_attrs
                    or any(ad.get("Owner") != req.user for ad in ads))
                if not ads or refused:
                    which = (f"by constraint: ( (ClusterId == {c} ) )" if "." not in text
                             else f"for job {c}.{p}.")
                    raise Exit(f'Failed to set attribute "{attr}" {which}\n'
                               "Queue transaction failed.  No attributes were set.\n")
                for key, ad in zip(keys, ads, strict=True):
                    ad[attr] = parse_constraint(value)
                    if forward and attr == "AllowedJobDuration" and ad.get("JobStatus") == 2:
                        pool.shadow_durations[key] = ad.get(attr)
            out.append(f'Set attribute "{attr}" for {len(ids)} matching jobs.\n')
        pool.queue.save()
    return Reply("".join(out))
