"""What the spawn page says about each profile: parsed from sinfo / condor_status, in words,
and from one query per interval however many pages are shown."""

from __future__ import annotations

import asyncio

import pytest

from hpcspawner.availability import AvailabilityCache, outlook, with_expected_start
from hpcspawner.backends import Availability
from hpcspawner.backends.slurm_words import _epoch, parse_sinfo_nodes, parse_test_only
from hpcspawner.profiles import parse_profiles

SINFO = """\
bignode01|batch|0/0/128/128|1024000|0|down*|(null)|(null)|
bignode01|jupyter*|0/0/128/128|1024000|0|down*|(null)|(null)|
vm|batch|12/4/0/16|256000|204800|mix|(null)|(null)|
vm|jupyter*|12/4/0/16|256000|204800|mix|(null)|(null)|
gpu01|gpu|0/32/0/32|512000|0|idle|gpu:a100:4(S:0-1)|gpu:a100:1(IDX:0)|
"""
PROFILES = parse_profiles("""\
defaults: {partition: jupyter}
profiles:
  - {name: small, resources: {cores: 2, memory: 12GiB, runtime: 1h}}
  - {name: large, resources: {cores: 8, memory: 48GiB, runtime: 1h}}
  - {name: gpu, partition: gpu, resources: {cores: 4, memory: 28GiB, gpus: 4, runtime: 1h}}
  - name: fast
    backend: htcondor
    partition: null
    resources: {cores: 1, memory: 1536MiB, runtime: 1h}
    htcondor: {fast_path: {timeout: 8s}}
""").by_name


def test_sinfo_nodes_give_free_cores_unallocated_memory_and_free_gpus() -> None:
    nodes = {n.name: n for n in parse_sinfo_nodes(SINFO)}
    vm = nodes["vm"]
    assert (vm.groups, vm.free_cores, vm.total_cores) == (("batch", "jupyter"), 4, 16)
    assert vm.free_memory == (256000 - 204800) * 1024**2 and vm.usable
    assert not nodes["bignode01"].usable
    assert (nodes["gpu01"].free_gpus, nodes["gpu01"].groups) == (3, ("gpu",))


def test_the_page_says_in_words_whether_a_profile_can_start_now() -> None:
    nodes = parse_sinfo_nodes(SINFO)
    small = outlook(PROFILES["small"], nodes)
    assert small.can_start is True
    assert small.text == "Can start now: 4 cores of 16 free in partition jupyter."
    large = outlook(PROFILES["large"], nodes)
    assert large.can_start is False
    assert large.text == ("Cannot start now: no node of partition jupyter has 8 cores and "
                          "48 GiB free (at most 4 cores, 50 GiB); it will wait in the queue.")
    assert "4 GPUs" in outlook(PROFILES["gpu"], nodes).text  # 3 of 4 free
    assert outlook(PROFILES["small"], None).can_start is None


def test_the_fast_path_counts_free_reserved_notebook_slots() -> None:
    slot = Availability(name="slot2@vm", groups=("jupyter",), free_cores=1, total_cores=1,
                        free_memory=1536 * 1024**2)
    taken = Availability(name="slot3@vm", groups=("jupyter",), free_cores=1, total_cores=1,
                         free_memory=1536 * 1024**2, usable=False)
    assert outlook(PROFILES["fast"], [slot, taken]).text == \
        "Starts in seconds: 1 reserved notebook slot free."
    assert outlook(PROFILES["fast"], [taken]).can_start is False


def test_fifty_page_views_at_once_make_one_query_per_interval() -> None:
    now = [0.0]

    async def fetch() -> list[Availability]:
        await asyncio.sleep(0.01)  # a slow scheduler: the other views wait for this answer
        return parse_sinfo_nodes(SINFO)

    cache = AvailabilityCache(fetch, ttl=10, clock=lambda: now[0])

    async def views() -> None:
        await asyncio.gather(*(cache.get() for _ in range(50)))
        now[0] = 9.9
        await asyncio.gather(*(cache.get() for _ in range(50)))
        assert cache.queries == 1
        now[0] = 10.0
        await cache.get()
        assert cache.queries == 2

    asyncio.run(views())


def test_a_scheduler_that_fails_makes_the_page_say_unknown() -> None:
    async def fetch() -> list[Availability]:
        raise OSError("sinfo: error: Unable to contact slurm controller")

    cache = AvailabilityCache(fetch, ttl=10)
    assert asyncio.run(cache.get()) is None


# condor_status -af Name State Cpus TotalSlotCpus Memory Gpus IsJupyterSlot on the real
# one-node HTCondor 25.13.2 pool of scripts/condor-pool (docs/htcondor.md layout), one slot busy
REAL_POOL_AF = """\
slot1@vm Unclaimed 6 6 12928 0 false
slot2@vm Claimed 1 1 1536 0 true
slot3@vm Unclaimed 1 1 1536 0 true
"""


def test_condor_status_slots_and_the_reserved_notebook_slots() -> None:
    from hpcspawner.backends.htcondor_ads import parse_status_af

    slots = parse_status_af(REAL_POOL_AF + "garbage line\n")
    assert [(s.name, s.groups, s.usable) for s in slots] == [
        ("slot1@vm", ("pool",), True), ("slot2@vm", ("jupyter",), False),
        ("slot3@vm", ("jupyter",), True)]
    assert slots[0].free_memory == 12928 * 1024**2
    assert outlook(PROFILES["fast"], slots).text == \
        "Starts in seconds: 1 reserved notebook slot free."


