"""Dask from the notebook (hpcspawner.dask), without a scheduler: what the hub puts in the
job's environment for each backend, the caps, the refusals the user reads, and the poller
owning, cancelling and sweeping up a server's worker jobs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from hpcspawner.backends.base import JobInfo, JobState
from hpcspawner.backends.htcondor import HTCondorBackend
from hpcspawner.backends.slurm import SlurmBackend
from hpcspawner.contract import Env, job_tag, worker_tag
from hpcspawner.dask import TooManyWorkers, _capped, check_workers, cluster, plan_env, worker_plan
from hpcspawner.poller import Poller
from hpcspawner.profiles import ProfileError, Resources, parse_profiles
from tests.test_poller import PREFIX, FakeBackend

PROFILES = """
caps:
  default: {dask_workers: 10}
  users:
    carol: {dask_workers: 25}
profiles:
  - name: small
    partition: jupyter
    extra_options: ["--account=physics"]
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
  - name: analysis
    partition: jupyter
    resources: {cores: 2, memory: 8GiB, runtime: 6h}
    dask: {worker_profile: worker, max_workers: 30, memory: 3GiB}
  - name: worker
    partition: batch
    users: [nobody]
    resources: {cores: 1, memory: 2GiB, runtime: 2h}
  - name: condor
    backend: htcondor
    htcondor: {schedd: sched1.example.org}
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
"""
TAG = job_tag("hub", "alice", "")


def backend_for(name: str) -> Any:
    condor = HTCondorBackend(condor_submit="/opt/condor/bin/condor_submit",
                             condor_rm="/opt/condor/bin/condor_rm")
    return {"slurm": SlurmBackend(), "htcondor": condor}[name]


def plan(profile: str, user: str = "alice") -> dict[str, Any]:
    profiles = parse_profiles(PROFILES)
    found = worker_plan(profiles.by_name[profile], profiles, profiles.caps.for_user(user, []),
                        backend_for, job_tag("hub", user, ""),
                        f"/home/{user}/.hpcspawner/dask/default")
    assert found is not None
    return found


def test_slurm_workers_are_the_servers_profile_tagged_and_named_for_the_one_query() -> None:
    found = plan("small")
    assert found["cluster"] == "SLURMCluster"
    assert found["options"] == {
        "queue": "jupyter", "cores": 1, "processes": 1, "memory": "12288MiB",
        "walltime": "12:00:00", "job_name": SlurmBackend().job_name,
        "job_extra_directives": [f"--comment={worker_tag(TAG)}", "--export=NONE",
                                 "--account=physics"]}
    assert found["path"] == []  # sbatch and scancel by name: the job's PATH has them
    assert found["max_workers"] == 4  # the profile's default, under the cap of 10
    assert found["directory"] == "/home/alice/.hpcspawner/dask/default"
    env = plan_env(found)
    assert json.loads(env[Env.DASK]) == found
    # every client of the server speaks TLS with its certificate (JupyterLab's sidebar too)
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"] == \
        "/home/alice/.hpcspawner/dask/default/tls/cert.pem"
    assert env["DASK_LABEXTENSION__FACTORY__MODULE"] == "hpcspawner.dask"
    assert "DASK_LABEXTENSION__INITIAL" not in env
    assert json.loads(plan_env(found, at_start=3)["DASK_LABEXTENSION__INITIAL"]) == [
        {"name": "Dask, 3 workers (started with the server)", "workers": 3}]


def test_a_worker_profile_sizes_the_workers_and_caps_bound_them() -> None:
    found = plan("analysis")
    options = found["options"]
    assert (options["queue"], options["cores"], options["memory"], options["walltime"]) == (
        "batch", 1, "3072MiB", "02:00:00")  # the worker profile, dask.memory over its own
    assert found["max_workers"] == 10  # dask.max_workers 30, the default cap 10
    assert plan("analysis", "carol")["max_workers"] == 25  # carol's own cap is larger


def test_workers_fit_in_what_the_users_total_caps_leave_beside_their_servers() -> None:
    """Cores and memory caps over all a user's servers bound the workers too: the plan says
    how many fit beside the servers the user holds, and the notebook's refusal names it."""
    text = PROFILES.replace("default: {dask_workers: 10}",
                            "default: {dask_workers: 10, total_cores: 6, total_memory: 20GiB}")
    profiles = parse_profiles(text)
    analysis = profiles.by_name["analysis"]

    def planned(*held: Resources) -> dict[str, Any]:
        found = worker_plan(analysis, profiles, profiles.caps.for_user("alice", []),
                            backend_for, TAG, "/tmp/d", held)
        assert found is not None
        return found

    alone = planned(analysis.resources)  # 2 cores, 8 GiB held; a worker 1 core, 3 GiB
    assert alone["max_workers"] == 4  # memory: (20 - 8) // 3; cores would allow 4 too
    other = analysis.resources.model_copy(update={"cores": 3, "memory": 2**30})
    beside = planned(analysis.resources, other)  # 5 cores held: 1 left
    assert beside["max_workers"] == 1
    assert beside["limit"] == ("your total of 6 cores for all your servers and workers: your "
                               "servers hold 5 cores, a worker 1 core")
    full = planned(analysis.resources, other.model_copy(update={"cores": 4}))
    assert full["max_workers"] == 0
    assert planned()["max_workers"] == 6  # nothing held: memory 20 // 3, under the cap of 10
    without = worker_plan(analysis, parse_profiles(PROFILES), parse_profiles(
        PROFILES).caps.for_user("alice", []), backend_for, TAG, "/tmp/d", [analysis.resources])
    assert without is not None and without["max_workers"] == 10  # no totals: the cap
    with pytest.raises(TooManyWorkers) as refused:
        check_workers(2, beside["max_workers"], beside["limit"])
    assert "at most 1 Dask workers at once; you asked for 2: ask for 0 to 1 (the limit is " \
        "the hub's: your total of 6 cores" in str(refused.value)


