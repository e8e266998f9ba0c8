"""SLURM through its CLIs: sbatch/scancel as the user, one squeue for all our jobs.

squeue prints one line per job, and a job's comment (which its owner writes, and which may
hold a newline) is one of the fields: any cluster user could forge a "record" of their own.
So every query frames each record between two random words that only this query knows
(``FRAME_START|%i|...|%k|FRAME_END``); a line that is not framed exactly is not a record.
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import pwd
import re
import secrets
import shlex
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from traitlets import Bool, Unicode

from ..commands import CommandError
from ..contract import MAX_TAG
from ..profiles import Profile
from ..render import RenderError
from ..units import format_duration, format_size, mebibytes
from .base import (
    Availability,
    Backend,
    BackendError,
    CancelRefused,
    DaskCluster,
    ExtendRefused,
    JobInfo,
    JobState,
    SubmitRequest,
    Tool,
    tool_dirs,
)

SLURM_ID_RE = re.compile(r"^\d{1,20}$")

log = logging.getLogger("hpcspawner.slurm")

# squeue fields, '|' separated; the comment (our tag) comes last, before the closing frame.
# The comment is the one field a job's owner writes: squeue cuts it (and pads it with spaces)
# at MAX_TAG characters, so a flood of jobs with huge comments stays small; a comment that
# long may have been cut and is never a tag.
SQUEUE_FIELDS = f"%i|%T|%r|%N|%u|%V|%S|%e|%{MAX_TAG}k"  # %S start (expected), %e end
JOB_ID_RE = re.compile(r"^(\d+)(?:;\S+)?\s*$")
NUMERIC_ID_RE = re.compile(r"^\d+$")
# What an #SBATCH value of hpcspawner's job script may hold (the template's `directive` filter)
DIRECTIVE_RE = re.compile(r"^[A-Za-z0-9_.,:@+%=/-]+$")


def directive(value: Any) -> str:
    """A value for an ``#SBATCH`` line: plain characters only, or a clear error."""
    text = str(value)
    if not DIRECTIVE_RE.match(text):
        raise RenderError(
            f"{text!r} cannot go in a scheduler directive; use letters, digits and _.,:@+%=/-"
        )
    return text


def squeue_format(frame: tuple[str, str]) -> str:
    return f"{frame[0]}|{SQUEUE_FIELDS}|{frame[1]}"


def new_frame() -> tuple[str, str]:
    return secrets.token_hex(8), secrets.token_hex(8)

_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING",
            "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
_GONE_WHY = {
    "CANCELLED": "the job was cancelled",
    "COMPLETED": "the job ended",
    "TIMEOUT": "the job reached its time limit",
    "NODE_FAIL": "the node running the job failed",
    "FAILED": "the job failed",
    "OUT_OF_MEMORY": "the job ran out of memory",
    "PREEMPTED": "the job was preempted by a higher-priority job",
    "BOOT_FAIL": "the node could not boot",
    "DEADLINE": "the job reached its deadline",
    "REVOKED": "the job was revoked",
}


def parse_squeue(text: str, tag_prefix: str, frame: tuple[str, str]) -> dict[str, JobInfo]:
    """Parse ``squeue -h -o squeue_format(frame)`` output, keeping jobs whose comment is ours.

    Only lines framed exactly by ``frame`` are records; job ids must be numeric; an id listed
    twice is not believed (UNKNOWN: never a reason to drop or cancel anything).
    """
    jobs: dict[str, JobInfo] = {}
    seen: set[str] = set()
    start, end = f"{frame[0]}|", f"|{frame[1]}"
    for line in text.split("\n"):
        if not (line.startswith(start) and line.endswith(end)):
            continue
        parts = line[len(start):-len(end)].split("|", 8)
        if len(parts) != 9:
            continue
        job_id, raw, reason, nodes, user, submitted, starts, ends, comment = parts
        comment = comment.rstrip(" ")
        if not NUMERIC_ID_RE.match(job_id):
            continue
        if job_id in seen:
            log.warning("squeue listed job %s twice; not believing either record", job_id)
            jobs[job_id] = JobInfo(job_id=job_id, state=JobState.UNKNOWN,
                                   reason="the scheduler's answer about this job was ambiguous")
            continue
        seen.add(job_id)
        if not comment.startswith(tag_prefix) or len(comment) >= MAX_TAG:
            continue
        state = slurm_state(raw)
        if state is JobState.GONE:
            why = _GONE_WHY.get(raw, f"the job ended ({raw})")
        elif state is JobState.PENDING:
            why = "" if reason in ("None", "(null)") else reason
        else:
            why = ""
        jobs[job_id] = JobInfo(
            job_id=job_id, state=state, host=nodes if state is JobState.RUNNING else "",
            reason=why, user=user, tag=comment, since=_epoch(submitted), raw_state=raw,
            meaning=PENDING_WORDS.get(why.split(",")[0].strip(), "") if why else "",
            starts=_epoch(starts), ends=_epoch(ends),
        )
    return jobs


