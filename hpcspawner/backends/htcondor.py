"""HTCondor through its CLIs: condor_submit/condor_rm as the user, one condor_q -json per
schedd per interval for all our jobs.

Why the CLI and not the htcondor2 bindings for queries: the hub then needs no condor_config
of its own (the bindings set CONDOR_CONFIG=/dev/null and cannot find a schedd without one),
submit and remove must run as the user through the CLI anyway, one process per interval is
negligible, and `condor_q -json` is a stable, documented format. The commands are traits, so
tests point them at the stand-in (tests/htcondor_standin) and sites at their own paths.

Job ids are ``CLUSTER`` for the local schedd, or ``CLUSTER@SCHEDD@POOL`` for a profile that
names a schedd or pool (the fast path), so a job found by its tag can always be removed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection

from traitlets import Unicode

from ..commands import CommandError
from ..profiles import Profile
from .base import Availability, Backend, BackendError, JobInfo, JobState, SubmitRequest

TERSE_RE = re.compile(r"^(\d+)\.\d+ - \d+\.\d+$")
QUERY_ATTRIBUTES = [
    "ClusterId", "ProcId", "Owner", "JobStatus", "RemoteHost", "HoldReason", "HoldReasonCode",
    "EnteredCurrentStatus", "LastRejMatchReason", "HPCSpawnerTag", "HPCSpawnerFastPath",
]
HISTORY_ATTRIBUTES = ["ClusterId", "JobStatus", "RemoveReason", "ExitCode", "HoldReason",
                      "EnteredCurrentStatus"]


def job_id(cluster: int | str, schedd: str | None = None, pool: str | None = None) -> str:
    if not schedd and not pool:
        return str(cluster)
    return f"{cluster}@{schedd or ''}@{pool or ''}"


def split_job_id(value: str) -> tuple[str, str | None, str | None]:
    cluster, _, rest = value.partition("@")
    schedd, _, pool = rest.partition("@")
    return cluster, schedd or None, pool or None


def location_args(schedd: str | None, pool: str | None) -> list[str]:
    args = []
    if schedd:
        args += ["-name", schedd]
    if pool:
        args += ["-pool", pool]
    return args


def parse_json_ads(text: str) -> list[dict[str, object]]:
    """`condor_q -json` / `condor_history -json`: a JSON list, or nothing at all when empty."""
    text = text.strip()
    if not text:
        return []
    ads = json.loads(text)
    if not isinstance(ads, list):
        raise ValueError("condor_q -json did not print a list")
    return [ad for ad in ads if isinstance(ad, dict)]


def ad_to_info(ad: dict[str, object], schedd: str | None = None,
               pool: str | None = None) -> JobInfo:
    status = int(str(ad.get("JobStatus", 0)))
    cluster = ad.get("ClusterId", "")
    host = str(ad.get("RemoteHost", "")).rpartition("@")[2]
    since = ad.get("EnteredCurrentStatus")
    reason = ""
    state = JobState.GONE
    if status == 1:
        state = JobState.PENDING
        reason = str(ad.get("LastRejMatchReason", ""))
    elif status == 2:
        state = JobState.RUNNING
    elif status == 5:
        state = JobState.HELD
        reason = str(ad.get("HoldReason", "held"))
    elif status == 6:
        state = JobState.COMPLETING
    elif status == 7:
        state, reason = JobState.PENDING, "suspended"
    elif status == 3:
        reason = str(ad.get("RemoveReason", "")) or "the job was removed"
        reason = f"the job was removed ({reason})" if "removed" not in reason else reason
    elif status == 4:
        code = ad.get("ExitCode")
        reason = "the job ended" + (f" with exit code {code}" if code not in (None, 0) else "")
    return JobInfo(
        job_id=job_id(str(cluster), schedd, pool), state=state,
        host=host if state is JobState.RUNNING else "", reason=reason,
        user=str(ad.get("Owner", "")), tag=str(ad.get("HPCSpawnerTag", "")),
        since=float(str(since)) if since is not None else None, raw_state=str(status),
    )


class HTCondorBackend(Backend):
    name = "htcondor"
    template_name = "htcondor.sub.j2"

    condor_submit = Unicode("condor_submit", help="condor_submit command.").tag(config=True)
    condor_q = Unicode("condor_q", help="condor_q command.").tag(config=True)
    condor_rm = Unicode("condor_rm", help="condor_rm command.").tag(config=True)
    condor_history = Unicode("condor_history", help="condor_history command.").tag(config=True)
    condor_reschedule = Unicode("condor_reschedule", help="condor_reschedule command.").tag(
        config=True)
    condor_status = Unicode("condor_status", help="condor_status command.").tag(config=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        # every (schedd, pool) a profile submits to; each is queried once per interval
        self.locations: set[tuple[str | None, str | None]] = set()

    def register_profile(self, profile: Profile) -> None:
        if profile.backend != self.name:
            return
        opts = profile.htcondor
        self.locations.add((opts.schedd, opts.pool))
        if opts.fast_path is not None:
            self.locations.add((opts.fast_path.schedd or opts.schedd,
                                opts.fast_path.pool or opts.pool))

    def log_name(self, server: str) -> str:
        return f"{server}-$(ClusterId).log"

    def job_key(self, job_id: str) -> str:
        """One schedd reached under two names lists a job twice: compare its cluster."""
        return split_job_id(job_id)[0]

    async def submit(self, request: SubmitRequest) -> str:
        self.locations.add((request.schedd, request.pool))
        result = await self.as_user(
            request.username,
            [self.condor_submit, "-terse", *location_args(request.schedd, request.pool)],
            input=request.script,
            hint="check the profile's schedd/pool and that the hub may run condor_submit as "
            "the user (docs/htcondor.md)",
        )
        lines = result.stdout.strip().splitlines()
        match = TERSE_RE.match(lines[-1].strip()) if lines else None
        if not match:
            raise BackendError(f"condor_submit printed no job id: {result.stdout!r}")
        return job_id(match.group(1), request.schedd, request.pool)

    async def reschedule(self, schedd: str | None, pool: str | None) -> None:
        """Ask for a negotiation cycle now (the fast path's dedicated negotiator answers)."""
        await self.as_hub([self.condor_reschedule, *location_args(schedd, pool)])

    async def query(self, tag_prefix: str) -> dict[str, JobInfo]:
        jobs: dict[str, JobInfo] = {}
        for schedd, pool in sorted(self.locations, key=lambda loc: (loc[0] or "", loc[1] or "")):
            result = await self.as_hub([
                self.condor_q, *location_args(schedd, pool), "-all",
                "-constraint", "HPCSpawner =?= true", "-json",
                "-attributes", ",".join(QUERY_ATTRIBUTES),
            ])
            try:
                ads = parse_json_ads(result.stdout)
            except ValueError as exc:
                raise CommandError(result.argv, result.returncode,
                                   f"unreadable output: {exc}") from None
            for ad in ads:
                info = ad_to_info(ad, schedd, pool)
                if info.tag.startswith(tag_prefix):
                    jobs[info.job_id] = info
        return jobs

    async def explain_gone(self, job_ids: Collection[str]) -> dict[str, JobInfo]:
        """Why jobs left the queue, from condor_history (RemoveReason, ExitCode)."""
        out: dict[str, JobInfo] = {}
        by_location: dict[tuple[str | None, str | None], list[str]] = {}
        for value in job_ids:
            cluster, schedd, pool = split_job_id(value)
            if cluster.isdigit():
                by_location.setdefault((schedd, pool), []).append(cluster)
        for (schedd, pool), clusters in by_location.items():
            constraint = " || ".join(f"ClusterId == {c}" for c in clusters)
            result = await self.as_hub([
                self.condor_history, *location_args(schedd, pool), "-constraint", constraint,
                "-json", "-attributes", ",".join(HISTORY_ATTRIBUTES),
                "-limit", str(len(clusters)),
            ], check=False)
            if result.returncode != 0:
                continue
            for ad in parse_json_ads(result.stdout):
                info = ad_to_info(ad, schedd, pool)
                out.setdefault(info.job_id, info)
        return out

    async def cancel(self, job_id: str, username: str, *, schedd: str | None = None,
                     pool: str | None = None) -> None:
        cluster, id_schedd, id_pool = split_job_id(job_id)
        try:
            await self.as_user(username, [
                self.condor_rm, *location_args(schedd or id_schedd, pool or id_pool), cluster,
            ], timeout=30)
        except CommandError as exc:
            if "Couldn't find/remove all jobs" in exc.stderr:
                return  # already gone (or never ours to remove): what stop() wanted
            raise

    async def availability(self) -> list[Availability]:
        result = await self.as_hub([self.condor_status, "-json", "-attributes",
                                    "Name,State,Cpus,Gpus,PartitionableSlot,IsJupyterSlot"])
        free = {"pool": 0, "jupyter": 0}
        total = {"pool": 0, "jupyter": 0}
        for ad in parse_json_ads(result.stdout):
            kind = "jupyter" if ad.get("IsJupyterSlot") is True else "pool"
            cpus = int(str(ad.get("Cpus", 0)))
            total[kind] += cpus
            if ad.get("State") == "Unclaimed":
                free[kind] += cpus
        return [Availability(name=k, free_cores=free[k], total_cores=total[k]) for k in free]
