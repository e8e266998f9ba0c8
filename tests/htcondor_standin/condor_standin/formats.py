"""How the HTCondor tools print ads: -long, -json, -af, the condor_q/condor_history/
condor_status tables, and wrapped help text.  Byte-for-byte with HTCondor 25.14 where the
reference transcripts (tests/fixtures/htcondor/) show the format."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .classad import (
    ERROR,
    UNDEFINED,
    ClassAd,
    Expr,
    ListExpr,
    Literal,
    RecordExpr,
    Value,
    format_real,
    unparse_value,
)
from .classad_eval import evaluate


def sort_key(name: str) -> str:
    return name.lower()


def project(ad: ClassAd, projection: Sequence[str] | None) -> list[tuple[str, Expr]]:
    """Attributes of `ad` (in the projection, if any), sorted case-insensitively."""
    items = ad.items()
    if projection:
        wanted = {p.lower() for p in projection}
        items = [(n, e) for n, e in items if n.lower() in wanted]
    return sorted(items, key=lambda item: sort_key(item[0]))


# ---------------------------------------------------------------- -long


def long_ad(ad: ClassAd, projection: Sequence[str] | None = None) -> str:
    """`condor_q -l`: sorted `Attr = value` lines and a blank line."""
    lines = [f"{name} = {expr.unparse(old=True)}\n" for name, expr in project(ad, projection)]
    return "".join(lines) + "\n"


# ---------------------------------------------------------------- -json


def json_escape(s: str) -> str:
    out = []
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c in "\b\f\n\r\t":
            out.append({"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}[c])
        elif 0 < ord(c) < 32:
            out.append("\\u00%02X" % ord(c))  # noqa: UP031 - HTCondor's printf format
        else:
            out.append(c)
    return "".join(out)


def _json_quote_expr(text: str) -> str:
    return '"\\/Expr(' + json_escape(text) + ')\\/"'


def _json_value(v: Value, indent: int) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return _json_quote_expr(format_real(v))
        return format_real(v, old=True)
    if isinstance(v, str):
        return '"' + json_escape(v) + '"'
    if v is UNDEFINED:
        return "null"
    if v is ERROR:
        return _json_quote_expr("error")
    if isinstance(v, list):
        return _json_list([Literal(i) for i in v], indent)
    if isinstance(v, ClassAd):
        return _json_object(v.items(), indent)
    return "null"


def _json_list(items: Sequence[Expr], indent: int) -> str:
    inner = indent + 2
    parts = ["["]
    for i, item in enumerate(items):
        if i:
            parts.append(",")
        parts.append("\n" + " " * inner + _json_expr(item, inner))
    parts.append("\n" + " " * indent + "]")
    return "".join(parts)


def _json_object(attrs: Iterable[tuple[str, Expr]], indent: int) -> str:
    inner = indent + 2
    parts = ["{"]
    for i, (name, expr) in enumerate(attrs):
        if i:
            parts.append(",")
        parts.append("\n" + " " * inner + '"' + json_escape(name) + '": ' + _json_expr(expr, inner))
    parts.append("\n" + " " * indent + "}")
    return "".join(parts)


def _json_expr(expr: Expr, indent: int) -> str:
    if isinstance(expr, Literal):
        return _json_value(expr.value, indent)
    if isinstance(expr, ListExpr):
        return _json_list(expr.items, indent)
    if isinstance(expr, RecordExpr):
        return _json_object(expr.attrs, indent)
    return _json_quote_expr(expr.unparse(old=False))


def json_ad(ad: ClassAd, projection: Sequence[str] | None = None) -> str:
    return _json_object(project(ad, projection), 0)


def json_ads(ads: Sequence[ClassAd], projection: Sequence[str] | None = None,
             always_brackets: bool = False) -> str:
    """condor_q/condor_status/condor_history -json: `[`, ads separated by `\\n,\\n`, `]`.
    condor_q and condor_status print nothing at all when no ad matched."""
    if not ads:
        return "[\n]\n" if always_brackets else ""
    return "[\n" + "\n,\n".join(json_ad(ad, projection) for ad in ads) + "\n]\n"


# ---------------------------------------------------------------- -af


def af_text(v: Value) -> str:
    if isinstance(v, str):
        return v
    return unparse_value(v, old=True)


def af_lines(ads: Sequence[ClassAd], exprs: Sequence[Expr], jobid: bool) -> str:
    out = []
    for ad in ads:
        cols = [af_text(evaluate(e, ad)) for e in exprs]
        if jobid:
            cols.insert(0, f"{ad.get('ClusterId', 0)}.{ad.get('ProcId', 0)}")
        out.append(" ".join(cols) + "\n")
    return "".join(out)


# ---------------------------------------------------------------- text helpers


def wrapped(text: str, chars_per_line: int = 78) -> str:
    """print_wrapped_text(): HTCondor's word wrapper for its 'Extra Info' messages."""
    out: list[str] = []
    count = 0
    for token in [t for t in text.replace("\t", " ").split(" ") if t]:
        if len(token) < chars_per_line - count:
            out.append(token)
            count += len(token)
        else:
            out.append("\n" + token)
            count = len(token)
        if count < chars_per_line:
            out.append(" ")
            count += 1
        else:
            out.append("\n")
            count = 0
    out.append("\n")
    return "".join(out)


