"""The shared poller against a scripted backend: one query for all, doubt never kills."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection

import pytest

from hpcspawner.backends.base import Backend, JobInfo, JobState
from hpcspawner.commands import CommandError
from hpcspawner.poller import Poller

PREFIX = "hpcspawner:hub:"


class FakeBackend(Backend):
    name = "fake"

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, JobInfo] = {}
        self.queries = 0
        self.fail_queries = False
        self.cancelled: list[str] = []
        self.fail_cancels = 0

    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        self.queries += 1
        await asyncio.sleep(0.01)
        if self.fail_queries:
            raise CommandError(["squeue"], 1, "slurm_load_jobs error: Unable to contact slurm "
                                              "controller")
        return {k: v for k, v in self.jobs.items() if v.tag.startswith(tag_prefix)}

    def job_key(self, job_id: str) -> str:
        return job_id.split("@")[0]

    async def cancel(self, job_id: str, username: str, tag: str) -> None:
        if self.fail_cancels:
            self.fail_cancels -= 1
            raise CommandError(["scancel", job_id], 1, "Unable to contact slurm controller")
        self.cancelled.append(job_id)
        self.jobs.pop(job_id, None)


def running(job_id: str, user: str = "alice") -> JobInfo:
    return JobInfo(job_id=job_id, state=JobState.RUNNING, host="vm", user=user,
                   tag=f"{PREFIX}{user}:{job_id}")


def test_fifty_spawners_polling_at_once_cost_one_query() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX)
        for i in range(50):
            backend.jobs[str(i)] = running(str(i))
            poller.watch(str(i))
        await asyncio.gather(*(poller.refresh() for _ in range(50)))
        assert backend.queries == 1
        assert all(poller.latest(str(i)).state is JobState.RUNNING for i in range(50))

    asyncio.run(scenario())


def test_a_failed_query_makes_jobs_unknown_not_gone_and_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, logger=logging.getLogger("t"))
        backend.jobs["1"] = running("1")
        poller.watch("1")
        await poller.refresh()
        backend.fail_queries = True
        for _ in range(5):
            await poller.refresh()
            info = poller.latest("1")
            assert info is not None and info.state is JobState.UNKNOWN
            assert info.state.alive
        backend.fail_queries = False
        await poller.refresh()
        assert poller.latest("1").state is JobState.RUNNING

    with caplog.at_level(logging.INFO, logger="t"):
        asyncio.run(scenario())
    outage = [r for r in caplog.records if "is not answering" in r.getMessage()]
    back = [r for r in caplog.records if "answers again" in r.getMessage()]
    assert len(outage) == 1 and len(back) == 1


def test_a_job_missing_from_a_good_answer_is_gone_but_not_before_a_query_covered_it() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX)
        poller.watch("7")
        assert poller.latest("7") is None  # no query since it was watched
        await poller.refresh()
        info = poller.latest("7")
        assert info is not None and info.state is JobState.GONE

    asyncio.run(scenario())


def test_orphans_are_cancelled_after_grace_but_not_jobs_being_submitted() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, orphan_grace=0.05)
        backend.jobs["1"] = running("1")  # ours, owned
        backend.jobs["2"] = running("2")  # ours, owned by nobody
        backend.jobs["3"] = running("3", "bob")  # ours, submission in flight
        backend.jobs["4"] = JobInfo(job_id="4", state=JobState.RUNNING, tag="someone-else")
        poller.watch("1")
        done = poller.submitting(backend.jobs["3"].tag)
        await poller.refresh()
        await poller.sweep()
        assert backend.cancelled == []  # first sighting only
        await asyncio.sleep(0.06)
        await poller.refresh()
        await poller.sweep()
        assert backend.cancelled == ["2"]
        done()
        poller.watch("3")
        await asyncio.sleep(0.06)
        await poller.refresh()
        await poller.sweep()
        assert backend.cancelled == ["2"]
        assert "4" in backend.jobs

    asyncio.run(scenario())


def test_a_failed_cancel_is_retried() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX)
        backend.jobs["5"] = running("5")
        backend.fail_cancels = 1
        poller.retry_cancel("5", "alice", backend.jobs["5"].tag)
        await poller.refresh()
        await poller.retry_cancels()
        assert backend.cancelled == []
        await poller.retry_cancels()
        assert backend.cancelled == ["5"]
        await poller.retry_cancels()
        assert backend.cancelled == ["5"]

    asyncio.run(scenario())


def test_interval_is_fast_only_while_something_starts() -> None:
    async def scenario() -> None:
        poller = Poller(FakeBackend(), PREFIX, fast=1, slow=30, jitter=0.1)
        assert 27 <= poller.interval() <= 33
        poller.watch("1", starting=True)
        assert 0.9 <= poller.interval() <= 1.1
        poller.started("1")
        assert 27 <= poller.interval() <= 33
        intervals = {poller.interval() for _ in range(20)}
        assert len(intervals) > 1  # jitter

    asyncio.run(scenario())


def test_the_same_job_listed_under_two_names_is_not_an_orphan() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, orphan_grace=0)
        backend.jobs["31"] = running("31")
        backend.jobs["31@@cm"] = JobInfo(job_id="31@@cm", state=JobState.RUNNING, user="alice",
                                         tag=backend.jobs["31"].tag)
        poller.watch("31")
        for _ in range(2):
            await poller.refresh()
            await poller.sweep()
        assert backend.cancelled == []

    asyncio.run(scenario())
