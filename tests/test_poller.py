"""The shared poller against a scripted backend: one query for all, doubt never kills."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

import pytest

from hpcspawner.backends.base import Backend, CancelRefused, JobInfo, JobState
from hpcspawner.commands import CommandError
from hpcspawner.poller import Poller

PREFIX = "hpcspawner:hub:"


class FakeBackend(Backend):
    name = "fake"

    def log_name(self, server: str, job_id: str = "") -> str:
        return f"{server}-{job_id}.log"

    @classmethod
    def checked_cancel(cls, job_id: str, tag: str, user: str, tool: Any) -> str:
        raise CancelRefused("the fake scheduler is never asked by a helper")

    async def submit(self, request: Any) -> str:
        raise CommandError(["submit"], 1, "the fake scheduler takes no jobs")

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, JobInfo] = {}
        self.queries = 0
        self.fail_queries = False
        self.cancelled: list[str] = []
        self.fail_cancels = 0
        self.explained: dict[str, JobInfo] = {}
        self.cancelling = 0
        self.most_at_once = 0
        self.cancel_delay = 0.0


    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        self.queries += 1
        await asyncio.sleep(0.01)
        if self.fail_queries:
            raise CommandError(["squeue"], 1, "slurm_load_jobs error: Unable to contact slurm "
                                              "controller")
        return {k: v for k, v in self.jobs.items() if v.tag.startswith("hpcspawner:")}

    async def explain_gone(self, job_ids: Collection[str]) -> dict[str, JobInfo]:
        return {j: self.explained[j] for j in job_ids if j in self.explained}

    def job_key(self, job_id: str) -> str:
        return job_id.split("@")[0]

    async def cancel(self, job_id: str, username: str, tag: str) -> None:
        self.cancelling += 1
        self.most_at_once = max(self.most_at_once, self.cancelling)
        try:
            await asyncio.sleep(self.cancel_delay)
            if self.fail_cancels:
                self.fail_cancels -= 1
                raise CommandError(["scancel", job_id], 1, "Unable to contact slurm controller")
            self.cancelled.append(job_id)
            self.jobs.pop(job_id, None)
        finally:
            self.cancelling -= 1


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


def test_a_job_is_gone_only_after_n_good_queries_over_the_window_lack_it() -> None:
    """One answer without the job is doubt, not death (a purged record, a controller
    fail-over): the job stays UNKNOWN (alive) until confirmed, and its end is heard once."""
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, confirm_queries=3, confirm_seconds=0.2)
        heard: list[JobInfo] = []
        backend.jobs["7"] = running("7")
        poller.watch("7", on_gone=heard.append)
        assert poller.latest("7") is None  # no query since it was watched
        await poller.refresh()
        del backend.jobs["7"]
        for n in (1, 2, 3):
            await poller.refresh()
            info = poller.latest("7")
            assert info is not None and info.state is JobState.UNKNOWN and info.state.alive
            assert f"confirming ({n} of 3 queries)" in info.reason
        await asyncio.sleep(0.2)  # three queries were not enough: the window must pass too
        await poller.refresh()
        await poller.refresh()
        info = poller.latest("7")
        assert info is not None and info.state is JobState.GONE
        assert "stopped listing the job (4 queries over" in info.reason
        assert "last seen running on vm" in info.reason
        assert heard == [info]

    asyncio.run(scenario())


def test_the_scheduler_saying_the_job_ended_is_believed_at_once() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, confirm_queries=3, confirm_seconds=60)
        heard: list[JobInfo] = []
        backend.jobs["8"] = running("8")
        backend.jobs["9"] = running("9")
        poller.watch("8", on_gone=heard.append)
        poller.watch("9", on_gone=heard.append)
        await poller.refresh()
        backend.jobs["8"] = JobInfo(job_id="8", state=JobState.GONE, user="alice",
                                    tag=backend.jobs["8"].tag, reason="the job was cancelled")
        del backend.jobs["9"]
        backend.explained = {"9": JobInfo(job_id="9", state=JobState.GONE,
                                          reason="the job ended with exit code 1")}
        await poller.refresh()
        assert [(i.job_id, i.reason) for i in heard] == [
            ("8", "the job was cancelled"), ("9", "the job ended with exit code 1")]

    asyncio.run(scenario())


def test_a_good_answer_listing_none_of_several_live_jobs_is_an_outage() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, confirm_queries=2, confirm_seconds=0)
        heard: list[JobInfo] = []
        for i in ("1", "2", "3"):
            backend.jobs[i] = running(i)
            poller.watch(i, on_gone=heard.append)
        await poller.refresh()
        backend.jobs.clear()  # e.g. PrivateData=jobs switched on, or an emptied controller
        for _ in range(5):
            await poller.refresh()
        assert heard == []
        assert all(poller.latest(i).state is JobState.UNKNOWN for i in ("1", "2", "3"))
        assert "as an outage" in poller.latest("1").reason
        await poller.sweep()
        assert backend.cancelled == []

    asyncio.run(scenario())


def test_a_job_keeps_the_tag_it_was_submitted_with_when_the_hub_is_renamed() -> None:
    """hub_id changed (host renamed, fail-over): the followed job is still ours; an unfollowed
    job with the old tag is nobody's orphan here; a stranger's copy of the tag is ignored."""
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, "hpcspawner:newname:", orphan_grace=0, confirm_queries=1,
                        confirm_seconds=0)
        old = "hpcspawner:oldname:alice:"
        backend.jobs["1"] = JobInfo(job_id="1", state=JobState.RUNNING, user="alice", tag=old)
        backend.jobs["2"] = JobInfo(job_id="2", state=JobState.RUNNING, user="alice",
                                    tag="hpcspawner:oldname:alice:other")
        backend.jobs["3"] = JobInfo(job_id="3", state=JobState.RUNNING, user="bob", tag=old)
        heard: list[JobInfo] = []
        poller.watch("1", tag=old, on_gone=heard.append)
        poller.watch("3", tag=old, on_gone=heard.append)  # bob's record: disowned
        for _ in range(3):
            await poller.refresh()
            await poller.sweep()
        assert poller.latest("1").state is JobState.RUNNING
        assert poller.latest("3").state is not JobState.RUNNING
        assert backend.cancelled == []
        assert [i.job_id for i in heard] == ["3"]

    asyncio.run(scenario())


def test_orphans_are_cancelled_after_grace_but_not_jobs_being_submitted() -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, orphan_grace=0.05)
        backend.jobs["1"] = running("1")  # ours, owned
        backend.jobs["2"] = running("2")  # ours, owned by nobody
        backend.jobs["3"] = running("3", "bob")  # ours, submission in flight
        # another hub's job: the scheduler lists it (the fake's filter keeps every hpcspawner
        # tag), the poller must leave it alone
        backend.jobs["4"] = JobInfo(job_id="4", state=JobState.RUNNING, user="alice",
                                    tag="hpcspawner:otherhub:alice:")
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
        assert "4" not in poller.results  # not this hub's: not even remembered

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


def test_a_tagged_job_of_someone_the_hub_does_not_know_is_left_alone_and_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, orphan_grace=0, logger=logging.getLogger("t"),
                        is_hub_user=lambda name: name != "mallory")
        backend.jobs["1"] = running("1", "mallory")  # owner = tag user, but no hub user
        backend.jobs["2"] = running("2", "alice")
        for _ in range(4):
            await poller.refresh()
            await poller.sweep()
        assert backend.cancelled == ["2"]
        assert "1" in backend.jobs

    with caplog.at_level(logging.INFO, logger="t"):
        asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if "not a user of this hub" in r.getMessage()]
    assert said == ["job 1 carries this hub's tag but 'mallory' is not a user of this hub; "
                    "leaving it alone"]


def test_foreign_records_are_forgotten_once_the_scheduler_stops_listing_them(
        caplog: pytest.LogCaptureFixture) -> None:
    """A flood of strangers' tagged jobs (bob's, with alice's tag or his own) is logged once
    each, and remembered only while listed: the hub's memory does not grow with every flood;
    a name with a line break is logged on one line."""
    async def scenario() -> Poller:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, orphan_grace=0, logger=logging.getLogger("t"),
                        is_hub_user=lambda name: name == "alice")
        for i in range(100):
            backend.jobs[f"{i}"] = running(f"{i}", "mallory\n[W hub] forged")
            backend.jobs[f"d{i}"] = JobInfo(job_id=f"d{i}", state=JobState.PENDING,
                                            user="bob", tag=PREFIX + "alice:")
        for _ in range(2):
            await poller.refresh()
            await poller.sweep()
        assert len(poller._strangers) == 100 and len(poller._disowned) == 100
        backend.jobs.clear()
        await poller.refresh()
        assert poller._strangers == set() and poller._disowned == set()
        return poller

    with caplog.at_level(logging.INFO, logger="t"):
        asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records]
    assert sum("is not a user of this hub" in m for m in lines) == 100
    assert all("\n" not in m for m in lines)


def test_cancels_are_capped_in_attempts_and_run_a_few_at_a_time(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, max_cancel_attempts=3, cancel_concurrency=2,
                        logger=logging.getLogger("t"))
        for i in range(6):
            backend.jobs[str(i)] = running(str(i))
            poller.retry_cancel(str(i), "alice", backend.jobs[str(i)].tag)
        await poller.refresh()
        backend.cancel_delay = 0.02
        await poller.retry_cancels()
        assert backend.most_at_once == 2
        assert sorted(backend.cancelled) == [str(i) for i in range(6)]
        backend.jobs["9"] = running("9")
        backend.fail_cancels = 100
        poller.retry_cancel("9", "alice", backend.jobs["9"].tag)
        for _ in range(5):
            await poller.retry_cancels()
        assert backend.fail_cancels == 97  # three attempts, then given up

    with caplog.at_level(logging.INFO, logger="t"):
        asyncio.run(scenario())
    assert any("giving up cancelling job 9 of alice after 3 attempts" in r.getMessage()
               for r in caplog.records)


def test_where_a_job_runs_is_asked_only_for_starting_jobs_and_only_of_route_hosts() -> None:
    """The route's host comes from Backend.route_hosts (HTCondor: the slot ads), asked once a
    cycle for the running jobs that wait for their report, not from the query's record."""
    class Routed(FakeBackend):
        def __init__(self) -> None:
            super().__init__()
            self.asked: list[list[str]] = []

        async def route_hosts(self, infos: Collection[JobInfo]) -> dict[str, str]:
            self.asked.append(sorted(i.job_id for i in infos))
            return {i.job_id: f"slot-of-{i.job_id}" for i in infos}

    async def scenario() -> None:
        backend = Routed()
        poller = Poller(backend, PREFIX)
        for job_id in ("1", "2", "3"):
            backend.jobs[job_id] = running(job_id)  # the record says host "vm"
        backend.jobs["3"] = JobInfo(job_id="3", state=JobState.PENDING, user="alice",
                                    tag=f"{PREFIX}alice:3")
        poller.watch("1", starting=True)
        poller.watch("2")  # running and routed long ago
        poller.watch("3", starting=True)  # not running yet
        await poller.refresh()
        assert backend.asked == [["1"]]
        assert poller.latest("1").host == "slot-of-1"  # type: ignore[union-attr]
        poller.started("1")
        await poller.refresh()
        assert backend.asked == [["1"]]  # nothing waits for a route: not asked

    asyncio.run(scenario())