def format_date(t: int) -> str:
    """format_date(): "%2d/%-2d %02d:%02d" of local time."""
    tm = time.localtime(t)
    return "%2d/%-2d %02d:%02d" % (tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min)  # noqa: UP031 - HTCondor's printf format


def format_time(secs: int) -> str:
    """format_time(): "%3d+%02d:%02d:%02d" (days+hh:mm:ss)."""
    if secs < 0:
        return "[?????]"
    days, rest = divmod(secs, 86400)
    hours, rest = divmod(rest, 3600)
    mins, s = divmod(rest, 60)
    return "%3d+%02d:%02d:%02d" % (days, hours, mins, s)  # noqa: UP031 - HTCondor's printf format


def format_time_short(secs: int) -> str:
    """format_time_short(): format_time() without leading blanks, zeros and '+'."""
    text = format_time(secs)
    i = 0
    while i < len(text):
        c = text[i]
        if c not in " 0+":
            if c == ":":
                i += 1
            break
        i += 1
    return text[i:]


def summarize_sinful(addr: str) -> str:
    """summarize_sinful_for_display(): keep host:port, replace the parameters by '...'."""
    if "?" in addr:
        return addr.split("?", 1)[0] + "?..."
    return addr


# ---------------------------------------------------------------- condor_q table


def _count(n: int) -> str:
    return f"{n:6d}" if n > 0 else "     _"


@dataclass
class _BatchRow:
    owner: str
    batch: str
    qdate: int
    run: int = 0
    idle: int = 0
    held: int = 0
    ids: list[tuple[int, int]] = field(default_factory=list)
    procs: dict[int, list[int]] = field(default_factory=dict)  # cluster -> [submitted, queued]

    @property
    def total(self) -> int:
        return sum(c[0] for c in self.procs.values())

    @property
    def done(self) -> int:
        return sum(c[0] - c[1] for c in self.procs.values())

    @property
    def id_text(self) -> str:
        lo, hi = min(self.ids), max(self.ids)
        if lo == hi:
            return f"{lo[0]}.{lo[1]}"
        if lo[0] == hi[0]:
            return f"{lo[0]}.{lo[1]}-{hi[1]}"
        return f"{lo[0]}.{lo[1]} ... {hi[0]}.{hi[1]}"