def slurm_time(seconds: int) -> str:
    """SLURM ``--time`` value: ``D-HH:MM:SS`` (whole minutes are rounded up by SLURM itself)."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def slurm_gpus(count: int, model: str | None) -> str:
    """SLURM ``--gpus`` value: ``2``, or ``a100:2`` for a model (the node's gres type)."""
    return f"{model}:{count}" if model else str(count)


# What SLURM's terse pending reasons mean to a physicist (the spawn page shows both).
PENDING_WORDS = {
    "Resources": "waiting for free cores or memory",
    "Priority": "other jobs are ahead in the queue",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your QOS allows",
    "AssocMaxJobsLimit": "you already run as many jobs as your account allows",
    "ReqNodeNotAvail": "the nodes this job needs are not available",
    "PartitionNodeLimit": "the partition does not have enough nodes",
    "BeginTime": "the job may not start before its begin time",
}


def private_jobs(config: str) -> bool:
    """Whether ``scontrol show config`` output sets PrivateData to hide jobs."""
    for line in config.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "PrivateData":
            return any(word.strip().lower() in ("jobs", "all") for word in value.split(","))
    return False


def parse_sacct(text: str) -> dict[str, JobInfo]:
    """``sacct -n -P -X -o JobID,State,ExitCode`` -> why each job ended."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 3:
            continue
        job_id, raw, exit_code = parts[0], parts[1].split()[0] if parts[1] else "", parts[2]
        if slurm_state(raw) is not JobState.GONE:
            continue
        code = int(exit_code.split(":")[0]) if exit_code.split(":")[0].isdigit() else None
        why = _GONE_WHY.get(raw, f"the job ended ({raw})")
        if code:
            why += f" with exit code {code}"
        jobs[job_id] = JobInfo(job_id=job_id, state=JobState.GONE, reason=why, raw_state=raw,
                               exit_code=code)
    return jobs


def slurm_state(raw: str) -> JobState:
    if raw == "RUNNING":
        return JobState.RUNNING
    if raw == "COMPLETING":
        return JobState.COMPLETING
    if raw in _PENDING:
        return JobState.PENDING
    return JobState.GONE


def _epoch(stamp: str) -> float | None:
    try:
        return time.mktime(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").timetuple())
    except ValueError:
        return None


class SlurmBackend(Backend):
    name = "slurm"
    can_extend = True
    template_name = "slurm.sbatch.j2"
    submit_path = "/usr/bin/sbatch"
    queue_tool, accounting_tool = "squeue", "sacct"

    sbatch = Unicode("sbatch", help="sbatch command (absolute path if not on sudo's PATH).").tag(
        config=True)
    scancel = Unicode("scancel", help="scancel command.").tag(config=True)
    squeue = Unicode("squeue", help="squeue command.").tag(config=True)
    sinfo = Unicode("sinfo", help="sinfo command.").tag(config=True)
    sacct = Unicode("sacct", help="sacct command (used to tell why a job ended).").tag(
        config=True)
    use_sacct = Bool(
        True, help="Ask sacct why jobs ended when squeue no longer lists them."
    ).tag(config=True)
    scontrol = Unicode("scontrol", help="scontrol command (reads PrivateData).").tag(
        config=True)
    sacctmgr = Unicode(
        "sacctmgr", help="sacctmgr command (reads whether the hub's account is a SLURM "
        "operator, who sees every job despite PrivateData).").tag(config=True)
    hides_jobs = Bool(
        None, allow_none=True,
        help="""Whether squeue, as the hub runs it, hides other users' jobs (PrivateData=jobs
        and the hub account is neither root, SlurmUser nor an operator). Such jobs are never
        declared ended, but the hub cannot follow them either: grant the hub account a view
        of all jobs (docs/slurm.md). Default (None): read PrivateData from `scontrol show
        config` and the hub account's AdminLevel from `sacctmgr` when a followed job is
        missing from squeue.""",
    ).tag(config=True)

    login_environment = Bool(
        False,
        help="""Start jobs from the user's login environment (`sbatch --export=NONE`: slurmd
        runs `su - USER -c env` before every job, the user's shell start-up files included;
        in SLURM 22.05 that adds a second to about one start in six, and whatever the
        user's start-up files take to every start). Default: `--export=ALL`, sbatch run with
        a bare environment (`user_env_keep`: PATH, LANG, ...; sudo adds the user's HOME,
        USER, SHELL), so the job gets nothing of the hub's and starts at once. Either way the
        job script then sets HOME, USER, PATH and the server's variables itself (PATH becomes
        the server's Python's directory and the system's, so module paths of the login
        environment do not survive in PATH). A site template that writes its own `--export`
        line decides for itself.""",
    ).tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._private_checked = -1e9  # monotonic time PrivateData was last read
        self._private = False
        self._private_said = False

    @classmethod
    def filters(cls) -> dict[str, Callable[[Any], str]]:
        return {"directive": directive}

    def template_context(self, profile: Profile) -> dict[str, Any]:
        res = profile.resources
        return {"slurm_export": "NONE" if self.login_environment else "ALL",
                "slurm_request": slurm_request(profile), "slurm_time": slurm_time(res.runtime),
                "slurm_gpus": slurm_gpus(res.gpus, res.gpu_model)}

    def log_name(self, server: str, job_id: str = "") -> str:
        return f"{server}-{job_id or '%j'}.log"

    def where(self, profile: Profile, fast: bool = False) -> str:
        return self.availability_group(profile)[1] if profile.partition else ""

    config_env = ("SLURM_CONF",)
    # slurmctld not answering: "Unable to contact slurm controller", "Socket timed out on
    # send/recv operation", "Slurm temporarily unable to accept job, sleeping and retrying"
    UNREACHABLE = (*Backend.UNREACHABLE, "Unable to contact", "Socket timed out",
                   "temporarily unable")

    def place(self, profile: Profile) -> str:
        return f"partition {profile.partition}" if profile.partition else ""

    def dask_cluster(self, profile: Profile, tag: str) -> DaskCluster | None:
        res = profile.resources
        return DaskCluster("SLURMCluster", {
            "queue": profile.partition, "cores": res.cores, "processes": 1,
            "memory": f"{mebibytes(res.memory)}MiB", "walltime": slurm_time(res.runtime),
            "job_name": self.job_name,
            # NONE: the notebook's environment (its API token) stays out of SLURM's record
            "job_extra_directives": [f"--comment={tag}", "--export=NONE",
                                     *profile.extra_options],
        }, tool_dirs(self.sbatch, self.scancel))

    async def submit(self, request: SubmitRequest) -> str:
        result = await self.as_user(
            request.username, [self.sbatch, "--parsable"], input=request.script,
            hint="check the partition and limits in profiles.yaml, and that the hub may run "
            "sbatch as the user (docs/install.md)",
        )
        lines = result.stdout.strip().splitlines()
        match = JOB_ID_RE.match(lines[-1]) if lines else None
        if not match:
            raise BackendError(f"sbatch printed no job id: {result.stdout!r} {result.stderr!r}")
        return match.group(1)

    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        """One squeue for the jobs named ``job_name``; a second one, by id, only for followed
        jobs it did not list (submitted under another job_name before a config change)."""
        jobs = await self._squeue([f"--name={self.job_name}"], tag_prefix)
        missing = [j for j in job_ids if j not in jobs and NUMERIC_ID_RE.match(j)]
        if missing and await self._jobs_hidden():
            for job_id in missing:  # not ours to judge: squeue does not show it to us
                jobs[job_id] = JobInfo(job_id=job_id, state=JobState.UNKNOWN,
                                       reason="PrivateData=jobs hides the job from the hub")
        elif missing:
            jobs.update(await self._squeue([f"--jobs={','.join(sorted(missing))}"],
                                           tag_prefix))
        return jobs

    async def _jobs_hidden(self) -> bool:
        """PrivateData=jobs hides other users' jobs from an unprivileged hub (read from
        `scontrol show config` at most every 30 s); said once in the log, with the fix."""
        if self.hides_jobs is not None:
            return bool(self.hides_jobs)
        if time.monotonic() - self._private_checked >= 30:
            self._private_checked = time.monotonic()
            result = await self.as_hub([self.scontrol, "show", "config"], check=False)
            self._private = private_jobs(result.stdout) and not self.query_prefix and \
                os.geteuid() != 0 and not await self._hub_is_operator()
            if self._private and not self._private_said:
                log.error("SLURM has PrivateData=jobs: squeue, run as the hub's account, "
                          "does not show the users' jobs. Running servers are kept, but new "
                          "ones cannot start. Let the hub see all jobs: see 'PrivateData' "
                          "in docs/slurm.md")
            self._private_said = self._private
        return self._private

    @classmethod
    def availability_group(cls, profile: Profile) -> tuple[str | None, str]:
        """A partition list (``a,b``: the job starts in whichever can take it first) is that
        many groups, comma-separated (availability.outlook)."""
        if profile.partition:
            names = partitions(profile.partition)
            return ",".join(names), (f"partition {names[0]}" if len(names) == 1 else
                                     f"partitions {', '.join(names)}")
        return None, "the pool"

    @classmethod
    def checked_cancel(cls, job_id: str, tag: str, user: str, tool: Tool) -> str:
        if not SLURM_ID_RE.match(job_id):
            raise CancelRefused(f"{job_id!r} is not a SLURM job id")
        frame = new_frame()
        out = tool("squeue", ["-h", "-a", "--states=all", "-j", job_id, "-o",
                              squeue_format(frame)])
        if out.returncode != 0:
            if "Invalid job id" in out.stderr:
                return f"job {job_id} is gone already"
            raise CancelRefused(f"squeue failed: {out.stderr.strip()}")
        info = parse_squeue(out.stdout, "", frame).get(job_id)
        if info is None:
            return f"job {job_id} is gone already"
        if info.user != user or info.tag != tag:
            raise CancelRefused(f"job {job_id} is not {user}'s job tagged {tag}")
        if not info.state.alive or info.state is JobState.UNKNOWN:
            return f"job {job_id} is {info.raw_state or info.state.value}; nothing to cancel"
        done = tool("scancel", [job_id])
        if done.returncode != 0 and "already completing or completed" not in done.stderr:
            raise CancelRefused(f"scancel failed: {done.stderr.strip()}")
        return f"cancelled job {job_id}"

    async def _hub_is_operator(self) -> bool:
        """Whether slurmdbd makes the hub's account an operator or administrator (SLURM shows
        them every job whatever PrivateData says)."""
        me = pwd.getpwuid(os.geteuid()).pw_name
        result = await self.as_hub([self.sacctmgr, "-n", "-P", "show", "user", me,
                                    "format=AdminLevel"], check=False)
        return result.returncode == 0 and \
            result.stdout.strip().lower() in ("operator", "administrator")

    async def _squeue(self, select: list[str], tag_prefix: str) -> dict[str, JobInfo]:
        frame = new_frame()
        result = await self.as_hub([
            self.squeue, "-h", "-a", "--states=all", *select, "-o", squeue_format(frame),
        ], check=False)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:  # asked by id for jobs it forgot: none
                return {}
            raise CommandError(result.argv, result.returncode, result.stderr or result.stdout)
        # off the event loop: a long answer must not stall the hub's other requests
        return await asyncio.to_thread(parse_squeue, result.stdout, tag_prefix, frame)

    async def extend(self, job_id: str, runtime: int, profile: Profile) -> None:
        """``scontrol update TimeLimit=`` as the hub's account, which must be a SLURM operator
        (docs/slurm.md#more-time): only operators and admins may raise a limit, and they
        may raise it past the partition's MaxTime, so the hub holds to MaxTime itself (of the
        partition the job runs in, for a profile that lists several)."""
        if profile.partition:
            names = partitions(profile.partition)
            if len(names) > 1:
                running = await self._job_partition(job_id)
                names = [running] if running in names else names
            limits = [await self._max_time(name) for name in names]
            most = None if None in limits else max(x for x in limits if x is not None)
            if most is not None and runtime > most:
                where = (f"The partition {names[0]!r} lets" if len(names) == 1 else
                         f"The partitions {', '.join(map(repr, names))} let")
                raise ExtendRefused(
                    f"{where} a job run at most {format_duration(most)}; this server would run "
                    f"{format_duration(runtime)}.")
        result = await self.as_hub([self.scontrol, "update", f"JobId={job_id}",
                                    f"TimeLimit={slurm_time(runtime)}"], check=False)
        if result.returncode != 0:
            said = result.said().removeprefix("scontrol: error: ")
            raise ExtendRefused(f"SLURM refused more time for job {job_id}: {said}")

    async def _max_time(self, partition: str) -> int | None:
        """The partition's MaxTime in seconds (None: UNLIMITED or not said)."""
        result = await self.as_hub([self.scontrol, "show", "partition", partition, "-o"],
                                   check=False)
        match = re.search(r"\bMaxTime=(\S+)", result.stdout)
        return slurm_seconds(match.group(1)) if match and result.returncode == 0 else None

    async def _job_partition(self, job_id: str) -> str:
        """The partition a running job runs in ('' when squeue does not say): squeue prints
        that field alone, with nothing the job's owner writes."""
        if not NUMERIC_ID_RE.match(job_id):
            return ""
        result = await self.as_hub([self.squeue, "-h", "-j", job_id, "-o", "%P"], check=False)
        lines = result.stdout.split()
        return lines[0] if result.returncode == 0 and len(lines) == 1 else ""

    async def profile_warnings(self, profile: Profile) -> list[str]:
        """``extra_options`` entries that are not one sbatch option with its value, or that
        repeat or override the profile's resources or partition (no scheduler call)."""
        return extra_option_warnings(profile)

    def tools_dir(self) -> str:
        return posixpath.dirname(self.scancel) if posixpath.isabs(self.scancel) else ""

    async def explain_gone(self, job_ids: Collection[str]) -> dict[str, JobInfo]:
        """Why jobs that left squeue ended, from accounting (sacct) when the site has it."""
        if not self.use_sacct:
            return {}
        result = await self.as_hub([self.sacct, "-n", "-P", "-X", "-j", ",".join(job_ids),
                                    "-o", "JobID,State,ExitCode"], check=False)
        if result.returncode != 0:
            return {}
        return parse_sacct(result.stdout)

    async def availability(self) -> list[Availability]:
        """Per node: idle CPUs, memory not allocated, GPUs (from sinfo; node names and states
        are the admins', not users')."""
        result = await self.as_hub([self.sinfo, "-h", "-N", "-O", "NodeHost:|,Partition:|,"
                                    "CPUsState:|,Memory:|,AllocMem:|,StateCompact:|,Gres:|,GresUsed:|"])
        return parse_sinfo_nodes(result.stdout)

    async def expected_start(self, profile: Profile) -> float | None:
        """``sbatch --test-only`` (as the hub's account: nothing is queued) for the profile's
        request: SLURM's estimate of when it could start."""
        argv = [self.sbatch, "--test-only", *slurm_request(profile), *profile.extra_options,
                "--output=/dev/null", "--wrap=true"]
        result = await self.as_hub(argv, check=False)
        return parse_test_only(result.stderr + result.stdout)