def test_the_log_says_which_source_confirmed_each_end(caplog: pytest.LogCaptureFixture) -> None:
    """The queue listing a job as ended, accounting explaining it, or enough queries that no
    longer list it: the hub's log names the one that decided, beside the reason."""
    async def scenario() -> None:
        backend = FakeBackend()
        backend.queue_tool, backend.accounting_tool = "squeue", "sacct"
        poller = Poller(backend, PREFIX, confirm_queries=2, confirm_seconds=0,
                        logger=logging.getLogger("t"))
        for i in ("7", "8", "9"):
            backend.jobs[i] = running(i)
            poller.watch(i, on_gone=lambda info: None)
        backend.jobs["5"] = running("5")  # alive throughout: the others' ends are no outage
        poller.watch("5", on_gone=lambda info: None)
        await poller.refresh()
        backend.jobs["7"] = JobInfo(job_id="7", state=JobState.GONE, user="alice",
                                    tag=backend.jobs["7"].tag, reason="the job was cancelled")
        del backend.jobs["8"], backend.jobs["9"]
        backend.explained = {"8": JobInfo(job_id="8", state=JobState.GONE,
                                          reason="the job ended with exit code 1")}
        await poller.refresh()
        await poller.refresh()

    with caplog.at_level(logging.INFO, logger="t"):
        asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if " ended: " in r.getMessage()]
    assert said[0] == "job 7 ended: the job was cancelled (confirmed by squeue, which lists " \
                      "it as ended)"
    assert said[1] == "job 8 ended: the job ended with exit code 1 (confirmed by sacct " \
                      "(accounting))"
    assert said[2].startswith("job 9 ended: the scheduler stopped listing the job")
    assert said[2].endswith("(confirmed by 2 answers of squeue over 0 s that no longer list it)")
    assert len(said) == 3


def test_a_job_is_covered_only_once_a_finished_query_has_said_something_of_it() -> None:
    """A hub that restarts asks each job's status while a query may already be under way:
    until a query that began after the watch has finished, "not listed" means "not asked"."""
    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, confirm_queries=3, confirm_seconds=60)
        backend.jobs["1"] = running("1")
        await poller.refresh()  # a query before the watch
        poller.watch("1")
        poller.watch("2")  # ended and purged while the hub was down
        assert not poller.covered("1") and not poller.covered("2")
        backend.explained = {"2": JobInfo(job_id="2", state=JobState.GONE,
                                          reason="the job was cancelled")}
        await poller.refresh()
        assert poller.covered("1") and poller.latest("1") is not None
        assert poller.covered("2")
        latest = poller.latest("2")
        assert latest is not None and latest.state is JobState.GONE

    asyncio.run(scenario())