def test_htcondor_workers_carry_the_hubs_attributes_and_go_to_the_profiles_schedd() -> None:
    found = plan("condor")
    options = found["options"]
    assert found["cluster"] == "HTCondorCluster"
    assert options["submit_command_extra"] == ["-name", "sched1.example.org"]
    assert options["job_extra_directives"]["+HPCSpawnerTag"] == f'"{worker_tag(TAG)}"'
    assert options["job_extra_directives"]["+HPCSpawnerUser"] == '"alice"'
    assert options["job_extra_directives"]["allowed_job_duration"] == "3600"
    assert found["path"] == ["/opt/condor/bin"]  # the site's commands, first on PATH


@pytest.mark.parametrize(("edit", "says"), [
    ("worker_profile: nonesuch", "dask.worker_profile 'nonesuch' is not a profile here"),
    ("worker_profile: condor", "'condor' runs on htcondor, the server on slurm"),
    ("max_workers: -1", "dask.max_workers"),
    ("memory: 3", "has no unit"),
])
def test_hpcspawner_check_names_a_broken_dask_setting_with_its_line(edit: str,
                                                                   says: str) -> None:
    text = PROFILES.replace("dask: {worker_profile: worker, max_workers: 30, memory: 3GiB}",
                            "dask: {" + edit + "}")
    with pytest.raises(ProfileError) as broken:
        parse_profiles(text)
    [problem] = broken.value.problems
    assert says in problem and problem.startswith("profiles.yaml:14: profile 'analysis'")


def test_asking_for_more_workers_than_allowed_says_the_range() -> None:
    with pytest.raises(TooManyWorkers) as refused:
        check_workers(25, 20)
    assert str(refused.value).startswith(
        "Your server allows at most 20 Dask workers at once; you asked for 25: ask for 0 to "
        "20 (the limit is the hub's: profiles.yaml")
    with pytest.raises(TooManyWorkers, match="no Dask workers are allowed"):
        check_workers(1, 0)
    check_workers(20, 20)


class FakeCluster:
    """The part of dask-jobqueue's JobQueueCluster the cap wraps."""

    def __init__(self) -> None:
        self._dummy_job = type("Job", (), {"worker_processes": 1, "worker_memory": 2**30,
                                           "worker_cores": 1})()
        self.asked: list[tuple[str, Any]] = []

    def scale(self, n: Any = None, jobs: int = 0, memory: Any = None, cores: Any = None) -> None:
        self.asked.append(("scale", n))

    def adapt(self, *args: Any, **kwargs: Any) -> None:
        self.asked.append(("adapt", (kwargs["minimum"], kwargs["maximum"])))


def test_scale_and_adapt_keep_to_the_cap_and_nothing_is_asked_beyond_it() -> None:
    made = _capped(FakeCluster, 4)()
    made.scale(4)
    made.adapt()  # no maximum: the cap is the maximum
    made.adapt(minimum=1, maximum=3)
    for beyond in (lambda: made.scale(5), lambda: made.scale(jobs=5),
                   lambda: made.scale(memory="5GiB"), lambda: made.scale(cores=8),
                   lambda: made.adapt(maximum=10), lambda: made.adapt(maximum_jobs=5)):
        with pytest.raises(TooManyWorkers, match="at most 4 Dask workers"):
            beyond()
    assert made.asked == [("scale", 4), ("adapt", (0, 4)), ("adapt", (1, 3))]


def test_a_notebook_of_a_server_without_the_plan_is_told_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(Env.DASK, raising=False)
    with pytest.raises(RuntimeError, match="not started by hpcspawner with Dask workers"):
        cluster(workers=2)
    monkeypatch.setenv(Env.DASK, json.dumps({**plan("small", "carol"), "max_workers": 2}))
    with pytest.raises(TooManyWorkers, match="at most 2 Dask workers"):
        cluster(workers=3)  # refused before anything is imported or submitted


