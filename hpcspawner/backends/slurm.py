"""SLURM through its CLIs: sbatch/scancel as the user, one squeue for all our jobs."""

from __future__ import annotations

import re
import time
from collections.abc import Collection
from datetime import datetime

from traitlets import Bool, Unicode

from ..commands import CommandError
from .base import Availability, Backend, BackendError, JobInfo, JobState, SubmitRequest

# squeue fields, '|' separated; the comment (our tag) comes last.
SQUEUE_FORMAT = "%i|%T|%r|%N|%u|%V|%k"
JOB_ID_RE = re.compile(r"^(\d+)(?:;\S+)?\s*$")

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


def parse_squeue(text: str, tag_prefix: str) -> dict[str, JobInfo]:
    """Parse ``squeue -h -o SQUEUE_FORMAT`` output, keeping jobs whose comment is ours."""
    jobs: dict[str, JobInfo] = {}
    for line in text.splitlines():
        parts = line.split("|", 6)
        if len(parts) != 7:
            continue
        job_id, raw, reason, nodes, user, submitted, comment = (p.strip() for p in parts)
        if not comment.startswith(tag_prefix):
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
        )
    return jobs


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
    template_name = "slurm.sbatch.j2"

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
    job_name = Unicode(
        "jupyterhub",
        help="""SLURM job name of every job this hub submits; squeue is asked for this name
        only, so the one query stays small on a busy cluster.""",
    ).tag(config=True)

    def log_name(self, server: str) -> str:
        return f"{server}-%j.log"

    async def submit(self, request: SubmitRequest) -> str:
        result = await self.as_user(
            request.username, [self.sbatch, "--parsable"], input=request.script,
            hint="check the partition and limits in profiles.yaml, and that the hub may run "
            "sbatch as the user (docs/install.md)",
        )
        match = JOB_ID_RE.match(result.stdout.strip().splitlines()[-1] if result.stdout else "")
        if not match:
            raise BackendError(f"sbatch printed no job id: {result.stdout!r} {result.stderr!r}")
        return match.group(1)

    async def query(self, tag_prefix: str) -> dict[str, JobInfo]:
        result = await self.as_hub([
            self.squeue, "-h", "-a", "--states=all", f"--name={self.job_name}",
            "-o", SQUEUE_FORMAT,
        ])
        return parse_squeue(result.stdout, tag_prefix)

    async def cancel(self, job_id: str, username: str, *, schedd: str | None = None,
                     pool: str | None = None) -> None:
        try:
            await self.as_user(username, [self.scancel, job_id], timeout=30)
        except CommandError as exc:
            if "Invalid job id" in exc.stderr or "already completing or completed" in exc.stderr:
                return  # already gone: what stop() wanted
            raise

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
        result = await self.as_hub([self.sinfo, "-h", "-o", "%P|%C"])
        out = []
        for line in result.stdout.splitlines():
            name, _, cpus = line.partition("|")
            try:
                _alloc, idle, _other, total = (int(x) for x in cpus.split("/"))
            except ValueError:
                continue
            out.append(Availability(name=name.rstrip("*"), free_cores=idle, total_cores=total))
        return out
