"""HPCSpawner's own paths in the pure tier, against the scripted scheduler of test_job.py:
start's mapping of what went wrong to what JupyterHub and the user see, poll's gone and idle
answers, stop while a restarted hub still waits for a starting job, clear_state."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from hpcspawner import shared
from hpcspawner.backends.base import JobState
from hpcspawner.commands import CommandError
from hpcspawner.compat import SpawnException
from hpcspawner.report import Report, receive
from tests.test_job import ME, TOKEN, World, make_spawner, no_route_to_drop, run, until

PROFILES = """
profiles:
  - name: small
    partition: jupyter
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
  - name: patient
    partition: jupyter
    pending_timeout: 10m
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
  - name: sleepy
    partition: jupyter
    idle_timeout: 10m
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "profiles.yaml").write_text(PROFILES)
    found = World(tmp_path)
    shared.reset()
    shared.use_backend("slurm", found.backends["slurm"])
    yield found
    found.close()
    shared.reset()


def spawner_for(tmp_path: Path, profile: str = "small") -> Any:
    spawner = make_spawner(tmp_path / "profiles.yaml")
    spawner.api_token = TOKEN
    spawner.user_options = {"profile": profile}
    return spawner


async def started(spawner: Any, world: World) -> str:
    """Start ``spawner`` to ready (its job runs on node1, the launcher reports port 5000)."""
    starting = asyncio.ensure_future(spawner.start())
    await until("the job", lambda: spawner.job is not None and spawner.job.job_id)
    job = spawner.job
    world.backends["slurm"].set(job.job_id, JobState.RUNNING, host="node1")
    await job.ctx.poller.refresh()
    await receive(spawner, TOKEN, Report(port=5000, host="node1",
                                               submission=job.submission), no_route_to_drop)
    assert await starting == ("node1", 5000)
    return str(job.job_id)


@pytest.mark.parametrize(("stderr", "status", "says"), [
    ("sbatch: error: Batch job submission failed: Invalid partition name specified", 500,
     "refused the job for 'Small"),
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller", 503,
     "did not accept the job for 'Small"),
])
def test_start_tells_a_refusal_from_an_outage(world: World, tmp_path: Path, stderr: str,
                                              status: int, says: str) -> None:
    world.backends["slurm"].submit_error = CommandError(["sbatch"], 1, stderr)
    spawner = spawner_for(tmp_path)
    with pytest.raises(SpawnException) as failed:
        run(spawner.start())
    assert failed.value.status_code == status and says in failed.value.message
    assert spawner.last_end == ""  # not the job's end: the next page shows no "last server"
    assert world.backends["slurm"].removed() == world.backends["slurm"].token_writes()


def test_a_job_that_ends_while_starting_fails_the_start_and_is_remembered(
        world: World, tmp_path: Path) -> None:
    spawner = spawner_for(tmp_path)

    async def scenario() -> None:
        starting = asyncio.ensure_future(spawner.start())
        await until("the job", lambda: spawner.job is not None and spawner.job.job_id)
        world.backends["slurm"].set(spawner.job.job_id, JobState.GONE, reason="the job failed")
        with pytest.raises(SpawnException) as failed:
            await starting
        assert failed.value.message.startswith(
            "Your job ended before the server started: the job failed")

    run(scenario())
    assert spawner.last_end.startswith("Your job ended before the server started")
    assert [e["progress"] for e in spawner.job.events][:1] == [10]  # "Submitted job 1 …"


def test_poll_says_alive_then_gone_with_the_schedulers_reason(
        world: World, tmp_path: Path) -> None:
    spawner = spawner_for(tmp_path)

    async def scenario() -> None:
        assert await spawner.poll() == 0  # nothing submitted: not running
        job_id = await started(spawner, world)
        assert await spawner.poll() is None
        world.backends["slurm"].set(job_id, JobState.GONE, reason="the job was cancelled")
        await spawner.job.ctx.poller.refresh()
        assert await spawner.poll() == 1

    run(scenario())
    assert spawner.last_end == "Your last server stopped: the job was cancelled (job 1)."
    state = spawner.get_state()
    spawner.clear_state()
    assert spawner.job is None and spawner.last_end  # the reason survives for the next page
    assert state["job_id"] == "1" and "job_id" not in spawner.get_state()