def worker(job_id: str, server: str, user: str = "alice") -> JobInfo:
    return JobInfo(job_id=job_id, state=JobState.RUNNING, user=user,
                   tag=worker_tag(f"{PREFIX}{user}:{server}"))


def test_a_followed_servers_workers_are_its_own_and_go_with_it() -> None:
    """Worker jobs of a followed server are no orphans; stopping the server cancels them at
    once; a worker whose server the hub no longer follows is an orphan and is swept up."""

    async def scenario() -> None:
        backend = FakeBackend()
        poller = Poller(backend, PREFIX, orphan_grace=0)
        backend.jobs["1"] = JobInfo(job_id="1", state=JobState.RUNNING, user="alice",
                                    tag=f"{PREFIX}alice:")
        backend.jobs["2"] = worker("2", "")
        backend.jobs["3"] = worker("3", "")
        backend.jobs["4"] = worker("4", "other")  # a server the hub no longer follows
        poller.watch("1", tag=f"{PREFIX}alice:")
        await poller.refresh()
        await poller.sweep()
        assert backend.cancelled == ["4"]
        poller.unwatch("1")  # the server stops ...
        await poller.cancel_workers(f"{PREFIX}alice:")  # ... and its workers with it
        assert sorted(backend.cancelled) == ["2", "3", "4"]
        assert backend.queries == 2  # one shared query before the cancels

    asyncio.run(scenario())


AT_START = PROFILES.replace("dask: {worker_profile: worker, max_workers: 30, memory: 3GiB}",
                            "dask: {worker_profile: worker, max_workers: 30, "
                            "offer_at_start: true}")


@pytest.mark.parametrize(("asked", "says"), [
    ("11", "Dask workers 11 is outside what you may ask for 'analysis': 0 to 10."),
    ("-1", "Dask workers -1 is outside"),
    ("two", "Dask workers two is outside"),
    (["2"], "Dask workers (invalid) is outside"),
    ("\u00b2", "Dask workers \u00b2 is outside"),  # a digit to str.isdigit, not to int()
    ("\u0663", "Dask workers \u0663 is outside"),  # Arabic-Indic 3: int() reads it; refused
])
def test_workers_at_start_are_offered_inside_the_cap_and_a_forged_number_is_refused(
        asked: object, says: str) -> None:
    from hpcspawner.compat import SpawnException
    from hpcspawner.options import choose, form_fields

    profiles = parse_profiles(AT_START)
    analysis, small = profiles.by_name["analysis"], profiles.by_name["small"]
    caps = profiles.caps.for_user("alice", [])
    [field] = form_fields(analysis, caps)
    assert (field.name, field.default, field.hint[:7]) == ("dask_workers", "0", "0 to 10")
    assert form_fields(small, caps) == []  # small does not offer it
    options = {"profile": "analysis", "dask_workers": "4"}
    assert choose(options, [analysis, small], small, "/home/alice", caps).dask_workers == 4
    with pytest.raises(SpawnException) as refused:
        choose({**options, "dask_workers": asked}, [analysis], small, "/home/alice", caps)
    assert refused.value.message.startswith(says)
    with pytest.raises(SpawnException, match="'small' does not start Dask workers"):
        choose({"profile": "small", "dask_workers": "1"}, [small], small, "/home/alice", caps)


def test_a_server_stopped_after_a_hub_restart_takes_its_workers_with_it(tmp_path: Any) -> None:
    """Hub restart then stop: the job restored from its saved state (a new hub: new poller)
    still knows its tag, and its stop cancels the server's worker jobs, not another's."""
    from hpcspawner.job import BatchJob
    from tests.test_job import ME, TOKEN, World

    async def scenario() -> None:
        world = World(tmp_path)
        job = world.job("slurm", "small")
        await job.submit(TOKEN)
        sched = world.backends["slurm"]
        sched.jobs["w1"] = JobInfo(job_id="w1", state=JobState.RUNNING, user=ME,
                                   tag=worker_tag(job.tag))
        sched.jobs["w2"] = JobInfo(job_id="w2", state=JobState.PENDING, user=ME,
                                   tag=worker_tag(job.tag))
        sched.jobs["x"] = JobInfo(job_id="x", state=JobState.RUNNING, user=ME,
                                  tag=worker_tag(job.tag + "other"))
        state = json.loads(json.dumps(job.to_state()))  # what the hub's database keeps
        restarted = World(tmp_path)  # the new hub: its own poller, nothing followed yet
        restarted.backends["slurm"] = sched
        restarted.pollers["slurm"] = Poller(sched, "hpcspawner:hub:", fast=0.01, slow=0.05,
                                            jitter=0)
        again = BatchJob.from_state(state, restarted.ctx("slurm"), ME)
        await again.stop()
        assert sorted(sched.cancelled) == [job.job_id, "w1", "w2"]

    asyncio.run(scenario())
