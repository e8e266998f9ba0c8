"""The spawn state machine (job.py, report.py, the spawner's resume) against a scripted
scheduler: no scheduler, no hub, each case well under a second."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import socket
import time
from collections.abc import Awaitable, Collection
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from traitlets.config import Config

from hpcspawner import shared
from hpcspawner.backends.base import Backend, JobInfo, JobState, SubmitRequest
from hpcspawner.backends.htcondor import HTCondorBackend
from hpcspawner.backends.slurm import SlurmBackend
from hpcspawner.commands import KEEP_ENV, CommandError, Result
from hpcspawner.job import BatchJob, JobContext, JobFailed, Plan, Verdict
from hpcspawner.job_builder import JobBuilder
from hpcspawner.poller import Poller
from hpcspawner.profiles import Profile, parse_profiles
from hpcspawner.report import Busy, Forbidden, NotYet, Refused, Report, accept, receive

T = TypeVar("T")
ME = pwd.getpwuid(os.getuid()).pw_name
TOKEN = "0123456789abcdef" * 2
PROFILES = parse_profiles(f"""
profiles:
  - name: small
    partition: jupyter
    pending_timeout: 10m
    resources: {{cores: 1, memory: 1GiB, runtime: 1h}}
  - name: fast
    backend: htcondor
    resources: {{cores: 1, memory: 1GiB, runtime: 1h}}
    htcondor: {{fast_path: {{timeout: 30s}}}}
  - name: gone-later
    users: [{ME}]
    resources: {{cores: 1, memory: 1GiB, runtime: 1h}}
""")


class Scripted(Backend):
    """A scheduler whose jobs the test moves from state to state; commands are recorded."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.jobs: dict[str, JobInfo] = {}
        self.submitted: list[SubmitRequest] = []
        self.cancelled: list[str] = []
        self.rescheduled: list[str] = []
        self.commands: list[tuple[list[str], str | None]] = []
        self.hold_submit: asyncio.Event | None = None
        self.submit_error: CommandError | None = None

    def set(self, job_id: str, state: JobState, host: str = "", reason: str = "") -> None:
        old = self.jobs[job_id]
        self.jobs[job_id] = JobInfo(job_id=job_id, state=state, host=host, reason=reason,
                                    user=old.user, tag=old.tag)

    async def as_user(self, username: str, argv: list[str], *, input: str | None = None,
                      hint: str = "", timeout: float | None = None) -> Result:
        self.commands.append((argv, input))
        return Result(argv, 0, "", "")

    async def submit(self, request: SubmitRequest) -> str:
        if self.hold_submit is not None:
            await self.hold_submit.wait()
        if self.submit_error is not None:
            raise self.submit_error
        self.submitted.append(request)
        job_id = str(len(self.submitted))
        tag = next(line.split("=", 1)[1].strip().strip('"') for line in
                   request.script.splitlines() if "hpcspawner:" in line and "=" in line)
        self.jobs[job_id] = JobInfo(job_id=job_id, state=JobState.PENDING, user=ME, tag=tag,
                                    reason="Resources")
        return job_id

    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        return {k: v for k, v in self.jobs.items() if v.tag.startswith(tag_prefix)}

    async def route_hosts(self, infos: Collection[JobInfo]) -> dict[str, str]:
        """The scheduler's own word on where a job runs (the script's host)."""
        self.route_asks = getattr(self, "route_asks", 0) + 1
        return {info.job_id: self.jobs[info.job_id].host for info in infos}

    async def cancel(self, job_id: str, username: str, tag: str) -> None:
        self.cancelled.append(job_id)
        if job_id in self.jobs:
            self.set(job_id, JobState.GONE, reason="the job was cancelled")

    async def reschedule(self, job_id: str) -> None:
        self.rescheduled.append(job_id)

    def token_writes(self) -> list[str]:
        return ["/".join(argv[-2:]) for argv, stdin in self.commands
                if argv[1:2] == ["write-token"] and json.loads(stdin or "{}").get("token") == TOKEN]

    def removed(self) -> list[str]:
        return ["/".join(argv[-2:]) for argv, _ in self.commands
                if argv[1:2] == ["remove-token"]]