def partitions(text: str) -> list[str]:
    """A profile's partition: one name or a comma-separated list (``--partition=a,b``)."""
    return [name for name in (part.strip() for part in text.split(",")) if name]


def slurm_request(profile: Profile) -> list[str]:
    """What a job of ``profile`` asks SLURM for, as sbatch options: the job template's
    ``#SBATCH`` lines and ``sbatch --test-only`` (the expected start) both use it, so the
    estimate is for the job that would be submitted (the profile's ``extra_options`` follow
    in both)."""
    res = profile.resources
    options = [f"--partition={profile.partition}"] if profile.partition else []
    options += ["--nodes=1", "--ntasks=1", f"--cpus-per-task={res.cores}",
                f"--mem={mebibytes(res.memory)}M", f"--time={slurm_time(res.runtime)}"]
    if res.gpus:
        options.append(f"--gpus={slurm_gpus(res.gpus, res.gpu_model)}")
    return options


def parse_test_only(text: str) -> float | None:
    """``sbatch: Job 1005 to start at 2026-12-01T00:22:59 using 4 processors ...`` -> epoch
    (SLURM prints the controller's local time)."""
    found = re.search(r"\bto start at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)", text)
    return _epoch(found.group(1)) if found else None


UNUSABLE_STATES = ("down", "drain", "drng", "fail", "maint", "resv", "unk", "futr", "inval",
                   "powered", "pow_dn", "boot")


