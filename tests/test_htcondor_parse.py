"""The HTCondor backend reads what a real HTCondor 25 pool printed (tests/fixtures/htcondor)."""

from __future__ import annotations

import asyncio
import json
import math
import stat
from pathlib import Path

import pytest

from hpcspawner.backends.base import JobInfo, JobState
from hpcspawner.backends.htcondor import QUERY_CONSTRAINT, TERSE_RE, HTCondorBackend
from hpcspawner.backends.htcondor_ads import (
    MAX_EPOCH,
    ad_to_info,
    ads_to_infos,
    identities,
    job_id,
    parse_json_ads,
    slot_hosts,
    split_job_id,
)
from hpcspawner.commands import CommandError
from hpcspawner.sentences import clock

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


def slot(machine: str, global_id: str, user: str = "alice@vm", **more: str) -> dict[str, str]:
    return {"Name": f"slot1_1@{machine}", "Machine": machine,
            "JobId": global_id.split("#")[1], "GlobalJobId": global_id, "RemoteUser": user,
            "RemoteOwner": user, **more}


SLOTS = [
    slot("node01", "vm#31.0#1795321759"),
    slot("node02", "vm#32.0#1795321760", "bob@vm"),
    slot("node03", "vm#33.0#1795321761"), slot("node04", "vm#33.0#1795321761"),
    # another schedd's job 35 of alice's, and one of a flocked-in alice of another domain
    slot("node05", "schedd2#35.0#1795321762"), slot("node06", "vm#35.0#1795321762",
                                                     "alice@other.domain"),
    # an accounting group that names alice as the submitter of mallory's claim
    slot("node07", "vm#36.0#1795321763", "alice@vm", RemoteOwner="mallory@vm"),
]
KNOWN = {cluster: (f"vm#{cluster}.0#{qdate}", "alice@vm") for cluster, qdate in (
    ("31", 1795321759), ("32", 1795321760), ("33", 1795321761), ("35", 1795321762),
    ("36", 1795321763))}


def running(cluster: str, user: str = "alice") -> JobInfo:
    return JobInfo(job_id=cluster, state=JobState.RUNNING, user=user)


def test_the_route_is_the_machine_of_the_one_slot_running_the_owners_job() -> None:
    infos = [running(c) for c in ("31", "32", "33", "34", "35", "36")]
    assert slot_hosts(parse_json_ads(condor_json(SLOTS)), infos, KNOWN) == {"31": "node01"}
    # 32: the slot runs bob's job 32, not alice's; 33: two slots claim it; 34: none; 35: the
    # slots run another schedd's 35.0 and another domain's alice's; 36: mallory's claim
    assert slot_hosts(parse_json_ads(condor_json(SLOTS)), infos, {}) == {}  # identity unknown


def test_a_jobs_identity_is_its_schedds_global_id_and_its_full_user() -> None:
    ads: list[dict[str, object]] = [
        {"ClusterId": 31, "GlobalJobId": "vm#31.0#1795321759", "User": "alice@vm"},
        {"ClusterId": 32, "GlobalJobId": "vm#31.0#1795321759", "User": "alice@vm"},  # edited
        {"ClusterId": 33, "GlobalJobId": "vm#33.0#1", "User": ["alice@vm"]},  # wrong type
    ]
    assert identities(ads) == {"31": ("vm#31.0#1795321759", "alice@vm")}
    assert identities(ads, "schedd2") == {}  # asked of schedd2: vm's ids are not its jobs'
    assert identities([{**ads[0], "GlobalJobId": "schedd2#31.0#5"}], "schedd2", "cm") == {
        "31@schedd2@cm": ("schedd2#31.0#5", "alice@vm")}


def test_route_hosts_asks_the_slot_ads_once_per_pool(tmp_path: Path) -> None:
    backend = HTCondorBackend(condor_status=_fake(tmp_path, "condor_status",
                                                  condor_json(SLOTS)))
    backend.identities = KNOWN
    hosts = asyncio.run(backend.route_hosts([running("31"), running("33")]))
    assert hosts == {"31": "node01"}
    args = (tmp_path / "condor_status.args").read_text().split()
    assert args[:1] == ["-constraint"] and "-json" in args
    assert (tmp_path / "condor_status.args").read_text().startswith(
        '-constraint JobId == "31.0" || JobId == "33.0" -json -attributes '
        "Name,Machine,JobId,GlobalJobId,RemoteUser,RemoteOwner")


@pytest.mark.parametrize(("attribute", "value"), [
    ("AllowedJobDuration", 9223372036854775807), ("ShadowBday", 9223372036854775807),
    ("EnteredCurrentStatus", 9223372036854775807), ("EnteredCurrentStatus", 1e308),
    ("AllowedJobDuration", 10**400), ("AllowedJobDuration", -7200),
    ("EnteredCurrentStatus", float("nan")), ("ShadowBday", float("inf")),
    ("EnteredCurrentStatus", "1e999"),
])
def test_times_a_jobs_owner_writes_are_bounded_and_finite(attribute: str, value: object) -> None:
    """``condor_qedit ID AllowedJobDuration 9223372036854775807`` (on a pool that does not
    protect it) and the like: a time is within 1970-2100 or not known, and every page's
    clock can show it."""
    ad: dict[str, object] = {"ClusterId": 77, "JobStatus": 2, "Owner": "alice",
                             "ShadowBday": 1_800_000_000, "AllowedJobDuration": 7200,
                             "EnteredCurrentStatus": 1_800_000_000, attribute: value}
    infos = ads_to_infos([ad])  # (a wrong type: the ad is skipped, logged)
    assert len(infos) == (0 if isinstance(value, str) else 1)
    for time_ in [t for info in infos for t in (info.starts, info.ends, info.since)]:
        assert time_ is None or (math.isfinite(time_) and 0 < time_ <= MAX_EPOCH), time_
        if time_:
            clock(time_)
    ended = ad_to_info({**ad, "EnteredCurrentStatus": 1, "JobStatus": 4, "ExitCode": 10**1000})
    assert ended.reason == "the job ended"


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
