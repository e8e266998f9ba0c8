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

import asyncio
import logging
import os
import posixpath
import pwd
import re
from collections.abc import Callable, Collection
from typing import Any

from traitlets import Unicode

from ..commands import CommandError
from ..contract import tag_user
from ..profiles import Profile, fast_path_misfit
from ..units import mebibytes
from .base import (
    Availability,
    Backend,
    BackendError,
    CancelRefused,
    DaskCluster,
    ExtendBlocked,
    ExtendRefused,
    JobInfo,
    JobState,
    SubmitRequest,
    Tool,
    tool_dirs,
)
from .htcondor_ads import (
    Identity,
    ads_to_infos,
    classad_string,
    condor_args,
    condor_env,
    identities,
    job_id,
    location_args,
    parse_json_ads,
    parse_status_af,
    slot_hosts,
    split_job_id,
    submit_value,
)

CONDOR_ID_RE = re.compile(r"^\d{1,20}(@[A-Za-z0-9_.:-]*@[A-Za-z0-9_.:-]*)?$")

log = logging.getLogger("hpcspawner.htcondor")
Location = tuple[str | None, str | None]  # (schedd, pool); None = the local one

TERSE_RE = re.compile(r"^(\d+)\.\d+ - \d+\.\d+$")
# RemoteHost is not asked: the job's owner may condor_qedit it (route_hosts says where a job
# runs, from the slot ads of the startds).
QUERY_ATTRIBUTES = [
    "ClusterId", "ProcId", "Owner", "JobStatus", "HoldReason", "HoldReasonCode",
    "EnteredCurrentStatus", "LastRejMatchReason", "HPCSpawnerTag", "HPCSpawnerFastPath",
    "ShadowBday", "AllowedJobDuration", "GlobalJobId", "User",
]
# Attributes a job's owner writes are bounded in the schedd, before they reach the hub: a
# flood of jobs with huge tags or hold reasons costs the hub nothing (MAX_TAG: contract).
MAX_TEXT = 1024
QUERY_CONSTRAINT = (
    f"HPCSpawner =?= true && size(HPCSpawnerTag) <= {MAX_TEXT}"
    f" && (HoldReason =?= undefined || size(HoldReason) <= {MAX_TEXT})"
    f" && (LastRejMatchReason =?= undefined || size(LastRejMatchReason) <= {MAX_TEXT})"
)
SLOT_ATTRIBUTES = ["Name", "Machine", "JobId", "GlobalJobId", "RemoteUser", "RemoteOwner"]
HISTORY_ATTRIBUTES = ["ClusterId", "JobStatus", "RemoveReason", "ExitCode", "HoldReason",
                      "EnteredCurrentStatus"]


def fast_location(profile: Profile) -> Location:
    """Where a profile's fast-path jobs go: the fast path's schedd/pool, else the profile's."""
    opts, fast = profile.htcondor, profile.htcondor.fast_path
    if fast is None:
        return opts.schedd, opts.pool
    return fast.schedd or opts.schedd, fast.pool or opts.pool