def parse_sinfo_nodes(text: str) -> list[Availability]:
    """``sinfo -N -O NodeHost:|,Partition:|,CPUsState:|,Memory:|,AllocMem:|,StateCompact:|,
    Gres:|,GresUsed:|`` -> one Availability per node, with all its partitions."""
    nodes: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) < 8:
            continue
        name, partition, cpus, memory, alloc, state, gres, used = fields[:8]
        try:
            _used, idle, _other, total = (int(x) for x in cpus.split("/"))
            free_memory = (int(memory) - int(alloc)) * 1024 * 1024
        except ValueError:
            continue
        gpus = _gpus(gres) - _gpus(used)
        node = nodes.setdefault(name, {
            "name": name, "groups": [], "free_cores": idle, "total_cores": total,
            "free_memory": max(0, free_memory), "free_gpus": gpus,
            "usable": not state.rstrip("*~#!%$@^-").startswith(UNUSABLE_STATES)
            and not state.endswith("*"),
        })
        node["groups"].append(partition.rstrip("*"))
    return [Availability(**{**n, "groups": tuple(n["groups"])}) for n in nodes.values()]


def _gpus(gres: str) -> int:
    """GPUs in a Gres/GresUsed field: ``gpu:2``, ``gpu:a100:4(S:0-1)``, ``gpu:a100:1(IDX:0)``."""
    return sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[A-Za-z0-9_.-]+)?:(\d+)", gres))