def test_the_schedulers_expected_start_is_said_as_an_estimate() -> None:
    found = outlook(PROFILES["large"], parse_sinfo_nodes(SINFO))
    assert found.can_start is False
    later = with_expected_start(found, 1_800_003_600.0, now=lambda: 1_800_000_000.0)
    assert later.text == (found.text + " The scheduler expects it could start around "
                          "2027-01-15 09:00 UTC (in 1 h).")
    assert with_expected_start(found, None) == found  # no estimate: nothing is made up


def test_sbatch_test_only_gives_the_expected_start() -> None:
    text = ("sbatch: Job 1005 to start at 2026-12-01T00:22:59 using 4 processors on nodes vm "
            "in partition jupyter\n")
    assert parse_test_only(text) == _epoch("2026-12-01T00:22:59")
    assert parse_test_only("allocation failure: Requested node configuration is not "
                           "available\n") is None


def test_the_expected_start_is_asked_for_the_job_the_profile_submits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`sbatch --test-only` carries every request option of the job script's #SBATCH lines,
    the profile's extra_options (a QOS, an account) included: an estimate for another job
    would be wrong."""
    from hpcspawner import shared
    from hpcspawner.commands import Result
    from hpcspawner.job_builder import JobBuilder

    [profile] = parse_profiles("""\
profiles:
  - name: gpu
    display_name: GPU
    backend: slurm
    partition: gpu
    resources: {cores: 4, memory: 32GiB, runtime: 2h, gpus: 1, gpu_model: a100}
    extra_options: ["--qos=interactive", "--constraint=ib"]
""").profiles
    backend = shared.backend("slurm")
    asked: list[list[str]] = []

    async def as_hub(argv: list[str], *, check: bool = True) -> Result:
        asked.append(argv)
        return Result(argv, 0, "", "sbatch: Job 7 to start at 2026-12-01T00:22:59 using 4 "
                      "processors on nodes vm in partition gpu\n")

    monkeypatch.setattr(backend, "as_hub", as_hub)
    assert asyncio.run(backend.expected_start(profile)) == _epoch("2026-12-01T00:22:59")
    builder = JobBuilder(username="alice", server_name="", home="/home/alice",
                         job_dir="/home/alice/.hpcspawner", hub_id="hub", python="/p",
                         cmd=["/bin/true"], env={})
    script = builder.render(profile, backend, secret_file="/home/alice/t", submission="1",
                            fast=False)[1]
    per_job = ("--job-name=", "--comment=", "--chdir=", "--output=", "--no-requeue",
               "--export=")
    requested = [line.split(" ", 1)[1] for line in script.splitlines()
                 if line.startswith("#SBATCH ") and not line[8:].startswith(per_job)]
    assert "--gpus=a100:1" in requested and "--qos=interactive" in requested
    [argv] = asked
    assert argv[:2] == [backend.sbatch, "--test-only"]
    assert argv[2:] == [*requested, "--output=/dev/null", "--wrap=true"]


def test_profiles_that_differ_only_in_extra_options_get_their_own_estimate() -> None:
    """Same resources, another QOS: another job to SLURM, so another cached estimate."""
    from hpcspawner import shared

    a, b = parse_profiles("""\
profiles:
  - {name: a, display_name: A, backend: slurm, resources: {cores: 1, memory: 1GiB, runtime: 1h}}
  - name: b
    display_name: B
    backend: slurm
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
    extra_options: ["--qos=long"]
""").profiles
    assert shared.expected_start(a, 10) is not shared.expected_start(b, 10)
    assert shared.expected_start(a, 10) is shared.expected_start(a, 10)


def test_a_partition_list_can_start_in_any_of_its_partitions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`partition: jupyter,gpu`: SLURM starts the job in whichever can take it first, so the
    page counts the nodes of both, and sbatch --test-only is asked for the list."""
    from hpcspawner.backends.slurm import SlurmBackend
    from hpcspawner.commands import Result

    both = parse_profiles("""\
profiles:
  - {name: either, partition: "jupyter,gpu", resources: {cores: 8, memory: 48GiB, runtime: 1h}}
""").by_name["either"]
    nodes = parse_sinfo_nodes(SINFO)
    assert outlook(PROFILES["large"], nodes).can_start is False  # jupyter alone: no
    found = outlook(both, nodes)
    assert (found.can_start, found.text) == (
        True, "Can start now: 36 cores of 48 free in partitions jupyter, gpu.")
    backend = SlurmBackend()
    asked: list[list[str]] = []

    async def as_hub(argv: list[str], *, check: bool = True) -> Result:
        asked.append(argv)
        return Result(argv, 0, "", "sbatch: Job 7 to start at 2026-12-01T00:22:59 using 8 "
                      "processors on nodes gpu01 in partition gpu\n")

    monkeypatch.setattr(backend, "as_hub", as_hub)
    assert asyncio.run(backend.expected_start(both)) == _epoch("2026-12-01T00:22:59")
    assert "--partition=jupyter,gpu" in asked[0]