async def no_route_to_drop() -> None:
    raise AssertionError("a report of a running server dropped a route")


class ScriptedSlurm(Scripted, SlurmBackend):
    pass


class ScriptedCondor(Scripted, HTCondorBackend):
    pass


class World:
    """One scripted scheduler per backend, a poller, and what the job told its spawner."""

    def __init__(self, tmp: Path) -> None:
        self.backends: dict[str, Scripted] = {"slurm": ScriptedSlurm(),
                                              "htcondor": ScriptedCondor()}
        self.pollers = {name: Poller(b, "hpcspawner:hub:", fast=0.01, slow=0.05, jitter=0)
                        for name, b in self.backends.items()}
        self.jobs: list[BatchJob] = []
        self.saves = 0
        self.builder = JobBuilder(username=ME, server_name="", home=str(tmp),
                                  job_dir=str(tmp / ".hpcspawner"), hub_id="hub",
                                  python="/usr/bin/python3", cmd=["jupyterhub-singleuser"])

    def ctx(self, backend: str) -> JobContext:
        def save() -> None:
            self.saves += 1

        return JobContext(backend=self.backends[backend], poller=self.pollers[backend],
                          save=save,
                          on_gone=lambda info: None, log=logging.getLogger("test"),
                          name=f"{ME}/default", fast_poll_interval=0.01, progress_every=60)

    def job(self, backend: str, chosen: str | Profile) -> BatchJob:
        """A job of ``chosen`` (a profile of PROFILES, or one made in the test)."""
        plan = Plan(profile(chosen) if isinstance(chosen, str) else chosen, self.builder)
        self.jobs.append(BatchJob(self.ctx(backend), ME, plan))
        return self.jobs[-1]

    @property
    def said(self) -> list[str]:
        """What the jobs told the user (their progress messages), in order."""
        return [event["message"] for job in self.jobs for event in job.events]

    def close(self) -> None:
        for poller in self.pollers.values():
            poller.stop()


def run(scenario: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario, 5)

    return asyncio.run(bounded())


def profile(name: str) -> Profile:
    return PROFILES.by_name[name]


async def until(what: str, check: Any) -> None:
    deadline = time.monotonic() + 3
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def report_when_running(job: BatchJob, host: str = "node1", port: int = 5000) -> None:
    backend = job.ctx.backend
    assert isinstance(backend, Scripted)
    backend.set(job.job_id, JobState.RUNNING, host=host)
    await job.ctx.poller.refresh()
    await accept(job, "", TOKEN, Report(port=port, host=host, submission=job.submission))


