"""The subset of the condor_submit description language the stand-in understands.

`key = value` (keys case-insensitive), `# comments`, trailing-backslash continuation,
`+Attr = expr` and `MY.Attr = expr`, `$(macro)` expansion (ClusterId/Cluster,
ProcId/Process and any submit key), `$F(macro)` (its value without quotes; dask-jobqueue
names its workers' files with `$F(MY.JobId)`), `queue` / `queue N`.  Unknown keys are ignored, like
condor_submit does.  The job ad is built the way condor_submit + the schedd build it
(submit_utils.cpp): Args/Arguments, Environment, Request*, the generated Requirements, ...
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import arglist
from .classad import (
    UNDEFINED,
    AttrRef,
    ClassAd,
    ClassAdSyntaxError,
    Expr,
    Literal,
)
from .classad_parse import parse
from .constants import (
    ARCH,
    CONDOR_PLATFORM,
    CONDOR_VERSION,
    DEFAULT_REQUEST_DISK,
    OPSYS,
)


class SubmitError(Exception):
    """condor_submit fails; `text` is exactly what it prints on stderr."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


@dataclass
class Statement:
    line: int
    key: str = ""          # lower-cased key, "" for a queue statement
    name: str = ""         # key as written (for +Attr / MY.Attr: the attribute name)
    value: str = ""
    queue: int = -1        # >= 0 for a queue statement
    raw: str = ""


@dataclass
class SubmitContext:
    cluster: int
    owner: str
    host: str
    cwd: str
    qdate: int
    submit_env: dict[str, str] = field(default_factory=dict)


def parse_description(text: str, source: str) -> list[Statement]:
    """Split a submit description into statements (SubmitError on a line it cannot parse)."""
    stmts: list[Statement] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].rstrip("\r")
        i += 1
        while line.rstrip().endswith("\\") and i < len(lines):
            line = line.rstrip()[:-1] + lines[i].rstrip("\r").lstrip()
            i += 1
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = re.match(r"(?i)^queue(?:\s+(.*))?$", s)
        if m:
            arg = (m.group(1) or "").strip()
            if not arg:
                stmts.append(Statement(lineno, queue=1, raw=s))
                continue
            if re.fullmatch(r"\d+", arg):
                stmts.append(Statement(lineno, queue=int(arg), raw=s))
                continue
            raise _cannot_parse(source, lineno, s)
        m = re.match(r"^([+]?[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$", s)
        if not m:
            raise _cannot_parse(source, lineno, s)
        key, value = m.group(1), m.group(2).strip()
        if key.startswith("+"):
            stmts.append(Statement(lineno, key="my." + key[1:].lower(), name=key[1:], value=value))
        elif key.lower().startswith("my."):
            stmts.append(Statement(lineno, key=key.lower(), name=key[3:], value=value))
        elif "." in key:
            raise _cannot_parse(source, lineno, s)
        else:
            stmts.append(Statement(lineno, key=key.lower(), name=key, value=value))
    return stmts


def _cannot_parse(source: str, lineno: int, line: str) -> SubmitError:
    return SubmitError(f'ERROR: Error "{source}", Line {lineno}: cannot parse: {line}\n'
                       f"\nERROR: Failed to parse command file (line {lineno}).\n")


