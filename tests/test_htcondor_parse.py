"""The HTCondor backend reads what a real HTCondor 25 pool printed (tests/fixtures/htcondor)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from hpcspawner.backends.base import JobInfo, JobState
from hpcspawner.backends.htcondor import QUERY_CONSTRAINT, TERSE_RE, HTCondorBackend
from hpcspawner.backends.htcondor_ads import (
    ad_to_info,
    job_id,
    parse_json_ads,
    slot_hosts,
    split_job_id,
)
from hpcspawner.commands import CommandError

FIXTURES = Path(__file__).parent / "fixtures" / "htcondor"


def body(name: str) -> str:
    """A transcript without its `$ command` line and `[exit N]` trailer."""
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    return "".join(line for line in lines
                   if not line.startswith("$ ") and not line.startswith("[exit "))


def condor_json(ads: list[dict[str, object]]) -> str:
    """What condor_q -json prints: one indented ad per block, a comma line between."""
    return "[\n" + "\n,\n".join(json.dumps(ad, indent=2) for ad in ads) + "\n]\n"


def test_running_jobs_are_read_but_not_where_the_job_ad_says_they_run() -> None:
    """RemoteHost is in the transcript ("slot1_1@vm") but its owner may condor_qedit it: the
    job ad never names the host (route_hosts asks the startds' slot ads)."""
    assert '"RemoteHost": "slot1_1@vm"' in body("q_json_running.txt")
    infos = [ad_to_info(ad) for ad in parse_json_ads(body("q_json_running.txt"))]
    assert [(i.job_id, i.state, i.host, i.user) for i in infos] == [
        ("31", JobState.RUNNING, "", "alice"), ("32", JobState.RUNNING, "", "alice")]
    assert infos[0].since == 1795321763


SLOTS = [
    {"Name": "slot1_1@node01", "Machine": "node01", "JobId": "31.0", "RemoteUser": "alice@vm"},
    {"Name": "slot1_2@node02", "Machine": "node02", "JobId": "32.0", "RemoteUser": "bob@vm"},
    {"Name": "slot1_1@node03", "Machine": "node03", "JobId": "33.0", "RemoteUser": "alice@vm"},
    {"Name": "slot1_2@node04", "Machine": "node04", "JobId": "33.0", "RemoteUser": "alice@vm"},
]


def running(cluster: str, user: str = "alice") -> JobInfo:
    return JobInfo(job_id=cluster, state=JobState.RUNNING, user=user)


def test_the_route_is_the_machine_of_the_one_slot_running_the_owners_job() -> None:
    infos = [running("31"), running("32"), running("33"), running("34")]
    assert slot_hosts(parse_json_ads(condor_json(SLOTS)), infos) == {"31": "node01"}
    # 32: the slot runs bob's job 32, not alice's; 33: two slots claim it; 34: none


def test_route_hosts_asks_the_slot_ads_once_per_pool(tmp_path: Path) -> None:
    backend = HTCondorBackend(condor_status=_fake(tmp_path, "condor_status",
                                                  condor_json(SLOTS)))
    hosts = asyncio.run(backend.route_hosts([running("31"), running("33")]))
    assert hosts == {"31": "node01"}
    args = (tmp_path / "condor_status.args").read_text().split()
    assert args[:1] == ["-constraint"] and "-json" in args
    assert (tmp_path / "condor_status.args").read_text().startswith(
        '-constraint JobId == "31.0" || JobId == "33.0" -json -attributes '
        "Name,Machine,JobId,RemoteUser")


def test_an_ad_nested_thousands_deep_or_cut_short_is_skipped_alone() -> None:
    good = json.loads(body("q_json_running.txt"))[0]
    deep = '{\n  "ClusterId": 666,\n  "HPCSpawnerTag": ' + "[" * 3000 + "]" * 3000 + "\n}"
    text = condor_json([good]).replace("[\n{", f"[\n{deep}\n,\n{{", 1)
    with pytest.raises(RecursionError):
        json.loads(text)  # what reading the answer whole would do
    ads = parse_json_ads(text)
    assert [ad["ClusterId"] for ad in ads] == [good["ClusterId"]]
    broken = condor_json([good, good]).replace('"Owner"', '"Owner', 1)
    assert [ad["ClusterId"] for ad in parse_json_ads(broken)] == [good["ClusterId"]]


def test_a_hold_reason_its_owner_wrote_cannot_start_a_line_of_its_own() -> None:
    """condor_hold -reason $'x\n[I 2026-12-02 hub] forged' by the job's owner: the reason
    the hub shows and logs stays on one line."""
    good = json.loads(body("q_json_held.txt"))[1]
    forged = "x\n[I 2026-12-02 JupyterHub] forged\u2028line\r"
    info = ad_to_info({**good, "HoldReason": forged})
    assert info.reason == "x\\x0a[I 2026-12-02 JupyterHub] forged\\u2028line\\x0d"
    assert len(ad_to_info({**good, "HoldReason": "y" * 5000}).reason) < 1100


def test_held_job_carries_the_hold_reason() -> None:
    infos = {i.job_id: i for i in map(ad_to_info, parse_json_ads(body("q_json_held.txt")))}
    assert infos["32"].state is JobState.HELD
    assert infos["32"].reason == "via condor_hold (by user alice)"
    assert infos["31"].state is JobState.RUNNING


def test_idle_job_says_why_it_waits() -> None:
    [info] = map(ad_to_info, parse_json_ads(body("q_json_idle.txt")))
    assert (info.state, info.reason) == (JobState.PENDING, "no match found")
    assert info.meaning == "no slot matches the request yet"


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
    assert args.startswith(f"-all -constraint {QUERY_CONSTRAINT} -json -attributes ClusterId,")
    assert "RemoteHost" not in args


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
                                             condor_json([bad, good, worse])))
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