class HTCondorBackend(Backend):
    name = "htcondor"
    template_name = "htcondor.sub.j2"
    submit_path = "/usr/bin/condor_submit"
    queue_tool, accounting_tool = "condor_q", "condor_history"

    condor_submit = Unicode("condor_submit", help="condor_submit command.").tag(config=True)
    condor_q = Unicode("condor_q", help="condor_q command.").tag(config=True)
    condor_rm = Unicode("condor_rm", help="condor_rm command.").tag(config=True)
    condor_history = Unicode("condor_history", help="condor_history command.").tag(config=True)
    condor_reschedule = Unicode("condor_reschedule", help="condor_reschedule command.").tag(
        config=True)
    condor_status = Unicode("condor_status", help="condor_status command.").tag(config=True)
    condor_qedit = Unicode("condor_qedit", help="condor_qedit command (more time for a "
                           "running server, as a queue super user).").tag(config=True)
    condor_config_val = Unicode("condor_config_val", help="condor_config_val command (reads "
                                "whether the hub's account is a queue super user).").tag(
        config=True)
    can_extend = True

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        # every (schedd, pool) a profile submits to; each is queried once per interval
        self.locations: set[Location] = set()
        # each listed job's GlobalJobId and User, from the last query: route_hosts matches a
        # slot by them (replaced each query, so bounded by the queue)
        self.identities: dict[str, Identity] = {}

    @classmethod
    def filters(cls) -> dict[str, Callable[[Any], str]]:
        return {"classad_string": classad_string, "submit_value": submit_value,
                "condor_args": condor_args, "condor_env": condor_env}

    def location(self, profile: Profile, fast: bool = False) -> Location:
        if fast and profile.htcondor.fast_path is not None:
            return fast_location(profile)
        return profile.htcondor.schedd, profile.htcondor.pool

    def register_profile(self, profile: Profile) -> None:
        if profile.backend != self.name:
            return
        self.locations.add(self.location(profile))
        if profile.htcondor.fast_path is not None:
            self.locations.add(self.location(profile, fast=True))

    def log_name(self, server: str, job_id: str = "") -> str:
        return f"{server}-{split_job_id(job_id)[0] if job_id else '$(ClusterId)'}.log"

    config_env = ("CONDOR_CONFIG",)
    # the schedd or collector not answering: "Can't find address for schedd vm", "Failed to
    # connect to <...>", and the stand-in's and our own "is not answering"
    UNREACHABLE = (*Backend.UNREACHABLE, "Can't find address", "Failed to connect",
                   "not answering")

    def place(self, profile: Profile) -> str:
        return "HTCondor"

    def fast_path(self, profile: Profile) -> bool:
        return profile.fast_path_enabled

    def where(self, profile: Profile, fast: bool = False) -> str:
        if fast:
            return "the reserved notebook slots (fast path)"
        schedd = self.location(profile)[0]
        return f"schedd {schedd}" if schedd else ""

    def dask_cluster(self, profile: Profile, tag: str) -> DaskCluster | None:
        res = profile.resources
        where = location_args(*self.location(profile))
        return DaskCluster("HTCondorCluster", {
            "cores": res.cores, "processes": 1, "memory": f"{mebibytes(res.memory)}MiB",
            "disk": "1GiB", "submit_command_extra": where, "cancel_command_extra": where,
            "job_extra_directives": {
                "+HPCSpawner": "True", "+HPCSpawnerTag": classad_string(tag),
                "+HPCSpawnerUser": classad_string(tag_user(tag)),
                "allowed_job_duration": str(res.runtime),
                "periodic_remove": "(JobStatus == 5) && (HoldReasonCode == 46)",
                **dict(line.split(" = ", 1) for line in profile.extra_options
                       if " = " in line),
            },
        }, tool_dirs(self.condor_submit, self.condor_rm))

    def job_key(self, job_id: str) -> str:
        """One schedd reached under two names lists a job twice: compare its cluster."""
        return split_job_id(job_id)[0]

    @classmethod
    def special_outlook(cls, profile: Profile,
                        slots: list[Availability]) -> tuple[bool, str] | None:
        """A fast-path profile: whether a reserved notebook slot (group "jupyter") is free."""
        if not profile.fast_path_enabled:
            return None
        res = profile.resources
        fast = [s for s in slots if "jupyter" in s.groups and s.usable]
        fits = [s for s in fast if s.free_cores >= res.cores and s.free_memory >= res.memory]
        if fits:
            return True, (f"Starts in seconds: {len(fits)} reserved notebook slot"
                          f"{'s' if len(fits) != 1 else ''} free.")
        return False, ("The reserved notebook slots are all taken: it will start in the "
                       "regular pool, which can take minutes.")

    @classmethod
    def checked_cancel(cls, job_id: str, tag: str, user: str, tool: Tool) -> str:
        if not CONDOR_ID_RE.match(job_id):
            raise CancelRefused(f"{job_id!r} is not an HTCondor job id")
        cluster, schedd, pool = split_job_id(job_id)
        where = location_args(schedd, pool)
        out = tool("condor_q", [*where, cluster, "-json", "-attributes",
                                "ClusterId,Owner,HPCSpawnerTag,JobStatus"])
        if out.returncode != 0:
            raise CancelRefused(f"condor_q failed: {out.stderr.strip()}")
        try:
            ads = [ad for ad in parse_json_ads(out.stdout)
                   if str(ad.get("ClusterId")) == cluster]
        except ValueError as exc:
            raise CancelRefused(f"condor_q printed no job ads: {exc}") from None
        if not ads:
            return f"job {job_id} is gone already"
        if any(ad.get("Owner") != user or ad.get("HPCSpawnerTag") != tag for ad in ads):
            raise CancelRefused(f"job {job_id} is not {user}'s job tagged {tag}")
        done = tool("condor_rm", [*where, cluster])
        if done.returncode != 0 and "Couldn't find/remove all jobs" not in done.stderr:
            raise CancelRefused(f"condor_rm failed: {done.stderr.strip()}")
        return f"removed job {job_id}"

    async def submit(self, request: SubmitRequest) -> str:
        schedd, pool = self.location(request.profile, request.fast)
        self.locations.add((schedd, pool))
        result = await self.as_user(
            request.username,
            [self.condor_submit, "-terse", *location_args(schedd, pool)],
            input=request.script,
            hint="check the profile's schedd/pool and that the hub may run condor_submit as "
            "the user (docs/htcondor.md)",
        )
        lines = result.stdout.strip().splitlines()
        match = TERSE_RE.match(lines[-1].strip()) if lines else None
        if not match:
            raise BackendError(f"condor_submit printed no job id: {result.stdout!r}")
        return job_id(match.group(1), schedd, pool)

    async def reschedule(self, job_id: str) -> None:
        """Ask for a negotiation cycle now (the fast path's dedicated negotiator answers)."""
        _, schedd, pool = split_job_id(job_id)
        await self.as_hub([self.condor_reschedule, *location_args(schedd, pool)])

    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        """One condor_q per location: every profile's, and every followed job's (a job keeps
        being asked for where it runs, whatever the profiles say now). A location that does
        not answer makes only its own followed jobs UNKNOWN; all failing is an outage."""
        followed: dict[Location, list[str]] = {}
        for value in job_ids:
            _, schedd, pool = split_job_id(value)
            followed.setdefault((schedd, pool), []).append(value)
        locations = sorted(self.locations | set(followed),
                           key=lambda loc: (loc[0] or "", loc[1] or ""))
        jobs: dict[str, JobInfo] = {}
        known: dict[str, Identity] = {}
        failures: list[CommandError] = []
        for schedd, pool in locations:
            try:
                ads = await self._ads(schedd, pool)
            except CommandError as exc:
                failures.append(exc)
                for value in followed.get((schedd, pool), []):
                    jobs[value] = JobInfo(job_id=value, state=JobState.UNKNOWN,
                                          reason=f"schedd {schedd or 'local'} is not answering")
                continue
            for info in await asyncio.to_thread(ads_to_infos, ads, schedd, pool):
                if info.tag.startswith(tag_prefix):
                    jobs[info.job_id] = info
            found = identities(ads, schedd, pool)
            known.update((value, found[value]) for value in jobs if value in found)
        self.identities = known
        if failures and len(failures) == len(locations):
            raise failures[0]
        for failure in failures:
            log.warning("%s", failure)
        return jobs

    async def _ads(self, schedd: str | None, pool: str | None) -> list[dict[str, object]]:
        result = await self.as_hub([
            self.condor_q, *location_args(schedd, pool), "-all",
            "-constraint", QUERY_CONSTRAINT, "-json",
            "-attributes", ",".join(QUERY_ATTRIBUTES),
        ])
        try:  # off the event loop: a long answer must not stall the hub's other requests
            return await asyncio.to_thread(parse_json_ads, result.stdout)
        except ValueError as exc:
            raise CommandError(result.argv, result.returncode,
                               f"unreadable output: {exc}") from None

    async def extend(self, job_id: str, runtime: int, profile: Profile) -> None:
        """``condor_qedit -forward`` of the job's AllowedJobDuration as the hub's account,
        which must be a queue super user of the job's schedd: the pool protects the
        attribute from the job's owner (PROTECTED_JOB_ATTRS, docs/htcondor.md#more-time),
        and only a forwarded edit reaches the shadow that enforces the limit."""
        cluster, schedd, pool = split_job_id(job_id)
        result = await self.as_hub([self.condor_qedit, *location_args(schedd, pool),
                                    "-forward", f"{cluster}.0", "AllowedJobDuration",
                                    str(runtime)], check=False)
        if result.returncode != 0:
            said = result.said()
            raise ExtendRefused(f"HTCondor refused more time for job {cluster}: {said} (the "
                                "hub's account must be a queue super user of the schedd).")

    async def extend_blocker(self) -> ExtendBlocked | None:
        """More time needs the hub's account among each schedd's QUEUE_SUPER_USERS
        (docs/htcondor.md#more-time), as condor_config_val reads it; a pool that does not
        answer is not judged (the card then offers the button and says any refusal)."""
        me = pwd.getpwuid(os.geteuid()).pw_name
        for schedd, pool in sorted(self.locations, key=lambda where: (str(where[0]),
                                                                      str(where[1]))):
            try:
                result = await self.as_hub([self.condor_config_val,
                                            *location_args(schedd, pool), "-schedd",
                                            "QUEUE_SUPER_USERS"], check=False)
            except CommandError:
                return None
            if result.returncode != 0:
                continue
            users = {u.split("@")[0] for u in re.split(r"[\s,]+", result.stdout) if u}
            if me not in users:
                return ExtendBlocked(
                    "More time cannot be given on this pool: the hub is not a queue super "
                    "user. Save your work before the end.",
                    f"the hub's account {me} is not in QUEUE_SUPER_USERS of the schedd "
                    f"{schedd or '(local)'} ({result.said()}), so it cannot raise a job's "
                    "AllowedJobDuration; see docs/htcondor.md#more-time.")
        return None

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
            try:
                ads = parse_json_ads(result.stdout)
            except ValueError:
                continue
            for info in ads_to_infos(ads, schedd, pool):
                out.setdefault(info.job_id, info)
        return out

    async def route_hosts(self, infos: Collection[JobInfo]) -> dict[str, str]:
        """Where running jobs are, from the slot ads their startds advertise (one
        condor_status per pool for the jobs that wait for their report), matched by the full
        identity the last query read (GlobalJobId: the schedd and the job; User: the owner
        with her domain). The job ad's RemoteHost is not believed: its owner may condor_qedit
        it (docs/security.md)."""
        by_pool: dict[str | None, list[JobInfo]] = {}
        for info in infos:
            by_pool.setdefault(split_job_id(info.job_id)[2], []).append(info)
        out: dict[str, str] = {}
        for pool, group in by_pool.items():
            ids = sorted({split_job_id(info.job_id)[0] for info in group})
            constraint = " || ".join(f'JobId == "{cluster}.0"' for cluster in ids)
            result = await self.as_hub([
                self.condor_status, *location_args(None, pool), "-constraint", constraint,
                "-json", "-attributes", ",".join(SLOT_ATTRIBUTES)])
            out.update(slot_hosts(parse_json_ads(result.stdout), group, self.identities))
        return out

    async def profile_warnings(self, profile: Profile) -> list[str]:
        self.register_profile(profile)  # (its schedd: whether the hub may extend there)
        return await self._fast_path_warnings(profile)

    async def _fast_path_warnings(self, profile: Profile) -> list[str]:
        """A fast-path profile without ``fast_path.slot``: compared with the reserved slots
        the pool advertises, when condor_status answers."""
        fast = profile.htcondor.fast_path
        if not profile.fast_path_enabled or fast is None or fast.slot is not None:
            return []
        pool = fast.pool or profile.htcondor.pool
        argv = [self.condor_status, *(["-pool", pool] if pool else []), "-constraint",
                f"{fast.slot_attribute} =?= True", "-af", "Cpus", "Memory"]
        try:
            out = (await self.as_hub(argv)).stdout
            slots = [(int(c), int(m) * 2**20)
                     for c, m in (line.split() for line in out.splitlines())]
        except (CommandError, OSError, ValueError):
            return []
        if not slots:
            return [f"the pool advertises no slot with {fast.slot_attribute} = True: the fast "
                    "path can never match (docs/htcondor.md)"]
        cores, memory = max(c for c, _ in slots), max(m for _, m in slots)
        problem = fast_path_misfit(profile, cores, memory)
        return [problem + f" (condor_status {' '.join(argv[1:])})"] if problem else []

    def tools_dir(self) -> str:
        rm = self.condor_rm
        return posixpath.dirname(rm) if posixpath.isabs(rm) else ""

    async def availability(self) -> list[Availability]:
        """Per slot: what an Unclaimed slot could give (a partitionable slot's remainder);
        reserved notebook slots (``IsJupyterSlot``) are the group "jupyter", the rest "pool".
        ``-af`` evaluates: ``-json`` prints a slot attribute that is an expression (the
        documented ``IsJupyterSlot = (SlotTypeID == 2)``) as ``"\\/Expr(...)\\/"``."""
        result = await self.as_hub([self.condor_status, "-af", "Name", "State", "Cpus",
                                    "TotalSlotCpus", "Memory", "Gpus", "IsJupyterSlot"])
        return parse_status_af(result.stdout)
