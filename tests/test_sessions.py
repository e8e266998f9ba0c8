"""Session cards and more time (sessions.py, BatchJob.extend, SlurmBackend.extend) against the
scripted scheduler: what a card says in each state, the extension inside the profile's
maximum and the scheduler's word on the job, and every refusal as the user reads it, with
nothing changed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hpcspawner import moretime
from hpcspawner.backends.base import ExtendRefused, JobInfo, JobState
from hpcspawner.backends.htcondor import HTCondorBackend
from hpcspawner.backends.htcondor_ads import ad_to_info
from hpcspawner.backends.slurm import SlurmBackend, slurm_seconds
from hpcspawner.cards import card
from hpcspawner.commands import Result
from hpcspawner.profiles import ExtendSettings, Profile, ProfileError, parse_profiles
from tests.test_job import ME, TOKEN, World, profile

HOUR = 3600
EXTENDABLE = profile("small").model_copy(update={
    "extend": ExtendSettings(step="1h", max_runtime="3h")})  # runtime 1 h


async def running(world: World, chosen: Profile = EXTENDABLE, user: str = ME) -> Any:
    """A job of ``chosen`` running on node1 since a minute ago, as the scheduler says."""
    job = world.job("slurm", chosen)
    await job.submit(TOKEN)
    sched = world.backends["slurm"]
    started = time.time() - 60
    sched.jobs[job.job_id] = JobInfo(
        job_id=job.job_id, state=JobState.RUNNING, host="node1", user=user, tag=job.tag,
        starts=started, ends=started + job.runtime)
    await job.ctx.poller.refresh()
    job.set_address("node1", 5000, started + job.runtime)
    asked: list[tuple[str, int]] = []

    async def extend(job_id: str, runtime: int, profile: Profile) -> None:
        asked.append((job_id, runtime))
        info = sched.jobs[job_id]  # the scheduler moves its end
        sched.jobs[job_id] = JobInfo(**{**info.__dict__, "ends": info.starts + runtime})

    sched.extend = extend  # type: ignore[method-assign]
    job.asked = asked
    return job


def test_more_time_is_given_inside_the_profiles_maximum_and_the_scheduler_has_the_last_word(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        world = World(tmp_path)
        job = await running(world)
        ends, limit = job.time_limit()
        assert limit == HOUR
        new_end = await moretime.extend(job, HOUR)
        assert job.asked == [(job.job_id, 2 * HOUR)]
        assert abs(new_end - ends - HOUR) < 1 and job.time_limit() == (new_end, 2 * HOUR)
        await job.ctx.poller.refresh()  # the scheduler's own end from now on
        assert job.time_limit()[1] == 2 * HOUR
        with pytest.raises(ExtendRefused) as refused:
            await moretime.extend(job, 2 * HOUR)  # 4 h > 3 h
        assert str(refused.value) == (
            "This server may run 3 h at most (its profile's extend.max_runtime) and has 2 h "
            "already; you may add at most 1 h.")
        await moretime.extend(job, HOUR)
        with pytest.raises(ExtendRefused, match="has 3 h already; save your work"):
            await moretime.extend(job, HOUR)
        assert [runtime for _, runtime in job.asked] == [2 * HOUR, 3 * HOUR]
        world.close()

    asyncio.run(scenario())


def test_an_admins_change_of_the_limit_counts(tmp_path: Path) -> None:
    """The limit in all is the scheduler's (an admin lowered it to 30 min): +1 h is 1.5 h."""
    async def scenario() -> None:
        world = World(tmp_path)
        job = await running(world)
        sched = world.backends["slurm"]
        info = sched.jobs[job.job_id]
        sched.jobs[job.job_id] = JobInfo(**{**info.__dict__, "ends": info.starts + 1800})
        await job.ctx.poller.refresh()
        assert job.time_limit() == (info.starts + 1800, 1800)
        await moretime.extend(job, HOUR)
        assert job.asked == [(job.job_id, 1800 + HOUR)]
        world.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(("change", "says"), [
    ("no-extend", "This server's profile does not allow more time"),
    ("not-running", "Only a running server can be given more time."),
    ("other-user", "does not list job 1 as this server's running job now"),
    ("other-tag", "does not list job 1 as this server's running job now"),
    ("gone", "does not list job 1 as this server's running job now"),
    ("negative", "Ask for more time as a positive duration"),
])
def test_refusals_say_why_and_change_nothing(tmp_path: Path, change: str, says: str) -> None:
    async def scenario() -> None:
        world = World(tmp_path)
        chosen = profile("small") if change == "no-extend" else EXTENDABLE
        job = await running(world, chosen, user="bob" if change == "other-user" else ME)
        sched = world.backends["slurm"]
        info = sched.jobs[job.job_id]
        if change == "not-running":
            job.address = None
        if change == "other-tag":  # the scheduler's record names another server's tag
            sched.jobs[job.job_id] = JobInfo(**{**info.__dict__, "tag": info.tag + "x"})
        if change == "gone":
            sched.set(job.job_id, JobState.GONE)
        await job.ctx.poller.refresh()
        before = (job.runtime, job.ends_at)
        with pytest.raises(ExtendRefused) as refused:
            await moretime.extend(job, -HOUR if change == "negative" else HOUR)
        assert says in str(refused.value)
        assert job.asked == [] and (job.runtime, job.ends_at) == before
        world.close()

    asyncio.run(scenario())