def test_poll_stops_a_server_idle_past_its_profiles_limit_by_its_own_activity(
        world: World, tmp_path: Path) -> None:
    spawner = spawner_for(tmp_path, "sleepy")

    async def scenario() -> None:
        await started(spawner, world)
        t0 = time.time()
        with mock.patch("time.time", return_value=t0 + 9 * 60):
            assert await spawner.poll() is None  # nine minutes idle: under ten
            spawner.note_activity(t0 + 5 * 60)  # the server's own activity moves it
        with mock.patch("time.time", return_value=t0 + 14 * 60):
            assert await spawner.poll() is None  # nine minutes since that activity
        with mock.patch("time.time", return_value=t0 + 16 * 60):
            assert await spawner.poll() == 1

    run(scenario())
    assert spawner.last_end.startswith("Your last server was stopped after 11 min")
    assert "stops idle servers after 10 min" in spawner.last_end


def test_stop_while_a_restarted_hub_waits_for_a_starting_job_cancels_it(
        world: World, tmp_path: Path) -> None:
    """A hub restarted while the job queued: JupyterHub's first poll waits for the job; a
    stop meanwhile cancels the job and that wait, and the poll answers "stopped"."""
    sched = world.backends["slurm"]

    async def scenario() -> None:
        first = spawner_for(tmp_path)
        starting = asyncio.ensure_future(first.start())
        await until("the job", lambda: first.job is not None and first.job.job_id)
        state = first.get_state()
        starting.cancel()  # the hub went away while the job queued
        spawner = spawner_for(tmp_path)
        spawner.load_state(state)  # what the restarted hub does
        polling = asyncio.ensure_future(spawner.poll())
        await until("the resumed wait", lambda: spawner.job.starting)
        await spawner.stop()
        assert await asyncio.wait_for(polling, 5) == 1
        assert sched.cancelled == [state["job_id"]]

    run(scenario())
    assert ME in sched.jobs["1"].tag


def test_an_apps_landing_page_replaces_the_sites_default_url_only_in_its_job(
        world: World, tmp_path: Path) -> None:
    from hpcspawner.apps import Launch

    spawner = spawner_for(tmp_path)
    spawner.default_url = "/lab"
    desktop = spawner._builder(Launch(app="desktop", url="/desktop/", title="Remote desktop"))
    notebook = spawner._builder(Launch())
    assert {**desktop.env, **desktop.private_env}["JUPYTERHUB_DEFAULT_URL"] == "/desktop/"
    assert {**notebook.env, **notebook.private_env}["JUPYTERHUB_DEFAULT_URL"] == "/lab"
    assert spawner.default_url == "/lab"  # the site's setting stays as configured


def test_a_restarted_hub_resumes_by_the_plan_the_job_was_submitted_with(
        world: World, tmp_path: Path) -> None:
    """The user's options are resolved once per spawn into a plan that is saved with the job
    (without the private environment): a profile removed from profiles.yaml since still
    gives the resumed wait its limits, and nothing secret is in the hub's database."""
    sched = world.backends["slurm"]
    first = spawner_for(tmp_path, "patient")
    first.environment = {"SITE_PASSWORD": "not-in-the-state"}
    resolved: list[object] = []
    resolve = first.resolve
    first.resolve = lambda options: resolved.append(options) or resolve(options)

    async def scenario() -> None:
        starting = asyncio.ensure_future(first.start())
        await until("the job", lambda: first.job is not None and first.job.job_id)
        state = first.get_state()
        starting.cancel()  # the hub went away while the job queued
        assert len(resolved) == 1
        assert "not-in-the-state" not in json.dumps(state)
        (tmp_path / "profiles.yaml").write_text(PROFILES.split("  - name: patient")[0])
        spawner = spawner_for(tmp_path, "patient")
        spawner.load_state({**state, "submitted_at": time.time() - 601})  # 10 min + 1 s ago
        assert await spawner.poll() == 1
        assert "waited longer than 10 min" in spawner.last_end
        assert sched.cancelled == [state["job_id"]]

    run(scenario())


