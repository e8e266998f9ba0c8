"""SLURM's words, read and written: the framed squeue query and its parser (a job comment
with a newline cannot forge a record), sacct, sinfo and ``sbatch --test-only`` read into the
hub's JobInfo and Availability, job states and pending reasons in words, and SLURM's spellings
of a time and of GPUs. The SLURM backend (slurm.py) runs the commands."""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import datetime
from typing import Any

from ..contract import MAX_TAG
from ..render import RenderError
from ..units import split_duration
from .base import (
    Availability,
    JobInfo,
    JobState,
)
from .slurm_options import DIRECTIVE_RE

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
    days, hours, minutes, secs = split_duration(seconds)
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
