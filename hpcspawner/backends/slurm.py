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
import time
from collections.abc import Callable, Collection
from typing import Any

from traitlets import Bool, Unicode

from ..commands import CommandError
from ..profiles import Profile
from ..units import format_duration, mebibytes
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
from .slurm_options import extra_option_warnings, slurm_seconds
from .slurm_words import (
    JOB_ID_RE,
    NUMERIC_ID_RE,
    SLURM_ID_RE,
    directive,
    new_frame,
    parse_sacct,
    parse_sinfo_nodes,
    parse_squeue,
    parse_test_only,
    private_jobs,
    slurm_gpus,
    slurm_time,
    squeue_format,
)

log = logging.getLogger("hpcspawner.slurm")


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
        return (await self._admin_level())[0] in ("operator", "administrator")

    async def _admin_level(self) -> tuple[str, str]:
        """The hub account's AdminLevel in slurmdbd, lower case ('' when sacctmgr cannot
        tell), and sacctmgr's complaint when it cannot."""
        me = pwd.getpwuid(os.geteuid()).pw_name
        try:
            result = await self.as_hub([self.sacctmgr, "-n", "-P", "show", "user", me,
                                        "format=AdminLevel"], check=False)
        except CommandError as exc:  # no sacctmgr at all
            return "", str(exc)
        if result.returncode != 0:
            return "", result.said()
        return result.stdout.strip().lower(), ""

    async def extend_blocker(self) -> ExtendBlocked | None:
        """Only SLURM operators and admins may raise a job's TimeLimit (root and SlurmUser
        too): the hub's account must be one (docs/sessions.md#slurm), which needs
        accounting (slurmdbd)."""
        if os.geteuid() == 0 or self.query_prefix:
            return None  # root, or commands run through the site's own prefix: try
        me = pwd.getpwuid(os.geteuid()).pw_name
        level, trouble = await self._admin_level()
        if level in ("operator", "administrator"):
            return None
        config = await self.as_hub([self.scontrol, "show", "config"], check=False)
        if re.search(rf"^SlurmUser\s*=\s*{re.escape(me)}\(", config.stdout, re.M):
            return None
        card = ("More time cannot be given on this cluster: the hub is not a SLURM "
                "operator. Save your work before the end.")
        fix = f"sacctmgr modify user {me} set adminlevel=operator"
        if trouble:
            return ExtendBlocked(card, (
                f"SLURM cannot say whether the hub's account {me} is an operator "
                f"(sacctmgr: {trouble}); without accounting (slurmdbd) it cannot be one, and "
                "only operators and admins may raise a job's time limit. Set up accounting, "
                f"then: {fix} (docs/sessions.md#slurm)."))
        return ExtendBlocked(card, (
            f"the hub's account {me} is not a SLURM operator (AdminLevel "
            f"{level or 'none'}), and only operators and admins may raise a job's time "
            f"limit: {fix} (docs/sessions.md#slurm), then restart the hub."))

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
