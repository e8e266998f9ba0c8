"""The hub's Prometheus metrics (docs/metrics.md) on the HTCondor stand-in: after a fast-path
spawn that falls back, one that hits, and a refused profile, ``/hub/metrics`` (scraped as
Prometheus does) counts each, promtool accepts hpcspawner's families, and no label holds a
user name or a job id."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest
import requests

from tests.e2e.condor import find_condor
from tests.e2e.test_htcondor_e2e import PROFILES, fill_reserved_slots, regular
from tests.hubtools import Hub

pytestmark = [pytest.mark.e2e, pytest.mark.htcondor]

CONFIG = "c.JupyterHub.authenticate_prometheus = False\n"  # scraped as Prometheus does


def scrape(hub: Hub) -> str:
    r = requests.get(f"{hub.url}/hub/metrics", timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.text


def ours(text: str) -> str:
    """hpcspawner's families of an exposition (HELP, TYPE and samples)."""
    return "".join(line + "\n" for line in text.splitlines()
                   if re.match(r"(# (HELP|TYPE) )?hpcspawner_", line))


def value(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_spawns_fall_backs_refusals_and_commands_without_names(
        make_hub: Callable[..., Hub]) -> None:
    condor, why = find_condor("standin")
    assert condor is not None, why
    hub = make_hub(PROFILES, extra_config=condor.hub_config() + CONFIG).start()
    refused = hub.spawn("carol", {"profile": "no-such-profile"})
    assert refused.status_code == 400
    fillers = fill_reserved_slots(condor)
    try:
        assert hub.spawn("alice", {"profile": "condor-fast"}).status_code in (201, 202)
        hub.wait_ready("alice", timeout=regular(condor))  # after its fall-back
    finally:
        for cluster in fillers:
            condor.run("condor_rm", cluster)
    assert hub.spawn("bob", {"profile": "condor-fast"}).status_code in (201, 202)
    hub.wait_ready("bob", timeout=60)  # on a reserved slot
    jobs = [str(job["ClusterId"]) for job in condor.jobs(hub.hub_id)]

    text = scrape(hub)
    mine = ours(text)
    spawns = 'hpcspawner_spawns_total{backend="%s",outcome="%s",profile="%s"}'
    assert value(mine, spawns % ("htcondor", "fell_back", "condor-fast")) == 1
    assert value(mine, spawns % ("htcondor", "ready", "condor-fast")) == 1
    assert value(mine, spawns % ("other", "refused", "other")) == 1
    assert value(mine, 'hpcspawner_fast_path_total{result="fell_back"}') == 1
    assert value(mine, 'hpcspawner_fast_path_total{result="hit"}') == 1
    assert value(mine, 'hpcspawner_spawn_ready_seconds_count{profile="condor-fast"}') == 2
    assert value(mine, 'hpcspawner_job_queued_seconds_count{profile="condor-fast"}') == 2
    assert value(mine, 'hpcspawner_job_start_to_report_seconds_count{profile="condor-fast"}') \
        == 2
    assert value(mine, 'hpcspawner_servers{profile="condor-fast",state="running"}') == 2
    assert value(mine, 'hpcspawner_scheduler_commands_total{command="condor_submit",'
                       'result="ok"}') >= 3  # two spawns and the fall-back
    assert value(mine, 'hpcspawner_scheduler_commands_total{command="condor_q",'
                       'result="ok"}') >= 1
    assert value(mine, 'hpcspawner_poll_cycle_seconds_count{backend="htcondor"}') >= 1
    # bounded labels: never a user, a server or a job id
    labels = " ".join(re.findall(r"\{([^}]*)\}", mine))
    for word in ("alice", "bob", "carol", *jobs):
        assert f'"{word}"' not in labels, word
    check = subprocess.run(["promtool", "check", "metrics"], input=mine, text=True,
                           capture_output=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
