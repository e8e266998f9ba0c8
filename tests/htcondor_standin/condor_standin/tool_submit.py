"""condor_submit: read the submit description, build the job ads, queue them."""

from __future__ import annotations

import time

from . import formats, submit_lang
from .classad import ClassAd
from .pool import Pool
from .tool_common import Exit, Reply, Request, is_dash_arg_prefix


def condor_submit(pool: Pool, req: Request) -> Reply:
    terse = False
    name: str | None = None
    pool_name: str | None = None
    cmd_file: str | None = None
    extra: list[submit_lang.Statement] = []
    args = list(req.argv)
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("-") and a != "-":
            if is_dash_arg_prefix(a, "terse", 3):
                terse = True
            elif is_dash_arg_prefix(a, "name", 1) or is_dash_arg_prefix(a, "pool", 2):
                opt = "name" if is_dash_arg_prefix(a, "name", 1) else "pool"
                if i + 1 >= len(args):
                    raise Exit(f"condor_submit: -{opt} requires another argument\n")
                i += 1
                if opt == "name":
                    name = args[i]
                else:
                    pool_name = args[i]
            else:
                raise Exit("Usage: condor_submit [options] [<attrib>=<value>] "
                           "[- | <submit-file>]\n")
        elif a != "-" and "=" in a:
            key, _, value = a.partition("=")
            key = key.strip()
            stmt_key = "my." + key[1:].lower() if key.startswith("+") else key.lower()
            extra.append(submit_lang.Statement(0, key=stmt_key, name=key.lstrip("+"),
                                               value=value.strip()))
        else:
            cmd_file = a
        i += 1
    from_stdin = cmd_file == "-"
    verbose = from_stdin and not terse

    if (name is not None and not pool.accepts_schedd(name)) or \
            (pool_name is not None and not pool.accepts_pool(pool_name)):
        if name is not None:
            raise Exit(f"\nERROR: Can't find address of schedd {name}\n")
        raise Exit("\nERROR: Can't find address of local schedd\n")
    if req.submit_open_error is not None:
        raise Exit(f"\nERROR: Failed to open command file ({cmd_file}) "
                   f"({req.submit_open_error})\n")

    out: list[str] = []
    if not from_stdin and not terse:
        out.append("Submitting job(s)")
    source = "<stdin>" if cmd_file in (None, "-") else cmd_file
    try:
        stmts = extra + submit_lang.parse_description(req.submit_text or "", str(source))
    except submit_lang.SubmitError as e:
        raise Exit(e.text, stdout="".join(out)) from None
    label = "(stdin)" if from_stdin else (cmd_file if cmd_file is not None else "(null)")
    queues = submit_lang.queue_statements(stmts)
    if not queues:
        raise Exit(f'\nERROR: "{label}" doesn\'t contain any "queue" commands -- '
                   "no jobs queued\n", stdout="".join(out))

    with pool.lock:
        now = int(time.time())
        cluster = pool.queue.next_cluster
        clusters: list[list[ClassAd]] = []
        for index, count in queues:
            if count == 0:
                continue
            ctx = submit_lang.SubmitContext(cluster, req.user, pool.host, req.cwd, now, req.env)
            try:
                ads = [submit_lang.make_job_ad(stmts, index, ctx, p, count) for p in range(count)]
            except submit_lang.SubmitError as e:
                raise Exit(e.text, stdout="".join(out)) from None
            clusters.append(ads)
            cluster += 1
        for ads in clusters:
            pool.queue.allocate_cluster()
            for ad in ads:
                pool.queue.add(ad)
        pool.queue.save()
        pool.reschedule()

    err: list[str] = []
    if not clusters and not terse:
        err.append(f'\nWARNING: "{label}" has only empty "queue" commands -- no jobs queued\n')
    for ads in clusters:
        for ad in ads:
            if verbose:
                out.append(f"\n** Proc {ad.get('ClusterId')}.{ad.get('ProcId')}:\n")
                out.append(formats.long_ad(ad)[:-1])
            elif not terse:
                out.append(".")
    if not from_stdin and not terse:
        out.append("\n")
    if terse:
        for ads in clusters:
            c = ads[0].get("ClusterId")
            out.append(f"{c}.0 - {c}.{len(ads) - 1}\n")
    elif not verbose and clusters:
        for ads in clusters:
            out.append(f"{len(ads)} job(s) submitted to cluster {ads[0].get('ClusterId')}.\n")
        ids = " ".join(str(ads[0].get("ClusterId")) for ads in clusters)
        err.append(f"To monitor your job(s), run: condor_watch_q -clusters {ids}\n")
    return Reply("".join(out), "".join(err), 0)