class _Hash:
    """The submit hash: key -> raw value, with HTCondor's $(macro) expansion."""

    def __init__(self, ctx: SubmitContext) -> None:
        self.values: dict[str, str] = {}
        self.my_attrs: dict[str, tuple[str, str]] = {}  # lower name -> (name, value)
        self.ctx = ctx
        self.proc = 0

    def set(self, st: Statement) -> None:
        if st.key.startswith("my."):
            self.my_attrs[st.key[3:]] = (st.name, st.value)
        else:
            self.values[st.key] = st.value

    def lookup(self, key: str) -> str | None:
        raw = self.values.get(key.lower())
        return None if raw is None else self.expand(raw)

    def expand(self, text: str, depth: int = 0) -> str:
        if depth > 20 or "$" not in text:
            return text

        def repl(m: re.Match[str]) -> str:
            if m.group(0).startswith("$$"):
                return m.group(0)
            if m.group("env") is not None:
                return self.ctx.submit_env.get(m.group("env"), "")
            if m.group("fname") is not None:  # $F(name): the value, its quotes stripped
                low = m.group("fname").lower()
                raw = self.my_attrs[low[3:]][1] if low.startswith("my.") and \
                    low[3:] in self.my_attrs else self.values.get(low, "")
                return self.expand(raw, depth + 1).strip().strip('"')
            name, _, default = m.group("name").partition(":")
            low = name.lower()
            if low in ("cluster", "clusterid"):
                return str(self.ctx.cluster)
            if low in ("process", "procid"):
                return str(self.proc)
            if low in self.values:
                return self.expand(self.values[low], depth + 1)
            return default

        pattern = (r"\$\$\([^)]*\)|\$ENV\((?P<env>[^)]*)\)|\$Fq?\((?P<fname>[^)]*)\)"
                   r"|\$\((?P<name>[^)]*)\)")
        return re.sub(pattern, repl, text)


def _parse_expr(attr: str, text: str) -> Expr:
    try:
        return parse(text)
    except ClassAdSyntaxError:
        raise SubmitError(f"ERROR: Parse error in expression: \n\t{attr} = {text}\n\t\n") from None