def test_the_hub_follows_its_jobs_from_its_start_even_with_no_server(
        world: World, tmp_path: Path) -> None:
    """JupyterHub makes spawners only for the servers it has: its init_spawners, wrapped,
    starts every backend's poller (and so the orphan sweep) once its own work is done."""
    import logging
    from types import SimpleNamespace

    from traitlets.config import Config

    from hpcspawner.hub import follow_jobs_from_hub_start
    from hpcspawner.spawner import HPCSpawner

    class Hub:  # JupyterHub's app, as far as the wrapper sees it
        spawner_class = HPCSpawner
        config = Config({"HPCSpawner": {"profiles_path": str(tmp_path / "profiles.yaml"),
                                        "hub_id": "hub"}})
        db = None
        log = logging.getLogger("hub")
        hub = SimpleNamespace(api_url="http://127.0.0.1:8081/hub/api")
        done = False

        async def init_spawners(self) -> None:
            self.done = True

    follow_jobs_from_hub_start(Hub)
    follow_jobs_from_hub_start(Hub)  # once only

    async def scenario() -> None:
        app = Hub()
        await app.init_spawners()
        assert app.done
        poller = shared.poller("slurm", "hpcspawner:hub:", lambda: None)  # type: ignore
        assert poller._task is not None and not poller._task.done()  # the sweep runs
        poller.stop()

    run(scenario())


def test_workers_at_start_beyond_the_users_total_caps_are_refused_before_any_job(
        world: World, tmp_path: Path) -> None:
    """The form's Dask workers at start count against the totals beside the user's servers:
    more than fit is refused with the limit in the sentence, and nothing is submitted."""
    (tmp_path / "profiles.yaml").write_text(
        "caps:\n  default: {total_cores: 3}\n" + PROFILES.replace(
            "  - name: small\n", "  - name: small\n    dask: {offer_at_start: true}\n"))
    spawner = spawner_for(tmp_path)
    spawner.user_options = {"profile": "small", "dask_workers": "3"}  # 1 + 3 cores > 3
    with pytest.raises(SpawnException) as refused:
        run(spawner.start())
    assert refused.value.message == (
        "Dask workers 3 is more than your server may run: at most 2 (your total of 3 cores "
        "for all your servers and workers: your servers hold 1 core, a worker 1 core). Ask "
        "for fewer.")
    assert world.backends["slurm"].submitted == []
    spawner.user_options = {"profile": "small", "dask_workers": "2"}
    assert run(started(spawner, world))


def test_a_stopped_sessions_end_is_recorded_once_in_the_hubs_database_by_our_own_connection(
        world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not through JupyterHub's shared Spawner.db (deprecated): a connection of hpcspawner's
    own to the hub's database URL; a second stop records nothing more."""
    import sqlite3

    spawner = spawner_for(tmp_path)

    async def scenario() -> str:
        job_id = await started(spawner, world)
        await spawner.stop()
        await spawner.stop()
        return job_id

    with caplog.at_level(logging.WARNING):
        job_id = run(scenario())
    rows = sqlite3.connect(tmp_path / "jupyterhub.sqlite").execute(
        "select user, profile, job_id, cores from hpcspawner_sessions").fetchall()
    assert rows == [(ME, "small", job_id, 1)]
    assert not [r for r in caplog.records if "Spawner.db is deprecated" in r.getMessage()]