def test_submit_queue_run_report_ready(tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        sched = world.backends["slurm"]
        assert job.job_id == "1" and world.saves == 1
        assert sched.token_writes() == [job.secret_file]
        assert TOKEN not in sched.submitted[0].script
        waiting = asyncio.ensure_future(job.wait())
        await until("a queue message", lambda: any("Waiting in queue" in m for m in world.said))
        sched.set("1", JobState.RUNNING, host="node1")
        await until("the running message",
                    lambda: "Running on node node1, starting Jupyter" in world.said)
        await accept(job, "", TOKEN, Report(port=5000, host="node1", submission=job.submission))
        assert await waiting == ("node1", 5000)
        assert job.to_state()["address"] == ["node1", 5000]
        world.close()

    run(scenario())
    assert world.said[0].startswith("Submitted job 1 to partition jupyter")


def test_a_job_that_ends_while_starting_says_where_its_output_is(tmp_path: Path) -> None:
    """The launcher writes why it gave up (no token file, a squatted port) to the job's
    log: the user is told which file, as they would type it."""
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        world.backends["slurm"].set("1", JobState.GONE, reason="the job failed")
        with pytest.raises(JobFailed) as failed:
            await job.wait()
        assert failed.value.message == (
            "Your job ended before the server started: the job failed. Its output is in "
            "~/.hpcspawner/logs/default-1.log. Job id for support: 1.")
        assert BatchJob.from_state(job.to_state(), world.ctx("slurm"), ME).log_file == \
            "~/.hpcspawner/logs/default-1.log"
        world.close()

    run(scenario())


@pytest.mark.parametrize(("backend", "profile", "stderr", "says"), [
    ("htcondor", "fast", "\nERROR: Can't access executable file /nonexistent/python3: No such "
     "file or directory", "refused the job for 'Fast — 1 core, 1 GiB, 1 h': the site's "
     "configuration"),
    ("slurm", "small", "sbatch: error: Batch job submission failed: Invalid partition name "
     "specified", "refused the job"),
    ("htcondor", "fast", "\nERROR: Can't find address of local schedd", "Try again in a minute"),
    ("slurm", "small", "sbatch: error: Batch job submission failed: Unable to contact slurm "
     "controller (connect failure)", "Try again in a minute"),
    # each scheduler's words of an outage are its own backend's (SchedulerCommands.UNREACHABLE)
    ("htcondor", "fast", "sbatch: error: Batch job submission failed: Unable to contact slurm "
     "controller (connect failure)", "refused the job"),
])
def test_a_refusal_is_a_configuration_problem_and_only_an_outage_says_try_again(
        tmp_path: Path, backend: str, profile: str, stderr: str, says: str) -> None:
    world = World(tmp_path)
    sched = world.backends[backend]
    sched.submit_error = CommandError(["submit"], 1, stderr)

    async def scenario() -> None:
        job = world.job(backend, profile)
        with pytest.raises(JobFailed) as failed:
            await job.submit(TOKEN)
        assert says in failed.value.message
        assert stderr.strip() in failed.value.log_message  # the admin reads the scheduler
        assert sched.removed() == sched.token_writes(), "the token file must go"
        world.close()

    run(scenario())


def test_pending_timeout_counts_from_the_submission_and_cancels(tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        job.submitted_at -= 601  # queued for 10 min + 1 s (pending_timeout: 10m)
        with pytest.raises(JobFailed, match="waited longer than 10 min"):
            await job.wait()
        assert world.backends["slurm"].cancelled == ["1"]
        world.close()

    run(scenario())


def test_hold_timeout_removes_a_held_job_and_says_why(tmp_path: Path) -> None:
    world = World(tmp_path)
    held = profile("fast").model_copy(update={"hold_timeout": 0})

    async def scenario() -> None:
        job = world.job("htcondor", held)
        await job.submit(TOKEN, fast=False)
        world.backends["htcondor"].set("1", JobState.HELD, reason="disk full")
        with pytest.raises(JobFailed, match="put on hold and removed: disk full"):
            await job.wait()
        assert world.backends["htcondor"].cancelled == ["1"]
        sched = world.backends["htcondor"]
        assert sched.removed() == sched.token_writes(), "the unread token file must go"
        world.close()

    run(scenario())


def test_fast_path_falls_back_to_the_regular_pool_with_a_fresh_token_file(
        tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("htcondor", "fast")
        await job.submit(TOKEN)
        sched = world.backends["htcondor"]
        first_secret = job.secret_file
        assert sched.submitted[0].fast and sched.rescheduled == ["1"]
        job.submitted_at -= 31  # fast_path.timeout: 30s
        waiting = asyncio.ensure_future(job.wait())
        await until("the fall-back submission", lambda: len(sched.submitted) == 2)
        assert not sched.submitted[1].fast and sched.cancelled == ["1"]
        assert job.job_id == "2" and not job.fast
        assert sched.removed() == [first_secret] and job.secret_file != first_secret
        await report_when_running(job)
        assert await waiting == ("node1", 5000)
        world.close()

    run(scenario())
    assert any("No reserved notebook slot was free within 30 s" in m for m in world.said)


def test_stop_during_submit_leaves_no_job_and_no_token_file(tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        sched = world.backends["slurm"]
        sched.hold_submit = asyncio.Event()
        job = world.job("slurm", "small")
        submitting = asyncio.ensure_future(job.submit(TOKEN))
        await until("the token hand-off", lambda: sched.token_writes())
        await job.stop()
        sched.hold_submit.set()  # the scheduler answers after the stop
        with pytest.raises(JobFailed, match="stopped while its job was being submitted"):
            await submitting
        assert sched.cancelled == ["1"]
        assert sched.removed() == sched.token_writes()
        world.close()

    run(scenario())


def test_stop_during_wait_cancels_the_job_and_ends_the_wait(tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        waiting = asyncio.ensure_future(job.wait())
        await until("a queue message", lambda: any("Waiting" in m for m in world.said))
        await job.stop()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        sched = world.backends["slurm"]
        assert sched.cancelled == ["1"] and sched.removed() == sched.token_writes()
        await job.stop()  # safe twice
        world.close()

    run(scenario())


def test_hub_restart_mid_queue_keeps_waiting_and_accepts_the_report_by_hash(
        tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        state = job.to_state()
        assert TOKEN not in str(state)
        again = BatchJob.from_state(state, world.ctx("slurm"), ME)  # the restarted hub
        assert again.resumed and again.job_id == "1"
        assert again.submitted_at == job.submitted_at
        waiting = asyncio.ensure_future(again.wait())
        await report_when_running(again)
        assert await waiting == ("node1", 5000)
        assert world.backends["slurm"].cancelled == []
        world.close()

    run(scenario())


def test_fast_path_falls_back_after_a_hub_restart_at_its_original_deadline(
        tmp_path: Path) -> None:
    """The spawner restored by a restarted hub keeps the fast path's fall-back: the job was
    submitted 31 s ago with a 30 s fast-path timeout, so the fall-back happens at once,
    reusing the token file the never-started job did not read."""
    world = World(tmp_path)
    sched = world.backends["htcondor"]
    shared.reset()
    shared.use_backend("htcondor", sched)
    profiles_file = tmp_path / "profiles.yaml"
    profiles_file.write_text(PROFILES_TEXT)

    async def scenario() -> None:
        job = world.job("htcondor", "fast")
        await job.submit(TOKEN)
        state = {**job.to_state(), "submitted_at": time.time() - 31}
        spawner = make_spawner(profiles_file)
        spawner.load_state(state)  # what JupyterHub does for a restarted hub
        polling = asyncio.ensure_future(spawner.poll())
        await until("the fall-back submission", lambda: len(sched.submitted) == 2)
        assert not sched.submitted[1].fast and sched.cancelled == ["1"]
        assert state["secret_file"] in sched.submitted[1].script  # the unread token file
        assert len(sched.token_writes()) == 1
        restored = spawner.job
        assert restored is not None and restored.job_id == "2"
        sched.set("2", JobState.RUNNING, host="node1")
        await restored.ctx.poller.refresh()
        await receive(spawner, TOKEN, Report(port=5001, submission=restored.submission),
                                     no_route_to_drop)
        assert await polling is None  # re-attached: alive
        assert await spawner.get_url() == "http://node1:5001"
        world.close()
        shared.reset()

    run(scenario())


def test_reports_are_checked_token_nonce_state_and_host(tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        sched, nonce = world.backends["slurm"], job.submission
        with pytest.raises(Forbidden):
            await accept(job, "", "not-the-token", Report(port=5000, submission=nonce))
        with pytest.raises(NotYet, match="not running yet"):
            await accept(job, "", TOKEN, Report(port=5000, submission=nonce))
        sched.set("1", JobState.RUNNING, host="node1")
        await job.ctx.poller.refresh()  # the next poll (a report's own query came just now)
        with pytest.raises(Refused, match="earlier job"):
            await accept(job, "", TOKEN, Report(port=5000, submission="0" * 16))
        for other in ("node2", "vm", "localhost", "node1x.cluster.example"):
            with pytest.raises(Refused, match=f"runs on node1, not on {other}"):
                await accept(job, "", TOKEN, Report(port=5000, host=other, submission=nonce))
        sched.set("1", JobState.RUNNING, host="")
        await job.ctx.poller.refresh()
        with pytest.raises(NotYet, match="does not yet say which node"):
            await accept(job, "", TOKEN, Report(port=5000, submission=nonce))
        sched.set("1", JobState.RUNNING, host="node[1-2]")
        await job.ctx.poller.refresh()
        with pytest.raises(Refused, match="names no single node"):
            await accept(job, "", TOKEN, Report(port=5000, submission=nonce))
        sched.set("1", JobState.GONE, reason="the job failed")
        await job.ctx.poller.refresh()
        with pytest.raises(Refused, match="has ended"):
            await accept(job, "", TOKEN, Report(port=5000, submission=nonce))
        assert job.address is None
        world.close()

    run(scenario())


def test_the_route_is_the_schedulers_node_whatever_host_the_job_names(
        tmp_path: Path) -> None:
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        world.backends["slurm"].set("1", JobState.RUNNING, host="node7")
        await job.ctx.poller.refresh()
        # the job names its host by another spelling (checked, by name only) ...
        assert await accept(job, "", TOKEN, Report(port=5000, host="NODE7.cluster.example",
                                                   submission=job.submission)) == ("node7", 5000)
        assert job.address == ("node7", 5000)
        # ... or, with the check off, a host that is not its node: never routed there
        job.address = None
        assert await accept(job, "", TOKEN, Report(port=5000, host="169.254.169.254",
                                                   submission=job.submission),
                            check_host=False) == ("node7", 5000)
        with pytest.raises(Refused, match="not waiting"):  # one report per submission
            await accept(job, "", TOKEN, Report(port=6000, submission=job.submission))
        world.close()

    run(scenario())


PROFILES_TEXT = f"""
profiles:
  - name: fast
    backend: htcondor
    resources: {{cores: 1, memory: 1GiB, runtime: 1h}}
    htcondor: {{fast_path: {{timeout: 30s}}}}
  - name: small
    users: [{ME}]
    resources: {{cores: 1, memory: 1GiB, runtime: 1h}}
"""


def make_spawner(profiles_file: Path) -> Any:
    from hpcspawner.spawner import HPCSpawner

    c = Config()
    c.HPCSpawner.profiles_path = str(profiles_file)
    c.HPCSpawner.hub_id = "hub"
    c.HPCSpawner.fast_poll_interval = 0.01
    c.HPCSpawner.poll_jitter = 0.0
    c.JupyterHub.db_url = f"sqlite:///{profiles_file.parent}/jupyterhub.sqlite"  # its records
    hub = SimpleNamespace(public_host="", url="http://127.0.0.1:8081/hub/",
                          api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/")
    user = SimpleNamespace(name=ME, url=f"/user/{ME}/", groups=[], escaped_name=ME)
    return HPCSpawner(user=user, hub=hub, config=c)


@pytest.mark.parametrize(("said", "believed"), [
    (lambda now, runtime: now + runtime - 2, True),  # the launcher's own, a moment earlier
    (lambda now, runtime: now + 10 * runtime, False),  # later than the job may run: not so
    (lambda now, runtime: now - 3600, False),  # already over, yet reporting: not so
    (lambda now, runtime: 0, False),  # an older launcher says nothing
])
def test_the_end_time_comes_from_the_report_only_within_the_jobs_runtime(
        tmp_path: Path, said: Any, believed: bool) -> None:
    world = World(tmp_path)
    runtime = profile("small").resources.runtime

    async def scenario() -> tuple[float, float]:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        world.backends["slurm"].set(job.job_id, JobState.RUNNING, host="node1")
        await job.ctx.poller.refresh()
        now = time.time()
        ends = int(said(now, runtime))
        await accept(job, "", TOKEN, Report(port=5000, host="node1",
                                            submission=job.submission, ends=ends))
        restored = BatchJob.from_state(job.to_state(), job.ctx, ME)
        world.close()
        assert restored.ends_at == job.ends_at  # a restarted hub still knows it
        return job.ends_at, float(ends) if believed else now + runtime

    got, expected = run(scenario())
    assert abs(got - expected) < 2


def test_the_spawn_page_asks_the_expected_start_of_every_waiting_profile_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A page with several profiles that cannot start waits for one `sbatch --test-only`
    round, not one per profile after another: each answer here waits until all were asked."""
    from hpcspawner.availability import TimedCache

    text = "profiles:\n" + "".join(
        f"  - name: p{i}\n    resources: {{cores: {i}, memory: 1GiB, runtime: 1h}}\n"
        for i in (1, 2, 3))
    (tmp_path / "profiles.yaml").write_text(text)
    spawner = make_spawner(tmp_path / "profiles.yaml")
    profiles = parse_profiles(text).profiles
    asked: list[str] = []
    everyone = asyncio.Event()

    async def no_slots() -> list[Any]:
        return []  # nothing is up: no profile can start now

    def start_of(profile: Profile, ttl: float) -> TimedCache[float | None]:
        async def ask() -> float:
            asked.append(profile.name)
            if len(asked) == len(profiles):
                everyone.set()
            await asyncio.wait_for(everyone.wait(), 5)
            return time.time() + 1800
        return TimedCache(ask, ttl)

    monkeypatch.setattr(shared, "availability", lambda name, ttl: TimedCache(no_slots, ttl))
    monkeypatch.setattr(shared, "expected_start", start_of)
    found = run(spawner._outlooks(profiles))
    assert sorted(asked) == ["p1", "p2", "p3"]
    assert all("expects it could start around" in found[p.name].text for p in profiles)


def test_sbatch_gets_a_bare_environment_so_nothing_of_the_hubs_reaches_the_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs start from sbatch's environment (`--export=ALL`): the hub hands sbatch (like every
    command it runs as a user) PATH, LANG and the scheduler's configuration only, never its
    own variables (a proxy token, a database URL)."""
    seen = tmp_path / "env"
    sbatch = tmp_path / "sbatch"
    sbatch.write_text(f"#!/bin/sh\nenv > {seen}\ncat > /dev/null\necho 4242\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("CONFIGPROXY_AUTH_TOKEN", "the-hubs-secret")
    backend = SlurmBackend(run_as_prefix=[], sbatch=str(sbatch))
    profile = parse_profiles(PROFILES_TEXT).by_name["small"]
    job_id = run(backend.submit(SubmitRequest(script="#!/bin/bash\n", username=ME,
                                              profile=profile, fast=False)))
    assert job_id == "4242"
    names = {line.split("=", 1)[0] for line in seen.read_text().splitlines()}
    assert "PATH" in names and "CONFIGPROXY_AUTH_TOKEN" not in names
    assert names <= {*KEEP_ENV, "SLURM_CONF", "PWD", "OLDPWD", "SHLVL", "_"}, names


def test_two_hundred_reports_at_once_check_one_at_a_time_and_query_at_most_once_more(
        tmp_path: Path) -> None:
    """alice posts 200 reports at once with her server's own token while its job waits:
    one is checked, the others get Busy (429) at once, and the scheduler is asked at most
    once more than the poller's own cycle would ask; wrong tokens never cost a query."""
    world = World(tmp_path)
    sched = world.backends["slurm"]
    counted = sched.query
    calls: list[float] = []

    async def query(tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        calls.append(time.monotonic())
        return await counted(tag_prefix, job_ids)

    sched.query = query  # type: ignore[method-assign]

    async def scenario() -> None:
        job = world.job("slurm", "small")
        poller = job.ctx.poller
        poller.fast = 1.0  # one extra query per second at most
        await job.submit(TOKEN)
        before, started = len(calls), time.monotonic()
        outcomes = await asyncio.gather(*(
            accept(job, "", TOKEN, Report(port=5000, submission=job.submission))
            for _ in range(200)), return_exceptions=True)
        kinds = sorted({type(o).__name__ for o in outcomes})
        assert kinds == ["Busy", "NotYet"], kinds
        assert sum(isinstance(o, NotYet) for o in outcomes) == 1
        again = await asyncio.gather(*(
            accept(job, "", TOKEN, Report(port=5000, submission=job.submission))
            for _ in range(50)), return_exceptions=True)
        assert all(isinstance(o, Busy | NotYet) for o in again)
        # the poller's own cycle (one per fast interval while the job starts) and at most one
        # more per interval for all the reports together
        allowed = 2 * (1 + int((time.monotonic() - started) / poller.fast))
        assert len(calls) - before <= allowed, f"{len(calls) - before} queries, 250 reports"
        forged = await asyncio.gather(*(
            accept(job, "", "x" * 32, Report(port=5000, submission=job.submission))
            for _ in range(200)), return_exceptions=True)
        assert all(isinstance(o, Forbidden) for o in forged)
        world.close()

    run(scenario())


def test_an_exited_server_s_report_drops_its_route_then_poll_says_it_ended(
        tmp_path: Path) -> None:
    profiles_file = tmp_path / "profiles.yaml"
    profiles_file.write_text(PROFILES_TEXT)
    dropped: list[str] = []
    world = World(tmp_path)
    shared.reset()
    shared.use_backend("slurm", world.backends["slurm"])

    async def drop() -> None:
        dropped.append("route")

    async def scenario() -> None:
        spawner = make_spawner(profiles_file)
        spawner.api_token = TOKEN
        spawner.user_options = {"profile": "small"}
        starting = asyncio.ensure_future(spawner.start())
        await until("the job", lambda: spawner.job is not None and spawner.job.job_id)
        job = spawner.job
        sched = job.ctx.backend
        sched.set(job.job_id, JobState.RUNNING, host="node1")
        await job.ctx.poller.refresh()
        await receive(spawner, TOKEN, Report(port=5000, submission=job.submission),
                                     no_route_to_drop)
        assert await starting == ("node1", 5000)
        # another server's port, a wrong token: nothing goes
        await receive(spawner, TOKEN, Report(port=5001, submission=job.submission,
                                                   ended=True), drop)
        with pytest.raises(Forbidden):
            await receive(spawner, "y" * 32, Report(port=5000, ended=True,
                                                          submission=job.submission), drop)
        assert dropped == [] and await spawner.poll() is None
        await receive(spawner, TOKEN, Report(port=5000, submission=job.submission,
                                                   ended=True), drop)
        assert dropped == ["route"]
        assert await spawner.poll() == 0
        assert "Your server exited" in spawner.last_end
        job.ctx.poller.stop()
        world.close()
        shared.reset()

    run(scenario())


def test_a_report_naming_a_host_whose_name_server_never_answers_is_checked_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice's job names node1.<a domain whose name server never answers>: the hub compares
    names and never looks one up, so neither her report nor anyone else's waits on it."""
    world = World(tmp_path)
    looked_up: list[str] = []

    def hang(host: str, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        time.sleep(30)
        raise OSError("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hang)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        world.backends["slurm"].set(job.job_id, JobState.RUNNING, host="node1")
        await job.ctx.poller.refresh()
        began = time.monotonic()
        routed = await accept(job, "", TOKEN, Report(
            port=5000, host="node1.never-answers.example", submission=job.submission))
        assert routed == ("node1", 5000)
        assert time.monotonic() - began < 1
        world.close()

    run(scenario())
    assert looked_up == []


def test_saved_state_carries_its_version_and_older_shapes_are_restored(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """to_state stamps STATE_VERSION; a version-1 state (an older hub's: no version, no plan,
    no resources, no times) is followed without its profile's limits, and the log says so; a
    plan that no longer reads is said with its reason, not dropped in silence."""
    from hpcspawner.job import STATE_VERSION

    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        state = job.to_state()
        assert state["state_version"] == STATE_VERSION == 2
        again = BatchJob.from_state(state, world.ctx("slurm"), ME)
        assert again.plan is not None and job.plan is not None
        assert again.plan.profile == job.plan.profile and again.resources == job.resources
        assert again.plan.builder.tag == job.plan.builder.tag

        old = {k: state[k] for k in ("job_id", "backend", "profile", "tag", "username",
                                     "secret_file", "submission", "token_sha256")}
        with caplog.at_level(logging.INFO, logger="test"):
            older = BatchJob.from_state(old, world.ctx("slurm"), ME)
        assert (older.job_id, older.tag, older.plan, older.resources) == (
            job.job_id, job.tag, None, None)
        assert older.resumed and older.submitted_at > 0 and older.runtime == 0
        assert any("state version 1, no plan" in r.getMessage() for r in caplog.records)

        broken = {**state, "plan": {"profile": {"name": "small"}, "builder": {}}}
        with caplog.at_level(logging.INFO, logger="test"):
            lost = BatchJob.from_state(broken, world.ctx("slurm"), ME)
        assert lost.plan is None and lost.job_id == job.job_id
        assert any("followed without its profile's limits: the saved plan no longer reads"
                   in r.getMessage() for r in caplog.records)
        world.close()

    run(scenario())


@pytest.mark.parametrize("backend", ["slurm", "htcondor"])
@pytest.mark.parametrize(("state", "host", "restarted", "stopped"), [
    (JobState.HELD, "", False, True),  # condor_hold, scontrol hold of a requeued job
    (JobState.PENDING, "", False, True),  # requeued (scontrol requeue, --requeue), evicted
    (JobState.COMPLETING, "node1", False, True),
    (JobState.RUNNING, "node2", False, True),  # running elsewhere
    (JobState.RUNNING, "node1", True, True),  # requeued and started again on the same node
    (JobState.RUNNING, "node1", False, False),  # where it is routed: alive
    (JobState.RUNNING, "", False, False),  # the node not named yet: no word
    (JobState.UNKNOWN, "", False, False),  # a silent scheduler: never a reason
])
def test_a_routed_job_that_no_longer_runs_where_it_is_routed_is_stopped_at_the_next_poll(
        tmp_path: Path, backend: str, state: JobState, host: str, restarted: bool,
        stopped: bool) -> None:
    """A route exists only while the scheduler lists the job running on the routed node since
    its launcher reported: held, pending (requeued, evicted), suspended, completing, running
    elsewhere or started again, the poll stops the server (JupyterHub takes the route down
    and stop() cancels the job), even while the launcher is silent."""
    world = World(tmp_path)

    async def scenario() -> None:
        job = world.job(backend, "small")
        await job.submit(TOKEN)
        await report_when_running(job, host="node1", port=5000)
        assert job.address == ("node1", 5000)
        assert await job.poll() == Verdict(None, running=True)
        sched = job.ctx.backend
        assert isinstance(sched, Scripted)
        old = sched.jobs[job.job_id]
        starts = time.time() + 30 if restarted else job.routed_at - 5
        sched.jobs[job.job_id] = JobInfo(job_id=job.job_id, state=state, host=host,
                                         reason="held by its owner" if state is JobState.HELD
                                         else "", user=old.user, tag=old.tag, starts=starts)
        await job.ctx.poller.refresh()
        verdict = await job.poll()
        if stopped:
            assert verdict.status == 1 and verdict.ended, verdict
            if state is JobState.COMPLETING:  # ending: why, once the scheduler says (exited)
                assert verdict.exited and "Your server exited" in verdict.why, verdict
            else:
                assert f"job {job.job_id} no longer ran where the hub reached it" in verdict.why
            assert (await job.poll()).status == 1  # and at every poll after
        else:
            assert verdict.status is None, verdict
        world.close()

    run(scenario())


def test_a_routed_job_held_is_told_to_the_spawner_after_the_next_query_not_the_next_poll(
        tmp_path: Path) -> None:
    """JupyterHub polls every 30 s; the shared poller queries every slow interval. A routed
    job that no longer runs where it is routed is told to the spawner (ctx.on_gone, which
    makes JupyterHub poll and stop it) once a query says so, with no poll of JupyterHub's."""
    world = World(tmp_path)
    told: list[JobInfo] = []

    async def scenario() -> None:
        ctx = world.ctx("slurm")
        job = BatchJob(JobContext(**{**vars(ctx), "on_gone": told.append}), ME,
                       Plan(profile("small"), world.builder))
        await job.submit(TOKEN)
        await report_when_running(job, host="node1", port=5000)
        job.running()
        await asyncio.sleep(0.2)  # queries that find it running where it is routed
        assert told == []
        sched = job.ctx.backend
        assert isinstance(sched, Scripted)
        sched.set(job.job_id, JobState.HELD, reason="held by its owner")
        await until("the spawner to be told", lambda: told)
        assert told[0].state is JobState.HELD
        job.forget()
        world.close()

    run(scenario())
