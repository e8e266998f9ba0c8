"""Dask from the notebook on HTCondor (the stand-in and, where installed, a real pool): the
workers are alice's HTCondor jobs with the hub's attributes, and they end with her server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.condor import Condor
from tests.e2e.kernel import Kernel
from tests.e2e.test_dask_e2e import MAKE
from tests.e2e.test_htcondor_e2e import condor, regular  # noqa: F401 (the fixture)
from tests.hubtools import Hub, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.htcondor]

PROFILES = """
defaults:
  backend: htcondor
profiles:
  - name: condor-dask
    resources: {cores: 1, memory: 2GiB, runtime: 1h}
    dask: {worker_profile: condor-worker, max_workers: 4}
  - name: condor-worker
    users: [nobody]
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
"""

COMPUTE = """
import dask.array as da
print(int(da.ones((1000, 1000), chunks=(100, 100)).sum().compute()))
"""


def workers_of(pool: Condor, hub: Hub) -> list[dict[str, object]]:
    return [job for job in pool.jobs(hub.hub_id)
            if str(job.get("HPCSpawnerTag", "")).endswith("/dask")]


def test_alices_htcondor_workers_are_her_jobs_and_end_with_her_server(
        make_hub: Callable[..., Hub], condor: Condor) -> None:  # noqa: F811
    hub = make_hub(PROFILES, extra_config=condor.hub_config()).start()
    assert hub.spawn("alice", {"profile": "condor-dask"}).status_code in (201, 202)
    hub.wait_ready("alice", timeout=regular(condor))
    kernel = Kernel(hub, "alice")
    kernel.run(MAKE.format(n=2), timeout=2 * regular(condor))
    assert kernel.run(COMPUTE).split() == ["1000000"]
    workers = workers_of(condor, hub)
    assert len(workers) == 2, condor.jobs(hub.hub_id)
    for job in workers:
        assert job["Owner"] == "alice" and job["JobStatus"] == 2, job
        assert job["HPCSpawnerTag"] == f"hpcspawner:{hub.hub_id}:alice:/dask"
    hub.stop_server("alice")
    wait_for("alice's workers to leave the queue", lambda: workers_of(condor, hub) == [],
             timeout=30)