def spawner_of(job: Any, name: str = "", warning: int = 900) -> Any:
    return SimpleNamespace(job=job, name=name, walltime_warning=warning, extend_note="",
                           profile_title="Small", home_title="Small",
                           user=SimpleNamespace(url="/user/alice/"))


def test_cards_say_the_state_in_words_with_the_schedulers_reason_and_expected_start(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        world = World(tmp_path)
        job = world.job("slurm", EXTENDABLE)
        await job.submit(TOKEN)
        sched = world.backends["slurm"]
        soon = time.time() + 1800
        sched.jobs[job.job_id] = JobInfo(**{**sched.jobs[job.job_id].__dict__,
                                            "meaning": "waiting for free cores or memory",
                                            "starts": soon})
        await job.ctx.poller.refresh()
        queued = card(spawner_of(job))
        assert queued is not None and queued.state == "queued"
        assert queued.state_words.startswith(
            "Queued: Resources (waiting for free cores or memory). The scheduler expects it "
            "could start around")
        assert not queued.can_extend and queued.ends == 0
        assert queued.extend_note == "More time can be given once the server runs."
        world.close()

        world = World(tmp_path)
        job = await running(world)
        shown = card(spawner_of(job))
        assert shown is not None
        assert (shown.state, shown.node, shown.job_id, shown.limits) == (
            "running", "node1", job.job_id, "1 core, 1 GiB")
        assert shown.can_extend and shown.extend_step == "1 h" and not shown.warning
        assert shown.left_words.endswith(" left") and shown.used_words.startswith("used 0:01")
        near = card(spawner_of(job, warning=2 * HOUR))  # within the warning: said
        assert near is not None and "extend it from its card" in near.warning
        await moretime.extend(job, 2 * HOUR)
        full = card(spawner_of(job))
        assert full is not None and not full.can_extend
        assert full.extend_note == "This server has the most time its profile allows (3 h)."
        job._stopped = True
        assert card(spawner_of(job)).state == "ending"  # type: ignore[union-attr]
        world.close()

    asyncio.run(scenario())


def test_slurm_holds_to_the_partitions_max_time_and_says_what_scontrol_refused() -> None:
    calls: list[list[str]] = []

    async def scenario(max_time: str, update_err: str = "") -> None:
        backend = SlurmBackend()

        async def as_hub(argv: list[str], *, check: bool = True) -> Result:
            calls.append(argv)
            if argv[1:3] == ["show", "partition"]:
                return Result(argv, 0, f"PartitionName=jupyter MaxTime={max_time} State=UP", "")
            return Result(argv, 1 if update_err else 0, "", update_err)

        backend.as_hub = as_hub  # type: ignore[method-assign]
        await backend.extend("42", 5 * HOUR, EXTENDABLE)

    with pytest.raises(ExtendRefused) as refused:
        asyncio.run(scenario("04:00:00"))
    assert str(refused.value) == ("The partition 'jupyter' lets a job run at most 4 h; this "
                                  "server would run 5 h.")
    assert all(argv[1] != "update" for argv in calls)  # nothing asked of SLURM
    asyncio.run(scenario("UNLIMITED"))
    assert calls[-1] == ["scontrol", "update", "JobId=42", "TimeLimit=05:00:00"]
    with pytest.raises(ExtendRefused) as refused:
        asyncio.run(scenario("1-00:00:00", "scontrol: error: Access/permission denied for "
                                           "job 42\n"))
    assert str(refused.value) == ("SLURM refused more time for job 42: Access/permission "
                                  "denied for job 42")


@pytest.mark.parametrize(("text", "seconds"), [
    ("UNLIMITED", None), ("1-00:00:00", 86400), ("12:00:00", 43200), ("30", 1800),
    ("05:30", 330), ("2-06", 2 * 86400 + 6 * 3600), ("1-02:30", 86400 + 9000),
])
def test_slurm_times_read_as_seconds(text: str, seconds: int | None) -> None:
    assert slurm_seconds(text) == seconds


@pytest.mark.parametrize(("extend", "says"), [
    ("{step: 1h, max_runtime: 1h}", "extend.max_runtime must be longer than resources.runtime"),
    ("{step: 10s, max_runtime: 3h}", "extend.step must be at least 1 minute"),
    ("{step: 1h}", "max_runtime"),
])
def test_hpcspawner_check_refuses_an_extend_that_cannot_work(extend: str, says: str) -> None:
    text = ("profiles:\n  - name: small\n    resources: {cores: 1, memory: 1GiB, "
            f"runtime: 1h}}\n    extend: {extend}\n")
    with pytest.raises(ProfileError) as broken:
        parse_profiles(text)
    assert says in str(broken.value)


def test_htcondor_gives_more_time_by_a_forwarded_qedit_and_reads_the_limit_back() -> None:
    """HTCondor (docs/htcondor.md#more-time): the hub edits AllowedJobDuration with -forward
    (the running shadow's copy is what holds the job), at the job's own schedd; a refusal
    is one sentence; the scheduler's start and end come from ShadowBday and the limit."""
    [prof] = parse_profiles(
        "profiles:\n  - name: c\n    backend: htcondor\n    resources: {cores: 1, "
        "memory: 1GiB, runtime: 1h}\n    extend: {step: 1h, max_runtime: 3h}\n").profiles
    calls: list[list[str]] = []

    async def scenario(err: str = "") -> None:
        backend = HTCondorBackend()

        async def as_hub(argv: list[str], *, check: bool = True) -> Result:
            calls.append(argv)
            return Result(argv, 1 if err else 0, "", err)

        backend.as_hub = as_hub  # type: ignore[method-assign]
        await backend.extend("77@jupyter-schedd@cm.example.org", 2 * HOUR, prof)

    asyncio.run(scenario())
    assert calls[-1] == ["condor_qedit", "-name", "jupyter-schedd", "-pool", "cm.example.org",
                         "-forward", "77.0", "AllowedJobDuration", "7200"]
    with pytest.raises(ExtendRefused) as refused:
        asyncio.run(scenario('Failed to set attribute "AllowedJobDuration" for job 77.0.\n'
                             "Queue transaction failed.  No attributes were set.\n"))
    assert str(refused.value) == (
        'HTCondor refused more time for job 77: Failed to set attribute "AllowedJobDuration" '
        "for job 77.0. Queue transaction failed. No attributes were set. (the hub's account "
        "must be a queue super user of the schedd).")
    ad: dict[str, object] = {"ClusterId": 77, "JobStatus": 2, "Owner": "alice",
                             "ShadowBday": 1_800_000_000, "AllowedJobDuration": 7200}
    info = ad_to_info(ad)
    assert (info.starts, info.ends) == (1_800_000_000, 1_800_007_200)
    # a wrong type (a pool that does not protect it) is not known, and the ad is still read
    info = ad_to_info({**ad, "AllowedJobDuration": "forever"})
    assert (info.state, info.ends) == (JobState.RUNNING, None)



def test_one_bad_card_never_breaks_the_others(tmp_path: Path) -> None:
    """A job whose scheduler says it ends in the year 292 billion (an owner's condor_qedit
    on a pool that does not protect the attribute, or any backend's absurd value): its own
    card is left out, the page and the metrics still show every other server."""
    from hpcspawner.cards import cards, server_state

    async def scenario() -> None:
        world = World(tmp_path)
        good, bad = await running(world), await running(world)
        sched = world.backends["slurm"]
        info = sched.jobs[bad.job_id]
        sched.jobs[bad.job_id] = JobInfo(**{**info.__dict__, "ends": 9.2e18})
        await bad.ctx.poller.refresh()
        user = SimpleNamespace(all_spawners=lambda include_default: [
            spawner_of(bad, "bad"), spawner_of(good, "good")])
        assert [c.server for c in cards(user)] == ["good"]
        assert server_state(spawner_of(bad, "bad")) is None
        world.close()

    asyncio.run(scenario())


def test_more_time_keeps_to_the_users_runtime_cap(tmp_path: Path) -> None:
    """A user capped at 2 h (caps.runtime) on a profile that allows 3 h with more time gets
    to 2 h and no further; the others still get 3 h."""
    from hpcspawner.options import choose
    from hpcspawner.profile_schema import Caps

    capped = choose({}, [EXTENDABLE], EXTENDABLE, "/home/alice",
                    Caps(runtime="2h")).profile
    free = choose({}, [EXTENDABLE], EXTENDABLE, "/home/alice", Caps()).profile
    assert capped.extend is not None and capped.extend.max_runtime == 2 * HOUR
    assert free.extend is not None and free.extend.max_runtime == 3 * HOUR

    async def scenario() -> None:
        world = World(tmp_path)
        job = await running(world, capped)
        await moretime.extend(job, HOUR)
        with pytest.raises(ExtendRefused, match="may run 2 h at most"):
            await moretime.extend(job, HOUR)
        world.close()

    asyncio.run(scenario())