_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def parse_bytes(text: str, base_power: int) -> int | None:
    """parse_int64_bytes: '2048', '2GB', '512 M' -> amount in 1024**base_power units (ceil)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KkMmGgTt]?)[Bb]?\s*", text)
    if not m:
        return None
    number = float(m.group(1))
    unit = m.group(2).upper()
    power = _UNITS[unit] if unit else base_power
    nbytes = number * (1024 ** power)
    unit_bytes = 1024 ** base_power
    return int(-(-nbytes // unit_bytes))


def _full_path(path: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, path)) if not os.path.isabs(path) else path


def _file_size_kb(path: str) -> int:
    try:
        return (os.stat(path).st_size + 1023) // 1024
    except OSError:
        return 0


def _truthy(text: str) -> bool | None:
    low = text.strip().lower()
    if low in ("true", "yes", "t", "y", "1"):
        return True
    if low in ("false", "no", "f", "n", "0"):
        return False
    return None


def _getenv_filter(spec: str, env: dict[str, str]) -> dict[str, str]:
    flag = _truthy(spec)
    if flag is not None:
        return dict(env) if flag else {}
    out: dict[str, str] = {}
    patterns = [p for p in re.split(r"[\s,]+", spec) if p]
    for name, value in env.items():
        for pat in patterns:
            neg = pat.startswith("!")
            rx = "^" + re.escape(pat.lstrip("!")).replace(r"\*", ".*") + "$"
            if re.match(rx, name, re.IGNORECASE):
                if not neg:
                    out[name] = value
                else:
                    out.pop(name, None)
                break
    return out


def _machine_refs(expr: Expr) -> set[str]:
    """Attributes the requirements take from the machine (TARGET.x, or unscoped)."""
    refs: set[str] = set()
    for node in _walk(expr):
        if isinstance(node, AttrRef):
            if node.base is None:
                if node.name.lower() not in ("requestmemory", "vm_ckptmac", "requirements",
                                             "my", "target"):
                    refs.add(node.name.lower())
            elif isinstance(node.base, AttrRef) and node.base.base is None \
                    and node.base.name.upper() == "TARGET":
                refs.add(node.name.lower())
    return refs


def _walk(expr: Expr) -> Iterator[Expr]:
    yield expr
    for value in vars(expr).values():
        if isinstance(value, Expr):
            yield from _walk(value)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, Expr):
                    yield from _walk(item)
                elif isinstance(item, tuple):
                    yield from _walk(item[1])


def _literal_number(expr: Expr | None) -> float | None:
    if isinstance(expr, Literal) and isinstance(expr.value, (int, float)) \
            and not isinstance(expr.value, bool):
        return float(expr.value)
    return None


def _requirements(h: _Hash, job: ClassAd) -> str:
    user = h.lookup("requirements")
    answer = f"({user})" if user else ""
    refs: set[str] = set()
    if answer:
        try:
            refs = _machine_refs(parse(answer))
        except ClassAdSyntaxError:
            refs = set()
    if "arch" not in refs:
        answer += (" && " if answer else "") + f'(TARGET.Arch == "{ARCH}")'
    if "opsys" not in refs:
        answer += f' && (TARGET.OpSys == "{OPSYS}")'
    if "disk" not in refs:
        disk = _literal_number(job.expr("RequestDisk"))
        if disk is None or disk > 0.0:
            answer += (' && (versionGE(split(TARGET.CondorVersion)[1], "25.12.0") || '
                       "(TARGET.Disk >= RequestDisk))")
    elif job.expr("RequestDisk") is not None:
        answer += " && (TARGET.Disk >= RequestDisk)"
    mem = job.expr("RequestMemory")
    if mem is not None:
        val = _literal_number(mem)
        if val is None or val > 1.0:
            answer += " && (TARGET.Memory >= RequestMemory)"
    if "cpus" not in refs:
        cpus = job.expr("RequestCpus")
        if cpus is not None:
            val = _literal_number(cpus)
            if val is None or val > 1.0:
                answer += " && (TARGET.Cpus >= RequestCpus)"
    gpus = job.expr("RequestGPUs")
    if gpus is not None and "gpus" not in refs:
        val = _literal_number(gpus)
        if val is None or val > 0:
            answer += " && (TARGET.GPUs >= RequestGPUs)"
    stf = job.get_str("ShouldTransferFiles", "IF_NEEDED").upper()
    domain = "(TARGET.FileSystemDomain == MY.FileSystemDomain)"
    if stf == "NO":
        if "filesystemdomain" not in refs:
            answer += " && " + domain
    elif "hasfiletransfer" not in refs:
        close = ")"
        if stf == "IF_NEEDED" and "filesystemdomain" not in refs:
            answer += " && (" + domain + " || ("
            close = "))"
        else:
            answer += " && ("
        answer += "TARGET.HasFileTransfer"
        when = job.get_str("WhenToTransferOutput", "").upper()
        if when == "ON_SUCCESS":
            answer += ' && versioncmp( split(TARGET.CondorVersion)[1], "8.9.7" ) >= 0'
        answer += close
    return answer


def _request_value(h: _Hash, key: str, attr: str, default: str, base_power: int) -> Expr:
    raw = h.lookup(key) or h.lookup(attr)  # request_cpus, or its attribute's name RequestCpus
    text = raw if raw else default
    if base_power >= 0:
        amount = parse_bytes(text, base_power)
        if amount is not None:
            return Literal(amount)
    return _parse_expr(attr, text)


def _round_attr(value: int) -> int:
    """SCHEDD_ROUND_ATTR_* = 25%: round up to a quarter of the value's order of magnitude."""
    import math
    if value == 0:
        return 0
    magnitude = int(math.log(abs(value) / 5) / math.log(10) + 1)
    roundto = (10 ** magnitude) * 25 / 100.0
    return int(math.ceil(value / roundto) * roundto)


