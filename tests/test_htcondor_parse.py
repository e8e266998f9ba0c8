"""The HTCondor backend reads what a real HTCondor 25 pool printed (tests/fixtures/htcondor)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from hpcspawner.backends.base import JobState
from hpcspawner.backends.htcondor import (
    TERSE_RE,
    HTCondorBackend,
    ad_to_info,
    job_id,
    parse_json_ads,
    split_job_id,
)
from hpcspawner.commands import CommandError

FIXTURES = Path(__file__).parent / "fixtures" / "htcondor"


def body(name: str) -> str:
    """A transcript without its `$ command` line and `[exit N]` trailer."""
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    return "".join(line for line in lines
                   if not line.startswith("$ ") and not line.startswith("[exit "))


def test_running_jobs_give_the_execute_host() -> None:
    infos = [ad_to_info(ad) for ad in parse_json_ads(body("q_json_running.txt"))]
    assert [(i.job_id, i.state, i.host, i.user) for i in infos] == [
        ("31", JobState.RUNNING, "vm", "alice"), ("32", JobState.RUNNING, "vm", "alice")]
    assert infos[0].since == 1795321763


def test_held_job_carries_the_hold_reason() -> None:
    infos = {i.job_id: i for i in map(ad_to_info, parse_json_ads(body("q_json_held.txt")))}
    assert infos["32"].state is JobState.HELD
    assert infos["32"].reason == "via condor_hold (by user alice)"
    assert infos["31"].state is JobState.RUNNING


def test_idle_job_says_why_it_waits() -> None:
    [info] = map(ad_to_info, parse_json_ads(body("q_json_idle.txt")))
    assert (info.state, info.reason) == (JobState.PENDING, "no match found")


def test_history_tells_who_removed_the_job() -> None:
    infos = [ad_to_info(ad) for ad in parse_json_ads(body("history_json.txt"))]
    assert all(i.state is JobState.GONE for i in infos)
    assert "via condor_rm (by user alice)" in infos[0].reason


def test_empty_queue_prints_nothing() -> None:
    assert body("q_after_rm.txt") == ""
    assert parse_json_ads(body("q_after_rm.txt")) == []


def test_terse_submit_output() -> None:
    match = TERSE_RE.match(body("submit_terse.txt").strip())
    assert match and match.group(1) == "31"


@pytest.mark.parametrize(("schedd", "pool"), [(None, None), ("notebooks", None),
                                              ("notebooks", "cm.desy.de:9618"), (None, "cm")])
def test_job_ids_carry_their_schedd_and_pool(schedd: str | None, pool: str | None) -> None:
    assert split_job_id(job_id("31", schedd, pool)) == ("31", schedd, pool)


def _fake(tmp_path: Path, name: str, stdout: str, code: int = 0) -> str:
    out = tmp_path / f"{name}.out"
    out.write_text(stdout)
    script = tmp_path / name
    script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/{name}.args\ncat {out}\nexit {code}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_query_is_one_condor_q_per_schedd_and_keeps_only_our_tag(tmp_path: Path) -> None:
    ads = body("q_json_running.txt").replace('"HPCSpawnerServer": ""',
                                             '"HPCSpawnerTag": "hpcspawner:hub:alice:"', 1)
    backend = HTCondorBackend(condor_q=_fake(tmp_path, "condor_q", ads))
    assert asyncio.run(backend.query("hpcspawner:hub:")) == {}  # no profile uses HTCondor yet
    assert not (tmp_path / "condor_q.args").exists()
    backend.locations.add((None, None))
    jobs = asyncio.run(backend.query("hpcspawner:hub:"))
    assert list(jobs) == ["31"]
    args = (tmp_path / "condor_q.args").read_text()
    assert args.startswith("-all -constraint HPCSpawner =?= true -json -attributes ClusterId,")


def test_schedd_down_is_an_error_not_an_empty_queue(tmp_path: Path) -> None:
    backend = HTCondorBackend(condor_q=_fake(tmp_path, "condor_q", body("q_schedd_down.txt"), 1))
    backend.locations.add((None, None))
    with pytest.raises(CommandError, match="exited with 1"):
        asyncio.run(backend.query("hpcspawner:hub:"))


def test_a_foreign_ad_with_a_wrong_typed_attribute_is_skipped_not_fatal(tmp_path: Path) -> None:
    """Any pool user can submit with +HPCSpawner = True and condor_qedit an attribute to a
    wrong type: that ad is ignored, every other job is still read."""
    good = json.loads(body("q_json_running.txt"))[0]
    good["HPCSpawnerTag"] = "hpcspawner:hub:alice:"
    bad = {**good, "ClusterId": 666, "JobStatus": "Running", "EnteredCurrentStatus": [1]}
    worse = {**good, "ClusterId": 667, "JobStatus": {"x": 1}}
    backend = HTCondorBackend(condor_q=_fake(tmp_path, "condor_q",
                                             json.dumps([bad, good, worse])))
    backend.locations.add((None, None))
    jobs = asyncio.run(backend.query("hpcspawner:hub:"))
    assert list(jobs) == [str(good["ClusterId"])]
    assert jobs[str(good["ClusterId"])].state is JobState.RUNNING


def test_a_silent_schedd_makes_only_its_own_jobs_unknown(tmp_path: Path) -> None:
    ads = body("q_json_running.txt").replace('"HPCSpawnerServer": ""',
                                             '"HPCSpawnerTag": "hpcspawner:hub:alice:"', 1)
    script = tmp_path / "condor_q"
    script.write_text(f'#!/bin/sh\ncase "$*" in *fastschedd*) echo down >&2; exit 1;; esac\n'
                      f"cat <<'EOF'\n{ads}\nEOF\n")
    script.chmod(0o755)
    backend = HTCondorBackend(condor_q=str(script))
    backend.locations.add((None, None))
    jobs = asyncio.run(backend.query("hpcspawner:hub:", ["77@fastschedd@"]))
    assert jobs["31"].state is JobState.RUNNING
    assert jobs["77@fastschedd@"].state is JobState.UNKNOWN