# --- sbatch options as units ---------------------------------------------------------------
# sbatch options as units of one option and its value, and which units are a profile's
# resources.
#
# Sites write sbatch options as shell words (batchspawner's ``req_options = "-c 2 --mem=24G"``,
# the ``#SBATCH`` lines of their own ``batch_script``). A profile's ``extra_options`` holds one
# unit per entry, written ``--name=value``: each entry is one ``#SBATCH`` line of the job script.
# Options that say what a profile's ``resources`` and ``partition`` say (``-c``, ``--mem``,
# ``--gres=gpu``, ``--gpus``, ``--time``, ``-p``, ...) belong there, not in ``extra_options``:
# the form, the caps, the availability, extend and the server's ``CPU_LIMIT``/``MEM_LIMIT`` read
# the profile, while sbatch takes the last of two values. ``hpcspawner import`` reads a site's
# options with :func:`read_request`; ``hpcspawner check`` warns about ``extra_options`` that are
# not one unit, or that repeat or override a resource (:func:`extra_option_warnings`).

# sbatch's short options (SLURM 22.05 `sbatch --help`): those that take a value, by long name
SHORT = {"a": "array", "A": "account", "b": "begin", "c": "cpus-per-task", "C": "constraint",
         "d": "dependency", "D": "chdir", "e": "error", "F": "nodefile", "G": "gpus",
         "i": "input", "J": "job-name", "L": "licenses", "M": "clusters", "m": "distribution",
         "n": "ntasks", "N": "nodes", "o": "output", "p": "partition", "q": "qos",
         "S": "core-spec", "t": "time", "w": "nodelist", "x": "exclude"}
SHORT_FLAGS = {"H": "hold", "k": "no-kill", "O": "overcommit", "Q": "quiet",
               "s": "oversubscribe", "v": "verbose", "W": "wait", "h": "help", "V": "version"}
# long options without a value, or whose value can only follow '=' (getopt's optional ones)
NEEDS_VALUE = frozenset(SHORT.values()) | {"gres", "reservation"}
LONG_FLAGS = {"hold", "ignore-pbs", "no-kill", "no-requeue", "overcommit", "parsable", "quiet",
              "reboot", "requeue", "oversubscribe", "spread-job", "use-min-nodes", "verbose",
              "wait", "contiguous", "help", "usage", "version", "test-only", "exclusive",
              "export", "nice", "propagate", "get-user-env", "wrap"}

# hpcspawner's job template writes these itself; why a site's own is left out
OWN = {
    "job-name": "hpcspawner names every job c.SlurmBackend.job_name (its one squeue asks for "
                "that name)",
    "comment": "the job's comment is hpcspawner's tag, which ties the job to its server",
    "chdir": "jobs start in the user's home",
    "output": "hpcspawner writes the job's output to ~/.hpcspawner/logs/ (the spawn page "
              "names the file)",
    "error": "hpcspawner writes the job's output and errors to ~/.hpcspawner/logs/ (the spawn "
             "page names the file)",
    "export": "the job script sets the server's environment itself; for the user's login "
              "environment set c.SlurmBackend.login_environment = True (docs/slurm.md)",
    "get-user-env": "the job started from the user's login environment; hpcspawner starts it "
                    "from a clean one unless c.SlurmBackend.login_environment = True "
                    "(docs/slurm.md)",
    "requeue": "a server's job is never requeued (hpcspawner writes --no-requeue)",
    "no-requeue": "hpcspawner writes --no-requeue itself",
    "parsable": "an option of the sbatch command line, not of a job script",
    "test-only": "an option of the sbatch command line, not of a job script",
    "wrap": "an option of the sbatch command line, not of a job script",
}
# what batchspawner's default SlurmSpawner script writes besides the settings below (the
# others of its fixed lines are hpcspawner's own: output, job name, chdir, export)
BATCHSPAWNER_FIXED = "--get-user-env=L"
# batchspawner's default SlurmSpawner script: the #SBATCH option each setting becomes (a
# line is written when the setting is not empty), in the script's order; req_options last
BATCHSPAWNER_LINES = (("req_partition", "partition"), ("req_runtime", "time"),
                      ("req_memory", "mem"), ("req_gres", "gres"),
                      ("req_nprocs", "cpus-per-task"), ("req_reservation", "reservation"))
# batchspawner settings its default SLURM script never writes, and the option that would
BATCHSPAWNER_UNUSED = {"req_account": "account", "req_qos": "qos", "req_cluster": "clusters"}



