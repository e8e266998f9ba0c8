"""What `hpcspawner import` writes, submitted to the local SLURM cluster: for every SLURM
profile imported from the batchspawner configurations of tests/fixtures/batchspawner (their
partitions and GPU model are this cluster's), `sbatch --test-only` accepts the job script
`hpcspawner render` prints for it, and would start it with the cores the profile asks
(tests/test_migrate.py compares each with what batchspawner's own script asked)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hpcspawner.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slurm]

CONFIGS = Path(__file__).parent.parent / "fixtures" / "batchspawner"
IMPORTED = ["profiles_spawner.py", "req_settings.py", "options_form.py", "options_values.py",
            "options_resources.py", "gpu_script.py", "slurm_subclass.py", "duplicate_key.py",
            "culling_urls.py", "multi_partition.py"]
RESERVATION = "jupyter-days"  # req_settings.py's


@pytest.fixture
def reservation(cluster: None) -> Iterator[None]:
    """req_settings.py's reservation: 2 cores of partition jupyter for root, for the few
    seconds of the test (sbatch --test-only refuses a reservation that starts later)."""
    subprocess.run(["scontrol", "delete", f"ReservationName={RESERVATION}"],
                   capture_output=True, check=False)
    made = subprocess.run(["scontrol", "create", "reservation", f"ReservationName={RESERVATION}",
                           "StartTime=now", "Duration=1-00:00:00", "PartitionName=jupyter",
                           "CoreCnt=2", "Users=root"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    try:
        yield
    finally:
        subprocess.run(["scontrol", "delete", f"ReservationName={RESERVATION}"],
                       capture_output=True, check=False)


@pytest.mark.filterwarnings("ignore:Passing unrecognized arguments")
@pytest.mark.parametrize("name", IMPORTED)
def test_sbatch_accepts_every_imported_slurm_profiles_job_script(
        name: str, cluster: None, request: pytest.FixtureRequest, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    if name == "req_settings.py":
        request.getfixturevalue("reservation")
    out = tmp_path / "profiles.yaml"
    assert main(["import", str(CONFIGS / name), "-o", str(out)]) == 0
    capsys.readouterr()
    profiles = [p for p in yaml.safe_load(out.read_text())["profiles"]
                if p["backend"] == "slurm"]
    assert profiles
    for profile in profiles:
        assert main(["render", "--profiles", str(out), "--profile", profile["name"],
                     "--user", "alice", "--home", "/home/alice"]) == 0
        script = capsys.readouterr().out
        test = subprocess.run(["sbatch", "--test-only"], input=script, capture_output=True,
                              text=True, timeout=60)
        said = test.stderr + test.stdout
        assert test.returncode == 0 and " to start at " in said, (profile["name"], said, script)
        used = int(re.search(r"using (\d+) processors", said).group(1))  # type: ignore[union-attr]
        exclusive = "--exclusive" in profile.get("extra_options", [])
        cores = profile["resources"]["cores"]
        assert (used >= cores if exclusive else used == cores), (profile, said)


def test_a_partition_list_works_for_availability_expected_start_and_more_time(
        cluster: None) -> None:
    """`partition: jupyter,batch` (multi_partition.py's) on the real cluster: sinfo's nodes of
    either count for the spawn page, sbatch --test-only estimates its start, and more time for
    a running job of it holds to the MaxTime of the partition it runs in (squeue says which)."""
    from hpcspawner.availability import outlook
    from hpcspawner.backends.slurm import SlurmBackend
    from hpcspawner.profiles import parse_profiles

    [profile] = parse_profiles("""\
profiles:
  - name: either
    partition: jupyter,batch
    resources: {cores: 1, memory: 256MiB, runtime: 10m}
    extend: {step: 10m, max_runtime: 1h}
""").profiles
    backend = SlurmBackend()
    found = outlook(profile, asyncio.run(backend.availability()))
    assert found.can_start is True and "partitions jupyter, batch" in found.text, found
    assert asyncio.run(backend.expected_start(profile)) is not None
    job = subprocess.run(["sbatch", "--parsable", "--partition=jupyter,batch", "--time=10",
                          "--mem=64M", "--job-name=hpcspawner-e2e-partitions",
                          "--output=/dev/null", "--wrap=sleep 300"],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                             text=True).stdout.strip() != "RUNNING":
            assert time.monotonic() < deadline, "the job did not start"
            time.sleep(0.5)
        assert asyncio.run(backend._job_partition(job)) in ("jupyter", "batch")
        asyncio.run(backend.extend(job, 20 * 60, profile))
        shown = subprocess.run(["scontrol", "show", "job", job, "-o"], capture_output=True,
                               text=True).stdout
        assert "TimeLimit=00:20:00" in shown, shown
    finally:
        subprocess.run(["scancel", job], check=False)