def q_batch_table(ads: Sequence[ClassAd], show_hold: bool) -> str:
    """condor_q's default -batch table: one row per cluster (or batch name).  Column widths
    follow fnFixupWidthsForProgressFormat; the HOLD column only shows when a job is held
    (or when there are no rows at all)."""
    rows: dict[str, _BatchRow] = {}
    for ad in sorted(ads, key=lambda a: (a.get_int("ClusterId"), a.get_int("ProcId"))):
        cluster = ad.get_int("ClusterId")
        batch = ad.get_str("JobBatchName")
        owner = ad.get_str("Owner", "??")
        key = f"{owner}\0{batch}" if batch else f"{owner}\0#{cluster}"
        row = rows.setdefault(key, _BatchRow(owner, batch or f"ID: {cluster}",
                                             ad.get_int("QDate")))
        status = ad.get_int("JobStatus")
        if status in (2, 6):
            row.run += 1
        elif status in (1, 7):
            row.idle += 1
        elif status == 5:
            row.held += 1
        counts = row.procs.setdefault(cluster, [ad.get_int("TotalSubmitProcs", 1), 0])
        counts[1] += 1
        row.ids.append((cluster, ad.get_int("ProcId")))
    if rows:
        owner_w = max(len(r.owner) for r in rows.values())
        owner_w = max(8, owner_w) if owner_w < 5 else owner_w
        batch_w = max(10, max(len(r.batch) for r in rows.values()))
        show_hold = show_hold or any(r.held > 0 for r in rows.values())
    else:
        owner_w, batch_w, show_hold = 5, 12, True
    head = ["OWNER".ljust(owner_w), "BATCH_NAME".ljust(batch_w), "   SUBMITTED", "  DONE",
            "  RUN ", "  IDLE"] + (["  HOLD"] if show_hold else []) + [" TOTAL", "JOB_IDS"]
    out = [" ".join(head) + "\n"]
    for r in rows.values():
        cols = [r.owner.ljust(owner_w), r.batch.ljust(batch_w), format_date(r.qdate).rjust(12),
                _count(r.done), _count(r.run), _count(r.idle)]
        cols += [_count(r.held)] if show_hold else []
        cols += [_count(r.total), r.id_text]
        out.append(" ".join(cols) + "\n")
    return "".join(out)


def q_summary(query: dict[str, int], allusers: dict[str, int], me: str | None,
              mine: dict[str, int] | None) -> str:
    def line(label: str, c: dict[str, int]) -> str:
        return (f"Total for {label}: {c['jobs']} jobs; {c['completed']} completed, "
                f"{c['removed']} removed, {c['idle']} idle, {c['running']} running, "
                f"{c['held']} held, {c['suspended']} suspended")
    parts = [line("query", query)]
    if me is not None and mine is not None:
        parts.append(line(me, mine))
    parts.append(line("all users", allusers))
    return "\n" + " \n".join(parts) + "\n\n"


def job_counts(ads: Iterable[ClassAd]) -> dict[str, int]:
    c = {"jobs": 0, "completed": 0, "removed": 0, "idle": 0, "running": 0, "held": 0,
         "suspended": 0}
    names = {1: "idle", 2: "running", 3: "removed", 4: "completed", 5: "held", 6: "running",
             7: "suspended"}
    for ad in ads:
        c["jobs"] += 1
        st = names.get(ad.get_int("JobStatus", 0))
        if st:
            c[st] += 1
    return c


# ---------------------------------------------------------------- condor_history table


def history_short(ads: Sequence[ClassAd]) -> str:
    out = [" %-7s %-14s %11s %12s %-2s %11s %-15s\n" % (  # noqa: UP031 - HTCondor's printf format
        "ID", "OWNER", "SUBMITTED", "RUN_TIME", "ST", "COMPLETED", "CMD")]
    for ad in ads:
        wall = ad.get_float("RemoteWallClockTime", ad.get_float("RemoteUserCpu"))
        completion = ad.get_int("CompletionDate", 0)
        owner = ad.get_str("Owner", "")[:14]
        cmd = ad.get_str("Cmd", "")
        args = ad.get("Args")
        if isinstance(args, str) and 14 - len(cmd) > 0:
            cmd = (cmd + " " + args[:14 - len(cmd)])
        cmd = cmd[:15]
        qdate = ad.get_int("QDate", 0)
        status = "0IRXCHS>"[ad.get_int("JobStatus", 0)] if 0 <= ad.get_int("JobStatus", 0) < 8 \
            else "?"
        out.append("%4d.%-3d %-14s %-11s %-12s %-2s %-11s %-15s\n" % (  # noqa: UP031 - HTCondor's printf format
            ad.get_int("ClusterId", 0), ad.get_int("ProcId", 0), owner,
            format_date(qdate) if qdate else " ??? ", format_time(int(wall)), status,
            format_date(completion) if completion else " ??? ", cmd))
    return "".join(out)