@dataclass(frozen=True)
class Option:
    """One option and its value as sbatch reads them: ``-c 2``, ``-c2``, ``--mem 24G`` and
    ``--mem=24G`` are each one. ``name`` is sbatch's long name (``cpus-per-task``), or for a
    short option sbatch does not have, its dash and letter."""

    name: str
    value: str | None
    written: str  # as the site wrote it

    @property
    def text(self) -> str:
        """The unit as one #SBATCH value: ``--name=value``, ``--name`` or ``-X``."""
        if self.name.startswith("-"):
            return self.name
        return f"--{self.name}" + (f"={self.value}" if self.value is not None else "")

    @property
    def missing_value(self) -> bool:
        """An option that needs a value (one of sbatch's short ones, a resource) has none."""
        return self.value is None and (self.name in NEEDS_VALUE or self.name in RESOURCES)


Word = Option | str  # an option, or a word that is no option (a value without its option)


def split_words(words: Iterable[str]) -> list[Word]:
    """Shell words as sbatch's getopt reads them: each option with its value."""
    items = list(words)
    out: list[Word] = []
    i = 0
    while i < len(items):
        word = items[i]
        i += 1
        if word.startswith("--") and len(word) > 2:
            name, eq, value = word[2:].partition("=")
            if eq or name in LONG_FLAGS or i >= len(items) or items[i].startswith("-"):
                out.append(Option(name, value if eq else None, word))
            else:  # its value is the next word
                out.append(Option(name, items[i], f"{word} {items[i]}"))
                i += 1
        elif word.startswith("-") and len(word) > 1:
            for j, letter in enumerate(word[1:], start=2):
                if letter in SHORT:
                    given = word[j:] or (items[i] if i < len(items) else None)
                    if not word[j:] and given is not None:
                        i += 1
                    shown = word if word[j:] or given is None else f"{word} {given}"
                    out.append(Option(SHORT[letter], given, shown))
                    break
                out.append(Option(SHORT_FLAGS.get(letter, f"-{letter}"), None, f"-{letter}"))
        else:
            out.append(word)
    return out


def split_options(text: str) -> list[Word]:
    """An option string (``-c 2 --mem=24G``) as units; ValueError if it is not shell words."""
    return split_words(shlex.split(text))


def script_words(script: str) -> list[tuple[int, Word]]:
    """The units of a job script's ``#SBATCH`` lines, with their line numbers: sbatch reads
    them up to the first line that is neither blank nor a comment."""
    out: list[tuple[int, Word]] = []
    for number, line in enumerate(script.splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            break
        if re.match(r"#SBATCH(\s|$)", text):
            try:
                words = shlex.split(text[len("#SBATCH"):], comments=True)
            except ValueError:
                words = [text[len("#SBATCH"):].strip()]
            out += [(number, word) for word in split_words(words)]
    return out


def slurm_seconds(text: str) -> int | None:
    """A SLURM time (``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``, ``MM``) in seconds; None for
    UNLIMITED, INFINITE or what does not read."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        return None
    days, first, second, third = (int(g) if g else 0 for g in match.groups())
    if match.group(4) is not None:
        hours, minutes, secs = first, second, third
    elif match.group(1) is not None:  # D-HH or D-HH:MM
        hours, minutes, secs = first, second, 0
    elif match.group(3) is not None:  # MM:SS
        hours, minutes, secs = 0, first, second
    else:  # MM
        hours, minutes, secs = 0, first, 0
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def slurm_memory(text: str) -> int:
    """sbatch --mem in bytes: a number (MiB) or with K/M/G/T (binary; "4gb" as SLURM reads
    it). ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a SLURM memory size (e.g. 4G, 4096)")
    exponent = "kmgt".index(match.group(2).lower()) if match.group(2) else 1
    return int(float(match.group(1)) * 1024 ** (exponent + 1))


def gpu_request(value: str) -> tuple[tuple[str | None, int] | None, str]:
    """A --gres (or --gpus) value: (the GPUs it asks, as (model, count), or None; what else
    it asks, '' for nothing). ``gpu:a100:2,tmpfs:10G`` -> ((a100, 2), "tmpfs:10G")."""
    gpus: tuple[str | None, int] | None = None
    rest = []
    for item in value.split(","):
        kind, *more = item.split(":")
        if kind == "gpu" and "" in more:
            raise ValueError(f"'{item}' names no GPU count or type")
        if kind != "gpu" or gpus is not None or len(more) > 2 or \
                (len(more) == 2 and not more[1].isdigit()):
            rest.append(item)
        elif not more:
            gpus = (None, 1)
        elif len(more) == 1:
            gpus = (None, int(more[0])) if more[0].isdigit() else (more[0], 1)
        else:
            gpus = (more[0], int(more[1]))
    return gpus, ",".join(rest)


def gpus_value(value: str) -> tuple[str | None, int]:
    """--gpus=N or --gpus=MODEL:N."""
    model, _, count = value.rpartition(":")
    return (model or None), int(count)


@dataclass
class Request:
    """What option units ask SLURM for, as a profile says it (None: not asked), the units that
    stay ``extra_options`` and, by origin, a sentence for each unit that became a resource
    out of its usual place, overrode another or was left out."""

    partition: str | None = None
    cpus: int | None = None  # per task
    tasks: int | None = None
    memory: int | None = None
    memory_per_cpu: int | None = None
    memory_per_gpu: int | None = None
    runtime: int | None = None
    gpus: int | None = None
    gpu_model: str | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)  # (origin, unit)
    said: list[tuple[str, str]] = field(default_factory=list)  # (origin, sentence)
    set_by: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind: (origin, written)

    @property
    def cores(self) -> int | None:
        if self.cpus is None and self.tasks is None:
            return None
        return (self.cpus or 1) * (self.tasks or 1)

    @property
    def total_memory(self) -> int | None:
        if self.memory is not None:
            return self.memory
        if self.memory_per_cpu is not None:
            return self.memory_per_cpu * (self.cores or 1)
        if self.memory_per_gpu is not None:
            return self.memory_per_gpu * max(self.gpus or 0, 1)
        return None