def make_job_ad(stmts: list[Statement], upto: int, ctx: SubmitContext, proc: int,
                total_procs: int) -> ClassAd:
    """The ad of job `ctx.cluster`.`proc`, from the statements before index `upto`."""
    h = _Hash(ctx)
    h.proc = proc
    for st in stmts[:upto]:
        if not st.queue >= 0:
            h.set(st)
    job = ClassAd()

    universe = (h.lookup("universe") or "vanilla").strip().lower()
    if universe != "vanilla":
        known = ("standard", "scheduler", "local", "grid", "java", "vm", "parallel", "docker",
                 "container", "globus", "pipe", "mpi")
        if universe in known:
            raise SubmitError(f"ERROR: the HTCondor stand-in only runs universe = vanilla, not "
                              f"'{universe}'\n")
        raise SubmitError(f"ERROR: I don't know about the '{universe}' universe.\n")

    iwd = _full_path(h.lookup("initialdir") or "", ctx.cwd) if h.lookup("initialdir") else ctx.cwd
    exe = h.lookup("executable")
    if not exe:
        raise SubmitError("ERROR: No 'executable' parameter was provided\n")
    cmd = _full_path(exe, iwd)
    if not os.path.exists(cmd):
        # condor_submit checks the executable on the submit host: refused, never queued
        # (reference: submit_missing_executable.txt)
        raise SubmitError(f"\nERROR: Can't access executable file {cmd}: No such file or "
                          "directory\n")
    exe_kb = _file_size_kb(cmd)

    job["ClusterId"] = ctx.cluster
    job["ProcId"] = proc
    job["Owner"] = ctx.owner
    job["User"] = f"{ctx.owner}@{ctx.host}"
    job["QDate"] = ctx.qdate
    job["EnteredCurrentStatus"] = ctx.qdate
    job["JobStatus"] = 1
    job["JobUniverse"] = 5
    job["MyType"] = "Job"
    job["TargetType"] = "Machine"
    job["Cmd"] = cmd
    job["Iwd"] = iwd
    job["GlobalJobId"] = f"{ctx.host}#{ctx.cluster}.{proc}#{ctx.qdate}"
    job["FileSystemDomain"] = ctx.host
    job["CondorVersion"] = CONDOR_VERSION
    job["SubmitVersion"] = CONDOR_VERSION
    job["CondorPlatform"] = CONDOR_PLATFORM
    for name, value in (("BytesRecvd", 0.0), ("BytesSent", 0.0), ("CommittedSlotTime", 0),
                        ("CommittedSuspensionTime", 0), ("CommittedTime", 0),
                        ("CumulativeRemoteSysCpu", 0.0), ("CumulativeRemoteUserCpu", 0.0),
                        ("CumulativeSlotTime", 0), ("CumulativeSuspensionTime", 0),
                        ("CurrentHosts", 0), ("ExitBySignal", False), ("ExitStatus", 0),
                        ("JobLeaseDuration", 2400), ("JobPrio", 0), ("JobSubmitMethod", 0),
                        ("LastSuspensionTime", 0), ("LeaveJobInQueue", False), ("MaxHosts", 1),
                        ("MinHosts", 1), ("NumCkpts", 0), ("NumCkpts_RAW", 0),
                        ("NumJobCompletions", 0), ("NumJobStarts", 0), ("NumRestarts", 0),
                        ("NumSystemHolds", 0), ("OrigMaxHosts", 1), ("Rank", 0.0),
                        ("RemoteSysCpu", 0.0), ("RemoteUserCpu", 0.0),
                        ("RemoteWallClockTime", 0.0), ("StreamErr", False), ("StreamOut", False),
                        ("TotalSuspensions", 0), ("TransferIn", False)):
        job[name] = value
    job["TotalSubmitProcs"] = total_procs
    job["ExecutableSize_RAW"] = exe_kb
    job["ExecutableSize"] = _round_attr(exe_kb)
    job["ImageSize_RAW"] = exe_kb
    job["ImageSize"] = _round_attr(exe_kb)

    # arguments
    args_text = h.lookup("arguments")
    if args_text is None:
        args_text = h.lookup("args")
    try:
        args, was_v1 = arglist.parse_arguments(args_text) if args_text else ([], False)
    except arglist.ArgError as e:
        raise SubmitError(f"ERROR: {e}\nThe full arguments you specified were: {args_text}\n") \
            from None
    if was_v1:
        job["Args"] = " ".join(args)
    else:
        job["Arguments"] = arglist.join_args(args)

    # environment (+ getenv)
    env_text = h.lookup("environment")
    if env_text is None:
        env_text = h.lookup("env")
    env: dict[str, str] = {}
    if env_text:
        try:
            env = arglist.parse_environment(env_text)
        except arglist.ArgError as e:
            raise SubmitError(f"ERROR: {e}\nThe environment you specified was: '{env_text}'\n") \
                from None
    getenv = h.lookup("getenv")
    if getenv:
        for var, text in _getenv_filter(getenv, ctx.submit_env).items():
            env.setdefault(var, text)
    job["Environment"] = arglist.environment_v2_raw(env)

    # files
    job["In"] = h.lookup("input") or "/dev/null"
    job["Out"] = h.lookup("output") or "/dev/null"
    job["Err"] = h.lookup("error") or "/dev/null"
    log = h.lookup("log")
    if log:
        job["UserLog"] = _full_path(log, iwd)
    stf = (h.lookup("should_transfer_files") or "IF_NEEDED").strip().upper()
    if stf not in ("YES", "NO", "IF_NEEDED"):
        raise SubmitError(f"ERROR: invalid value for should_transfer_files: {stf}\n")
    job["ShouldTransferFiles"] = stf
    when = h.lookup("when_to_transfer_output")
    if when:
        job["WhenToTransferOutput"] = when.strip().upper()
    elif stf != "NO":
        job["WhenToTransferOutput"] = "ON_EXIT"
    inputs = h.lookup("transfer_input_files")
    input_kb = 0
    if inputs:
        files = [f.strip() for f in inputs.split(",") if f.strip()]
        job["TransferInput"] = ",".join(files)
        input_kb = sum(_file_size_kb(_full_path(f, iwd)) for f in files)
    job["TransferInputSizeMB"] = (exe_kb + input_kb + 1023) // 1024
    job["DiskUsage_RAW"] = exe_kb + input_kb
    job["DiskUsage"] = _round_attr(exe_kb + input_kb)
    batch = h.lookup("batch_name")
    if batch:
        job["JobBatchName"] = batch.strip().strip('"')
    notification = (h.lookup("notification") or "never").strip().lower()
    job["JobNotification"] = {"never": 0, "always": 1, "complete": 2, "error": 3}.get(
        notification, 0)

    # resources
    job["RequestCpus"] = _request_value(h, "request_cpus", "RequestCpus", "1", -1)
    job["RequestDisk"] = _request_value(h, "request_disk", "RequestDisk", DEFAULT_REQUEST_DISK, 1)
    job["RequestMemory"] = _request_value(h, "request_memory", "RequestMemory", "128", 2)
    if h.lookup("request_gpus"):
        job["RequestGPUs"] = _request_value(h, "request_gpus", "RequestGPUs", "0", -1)

    # policy
    duration = h.lookup("allowed_job_duration")
    if duration:
        if not re.fullmatch(r"\s*-?\d+\s*", duration):
            raise SubmitError(f"ERROR: allowed_job_duration={duration} is invalid, must eval to "
                              "an integer.\n")
        job["AllowedJobDuration"] = int(duration)
    for key, attr in (("periodic_remove", "PeriodicRemove"), ("periodic_hold", "PeriodicHold"),
                      ("periodic_release", "PeriodicRelease")):
        policy = h.lookup(key)
        if policy:
            job[attr] = _parse_expr(attr, policy)

    # +Attr / MY.Attr
    for attr_name, raw in h.my_attrs.values():
        job[attr_name] = _parse_expr(attr_name, h.expand(raw)) if raw else Literal(UNDEFINED)

    if "requirements" not in h.my_attrs:
        req = _requirements(h, job)
        job["Requirements"] = _parse_expr("Requirements", req)
    return job


def queue_statements(stmts: list[Statement]) -> list[tuple[int, int]]:
    """(index of the queue statement, count) for every queue statement."""
    return [(i, st.queue) for i, st in enumerate(stmts) if st.queue >= 0]