# ---------------------------------------------------------------- condor_status


def status_totals(slots: Sequence[ClassAd]) -> str:
    """condor_status -total (and the footer of the default table)."""
    counts: dict[str, dict[str, int]] = {}
    names = ("Owner", "Claimed", "Unclaimed", "Matched", "Preempting", "Drained", "Backfill")
    total = dict.fromkeys(names, 0)
    total["machines"] = 0
    for s in slots:
        key = f"{s.get('Arch', '??')}/{s.get('OpSys', '??')}"
        c = counts.setdefault(key, {**dict.fromkeys(names, 0), "machines": 0})
        state = s.get_str("State", "")
        if state in c:
            c[state] += 1
            c["machines"] += 1
            total[state] += 1
            total["machines"] += 1
    width = max([14] + [len(k) for k in counts])

    def row(c: dict[str, int]) -> str:
        return "%6d %5d %7d %9d %7d %10d %6d %8d %6d\n" % (  # noqa: UP031 - HTCondor's printf format
            c["machines"], c["Owner"], c["Claimed"], c["Unclaimed"], c["Matched"],
            c["Preempting"], c["Drained"], c["Backfill"], 0)

    out = [" " * width + "%6.6s %5.5s %7.7s %9.9s %7.7s %10.10s %6.6s %8.8s %6.6s\n" % (  # noqa: UP031 - HTCondor's printf format
        "Total", "Owner", "Claimed", "Unclaimed", "Matched", "Preempting", "Drain", "Backfill",
        "BkIdle"), "\n"]
    for key in sorted(counts):
        out.append(key.rjust(width)[:width] + row(counts[key]))
    if counts:
        out.append("\n")
    out.append("Total".rjust(width) + row(total))
    return "".join(out)


def status_table(slots: Sequence[ClassAd], now: int) -> str:
    """condor_status default table (layout approximated, see README)."""
    name_w = min(34, max([4] + [len(s.get_str("Name", "")) for s in slots]))
    arch_w = max([4] + [len(s.get_str("Arch", "")) for s in slots])
    state_w = max([5] + [len(s.get_str("State", "")) for s in slots])
    head = ("Name".ljust(name_w) + " " + "OpSys".ljust(10) + " " + "Arch".ljust(arch_w) + " "
            + "State".ljust(state_w) + " " + "Activity" + " " + "LoadAv" + " " + "Mem".ljust(6)
            + "  ActvtyTime")
    out = [head + "\n", "\n"]
    for s in slots:
        since = s.get_int("EnteredCurrentActivity", now)
        out.append(
            s.get_str("Name", "??").ljust(name_w)[:name_w] + " "
            + s.get_str("OpSys", "??").ljust(10) + " "
            + s.get_str("Arch", "??").ljust(arch_w) + " "
            + s.get_str("State", "??").ljust(state_w) + " "
            + s.get_str("Activity", "??").ljust(8) + " "
            + "%6.3f" % s.get_float("LoadAvg", 0.0) + " "  # noqa: UP031 - HTCondor's printf format
            + "%6d" % s.get_int("Memory", 0)  # noqa: UP031 - HTCondor's printf format
            + format_time(max(0, now - since)).rjust(12) + "\n")
    return "".join(out)