def read_request(units: Iterable[tuple[str, Word, bool]]) -> Request:
    """Read ``(origin, unit, quiet)`` in sbatch's order (the last of two values wins):
    resources into the Request, the rest into ``extra``; a unit hpcspawner's script writes
    itself, or that cannot be read, is left out with the reason. ``quiet``: the unit is where
    its resource is normally said (batchspawner's ``req_nprocs`` as ``--cpus-per-task``, a
    line of a site's script), so only an override of it is said."""
    request = Request()
    for origin, unit, quiet in units:
        if isinstance(unit, str):
            request.said.append((origin, f"'{unit}' left out: it is no sbatch option (a value "
                                 "without its option?)"))
            continue
        try:
            _read(request, origin, unit, quiet)
        except ValueError as exc:
            request.said.append((origin, f"'{unit.written}' left out: {exc}"))
    return request


def _read(request: Request, origin: str, unit: Option, quiet: bool) -> None:
    name, value = unit.name, unit.value
    if unit.missing_value or (value == "" and name not in LONG_FLAGS):
        raise ValueError("it has no value")
    if name in OWN:
        request.said.append((origin, f"'{unit.written}' left out: {OWN[name]}"))
        return
    if name == "nodes":
        if value not in ("1", "1-1"):
            raise ValueError("a server's job runs on one node (hpcspawner writes --nodes=1)")
        return
    if name == "gres" and value is not None:
        gpus, rest = gpu_request(value)
        if gpus is not None:
            _resource(request, origin, unit, quiet, "gpus", gpus)
        if rest:
            _extra(request, origin, Option("gres", rest, unit.written))
        return
    setter = RESOURCE_OPTIONS.get(name)
    if setter is None or value is None:
        _extra(request, origin, unit)
        return
    kind, read = setter
    _resource(request, origin, unit, quiet, kind, read(value))


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"'{value}' is not a whole number above zero")
    return int(value)


def _memory(value: str) -> int:
    size = slurm_memory(value)
    if size <= 0:
        raise ValueError("--mem=0 asks for all of a node's memory; a profile names a size: "
                         "set resources.memory")
    return size


def _time(value: str) -> int:
    seconds = slurm_seconds(value)
    if not seconds:
        raise ValueError(f"'{value}' is not a time limit a profile can hold (e.g. 12:00:00, "
                         "1-00:00:00): set resources.runtime")
    return seconds


def _partition(value: str) -> str:
    if not DIRECTIVE_RE.match(value):
        raise ValueError(f"'{value}' is not a partition name")
    return value


def _gpus_option(value: str) -> tuple[str | None, int]:
    try:
        return gpus_value(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a GPU count (N or MODEL:N)") from None


RESOURCE_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "partition": ("partition", _partition), "cpus-per-task": ("cpus", _positive),
    "ntasks": ("tasks", _positive), "ntasks-per-node": ("tasks", _positive),
    "mem": ("memory", _memory), "mem-per-cpu": ("memory_per_cpu", _memory),
    "mem-per-gpu": ("memory_per_gpu", _memory), "time": ("runtime", _time),
    "gpus": ("gpus", _gpus_option), "gpus-per-node": ("gpus", _gpus_option),
    "gpus-per-task": ("gpus", _gpus_option),
}
# the options that are a profile's resources or partition (--gres: when it asks for GPUs)
RESOURCES = frozenset(RESOURCE_OPTIONS)
# the profile field each of the Request's own fields makes (for the sentences)
FIELD_OF = {"partition": "partition", "cpus": "resources.cores", "tasks": "resources.cores",
            "memory": "resources.memory", "memory_per_cpu": "resources.memory",
            "memory_per_gpu": "resources.memory", "runtime": "resources.runtime",
            "gpus": "resources.gpus"}


def _resource(request: Request, origin: str, unit: Option, quiet: bool, kind: str,
              value: Any) -> None:
    target = FIELD_OF[kind]
    group = "memory" if kind.startswith("memory") else kind  # (one of the three counts)
    before = request.set_by.get(group)
    if kind == "gpus":
        model, count = value
        request.gpus, request.gpu_model = count, model
    else:
        if kind.startswith("memory"):  # one of --mem, --mem-per-cpu, --mem-per-gpu counts
            request.memory = request.memory_per_cpu = request.memory_per_gpu = None
        setattr(request, kind, value)
    request.set_by[group] = (origin, unit.written)
    if before is not None and (before[0] != origin or not quiet):
        request.said.append((origin, f"'{unit.written}' overrides '{before[1]}' "
                             f"({before[0]}): sbatch takes the last; it is {target}"))
    elif not quiet:
        request.said.append((origin, f"'{unit.written}' is {target}"))


def _extra(request: Request, origin: str, unit: Option) -> None:
    if not DIRECTIVE_RE.match(unit.text):
        raise ValueError("it cannot be one #SBATCH value of hpcspawner's job script (letters, "
                         "digits and _.,:@+%=/- only); a job template override can carry it "
                         "(docs/profiles.md)")
    request.extra.append((origin, unit.text))


def batchspawner_units(settings: Mapping[str, str], script: str) -> list[tuple[str, Word, bool]]:
    """The units batchspawner's default SlurmSpawner script writes for these ``req_*``
    settings, in its order, each with the setting it came from (``script`` names the script
    for its fixed lines)."""
    units: list[tuple[str, Word, bool]] = [
        (script, word, False) for word in split_words([BATCHSPAWNER_FIXED])]
    for setting, name in BATCHSPAWNER_LINES:
        value = str(settings.get(setting, "") or "")
        if value:
            units.append((setting, Option(name, value, f"--{name}={value}"), True))
    options = str(settings.get("req_options", "") or "")
    try:
        units += [("req_options", word, False) for word in split_options(options)]
    except ValueError as exc:
        units.append(("req_options", f"{options} ({exc})", False))
    return units


def unused_setting(setting: str, value: str) -> str:
    """What to write for a batchspawner setting its default SLURM script never passed
    ('' when it is not one of those)."""
    if setting == "req_ngpus":
        return (f"batchspawner's default SLURM script never passed it (the jobs had no GPU); "
                f"to give the profile GPUs, set resources.gpus: {value}")
    if setting in BATCHSPAWNER_UNUSED:
        option = f"--{BATCHSPAWNER_UNUSED[setting]}={value}"
        return ("batchspawner's default SLURM script never passed it; to pass it, add "
                f"extra_options: [\"{option}\"]")
    return ""


def extra_option_warnings(profile: Profile) -> list[str]:
    """Each ``extra_options`` entry that is not one sbatch option with its value, cannot be
    an #SBATCH value, or repeats or overrides what the profile's resources or partition say
    or what hpcspawner's script writes itself. Each sentence starts with the entry's field."""
    out: list[str] = []
    entries = list(profile.extra_options)
    skip = -1
    for index, entry in enumerate(entries):
        if index == skip:
            continue
        where = f"extra_options[{index}] '{entry}'"
        try:
            words = split_options(entry)
        except ValueError as exc:
            out.append(f"{where}: not shell words ({exc})")
            continue
        options = [w for w in words if isinstance(w, Option)]
        if len(words) != 1 or not options:
            what = ("is no sbatch option" if not options else
                    f"holds {len(words)} options or words")
            out.append(f"{where} {what}: each entry is one option with its value, e.g. "
                       "--cpus-per-task=2 (hpcspawner writes one #SBATCH line per entry)")
            continue
        option = options[0]
        after = entries[index + 1] if index + 1 < len(entries) else ""
        if option.missing_value and after and not after.startswith("-"):
            option = Option(option.name, after, f"{entry} {after}")
            skip = index + 1
            out.append(f"{where} has no value: with extra_options[{index + 1}] '{after}' it is "
                       f"one option, {option.text}: write that as one entry")
        elif option.missing_value:
            out.append(f"{where} has no value: write the option and its value as one entry, "
                       f"e.g. --{option.name}=VALUE")
        elif not DIRECTIVE_RE.match(entry):
            out.append(f"{where} cannot be one #SBATCH value of the job script (letters, "
                       f"digits and _.,:@+%=/- only): write {option.text}"
                       if DIRECTIVE_RE.match(option.text) else
                       f"{where} cannot be one #SBATCH value of the job script (letters, "
                       "digits and _.,:@+%=/- only); a job template override can carry it")
        out += [f"{where} {text}" for text in _against_profile(option, profile)]
    return out


def _against_profile(option: Option, profile: Profile) -> list[str]:
    """What ``option`` repeats or overrides of the profile or of hpcspawner's own lines."""
    if option.name in OWN:
        return [f"overrides what hpcspawner's job script writes itself: {OWN[option.name]}; "
                "drop it"]
    if option.name == "nodes" and option.value not in ("1", "1-1"):
        return ["overrides --nodes=1: a server's job runs on one node; drop it"]
    try:
        request = read_request([("", option, True)])
    except ValueError:
        return []
    res = profile.resources
    found = []
    asked = {"partition": (request.partition, profile.partition),
             "resources.cores": (request.cores, res.cores),
             "resources.memory": (request.total_memory, res.memory),
             "resources.runtime": (request.runtime, res.runtime),
             "resources.gpus": ((request.gpus, request.gpu_model) if request.gpus is not None
                                else None, (res.gpus, res.gpu_model))}
    for target, (theirs, ours) in asked.items():
        if theirs is None:
            continue
        if theirs == ours:
            found.append(f"repeats {target}: drop it")
        else:
            readers = ("the spawn page's availability and extend read the profile's "
                       "partition" if target == "partition" else "the form, the caps and "
                       "the server's CPU_LIMIT and MEM_LIMIT read the profile's resources")
            found.append(f"overrides {target} ({_show(target, ours)}) with "
                         f"{_show(target, theirs)}: sbatch takes the last, but {readers}: set "
                         f"{target}: {_write(target, theirs)} and drop the option")
    return found


def _show(target: str, value: Any) -> str:
    if value is None:
        return "none"
    if target == "resources.memory":
        return format_size(int(value))
    if target == "resources.runtime":
        return format_duration(int(value))
    if target == "resources.gpus":
        count, model = value
        return f"{count}" + (f" {model}" if model else "")
    return str(value)


def _write(target: str, value: Any) -> str:
    """How profiles.yaml writes ``value`` for ``target``."""
    if target == "resources.runtime":
        seconds = int(value)
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"),
                                               (secs, "s")) if n) or "0s"
    if target == "resources.gpus":
        count, model = value
        return f"{count}" + (f" (and resources.gpu_model: {model})" if model else "")
    return _show(target, value)
