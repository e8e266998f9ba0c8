"""What squeue and sacct print, read into honest job states."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping

import pytest

from hpcspawner import sentences
from hpcspawner.backends.base import BackendError, JobState, SubmitRequest
from hpcspawner.backends.slurm import SlurmBackend
from hpcspawner.backends.slurm_words import (
    SQUEUE_FIELDS,
    parse_sacct,
    parse_squeue,
    private_jobs,
    slurm_state,
    squeue_format,
)
from hpcspawner.commands import Result
from hpcspawner.contract import MAX_TAG
from hpcspawner.profiles import parse_profiles

FRAME = ("f00dfeed0badcafe", "0123456789abcdef")

# `squeue -h -a --states=all --name=jupyterhub -o 'F1|%i|%T|%r|%N|%u|%V|%S|%e|%k|F2'` on the test
# cluster, without the frame (framed() adds it)
SQUEUE = """\
101|RUNNING|None|vm|alice|2026-11-22T04:43:21|2026-11-22T04:43:22|2026-11-22T16:43:22|\
hpcspawner:hub:alice:
102|PENDING|Resources||bob|2026-11-22T04:43:30|2026-11-22T05:00:00|N/A|hpcspawner:hub:bob:
103|PENDING|ReqNodeNotAvail, UnavailableNodes:big01||carol|2026-11-22T04:44:00|N/A|N/A|\
hpcspawner:hub:c:
104|CANCELLED|None|vm|alice|2026-11-22T04:40:00|N/A|N/A|hpcspawner:hub:alice:old
105|TIMEOUT|None|vm|bob|2026-11-22T03:40:00|N/A|N/A|hpcspawner:hub:bob:old
106|RUNNING|None|vm|dave|2026-11-22T04:40:00|N/A|N/A|hpcspawner:otherhub:dave:
107|COMPLETING|None|vm|alice|2026-11-22T04:40:00|N/A|N/A|hpcspawner:hub:alice:x
"""


def framed(text: str, frame: tuple[str, str] = FRAME) -> str:
    return "".join(f"{frame[0]}|{line}|{frame[1]}\n" for line in text.splitlines())


def test_every_record_is_framed_by_the_querys_own_words() -> None:
    assert squeue_format(FRAME) == f"{FRAME[0]}|{SQUEUE_FIELDS}|{FRAME[1]}"
    assert SQUEUE_FIELDS.endswith(f"|%{MAX_TAG}k")  # the comment (user-written) comes last
    # unframed lines (what the old parser read) are not records
    assert parse_squeue(SQUEUE, "hpcspawner:hub:", FRAME) == {}


def test_comments_are_cut_and_padded_by_squeue_and_a_cut_one_is_never_a_tag() -> None:
    """squeue prints %512k cut to 512 characters and padded with spaces: the padding goes,
    and a comment that long (perhaps cut) is nobody's tag."""
    tag = "hpcspawner:hub:alice:"
    long = ("hpcspawner:hub:bob:" + "x" * 2000)[:MAX_TAG]
    out = framed(f"101|RUNNING|None|vm|alice|2026-11-22T04:43:21|N/A|N/A|{tag.ljust(MAX_TAG)}\n"
                 f"102|PENDING|None||bob|2026-11-22T04:43:21|N/A|N/A|{long}")
    jobs = parse_squeue(out, "hpcspawner:hub:", FRAME)
    assert list(jobs) == ["101"] and jobs["101"].tag == tag


def test_a_comment_with_a_newline_cannot_forge_a_record() -> None:
    # bob: sbatch --comment=$'x\n999|RUNNING|...|alice|...|hpcspawner:hub:alice:'
    forged = ("999|RUNNING|None|vm|alice|2026-11-22T04:43:21|N/A|N/A|hpcspawner:hub:alice:")
    out = (f"{FRAME[0]}|201|RUNNING|None|vm|bob|2026-11-22T04:43:21|N/A|N/A|x\n"
           f"{forged}|{FRAME[1]}\n"
           + framed("101|RUNNING|None|vm|alice|2026-11-22T04:43:21|N/A|N/A|hpcspawner:hub:alice:"))
    jobs = parse_squeue(out, "hpcspawner:hub:", FRAME)
    assert set(jobs) == {"101"}
    # a forgery that guesses the shape of a frame but not this query's words
    guess = framed(forged, ("0" * 16, "1" * 16))
    assert parse_squeue(guess, "hpcspawner:hub:", FRAME) == {}


def test_a_job_listed_twice_is_not_believed() -> None:
    line = "101|CANCELLED|None|vm|alice|2026-11-22T04:43:21|N/A|N/A|hpcspawner:hub:alice:"
    jobs = parse_squeue(framed(line + "\n" + line.replace("CANCELLED", "RUNNING")),
                        "hpcspawner:hub:", FRAME)
    assert jobs["101"].state is JobState.UNKNOWN


def test_job_ids_must_be_numbers() -> None:
    out = framed("12x|RUNNING|None|vm|alice|2026-11-22T04:43:21|N/A|N/A|hpcspawner:hub:alice:")
    assert parse_squeue(out, "hpcspawner:hub:", FRAME) == {}


def test_squeue_lines_become_states_with_reasons_and_nodes() -> None:
    jobs = parse_squeue(framed(SQUEUE), "hpcspawner:hub:", FRAME)
    assert "106" not in jobs  # another hub's job is none of ours
    assert (jobs["101"].state, jobs["101"].host, jobs["101"].user) == (
        JobState.RUNNING, "vm", "alice")
    assert (jobs["102"].state, jobs["102"].reason) == (JobState.PENDING, "Resources")
    assert jobs["103"].reason == "ReqNodeNotAvail, UnavailableNodes:big01"
    # the backend says what its scheduler's words mean; the spawn page shows both
    assert jobs["102"].meaning == "waiting for free cores or memory"
    assert jobs["103"].meaning == "the nodes this job needs are not available"
    assert sentences.state_progress(jobs["102"], 65)[1] == (
        "Waiting in queue: Resources (waiting for free cores or memory) (since 1 min 5 s)")
    assert (jobs["104"].state, jobs["104"].reason) == (JobState.GONE, "the job was cancelled")
    assert jobs["105"].reason == "the job reached its time limit"
    assert jobs["107"].state is JobState.COMPLETING
    assert jobs["101"].since is not None
    # the scheduler's own times: a running job's start and end (its limit), a queued job's
    # expected start; N/A is none
    assert jobs["101"].ends is not None and jobs["101"].starts is not None
    assert jobs["101"].ends - jobs["101"].starts == 12 * 3600
    assert jobs["102"].starts is not None and jobs["102"].ends is None
    assert jobs["104"].starts is None


def test_unknown_scheduler_words_are_gone_with_the_word_kept() -> None:
    assert slurm_state("PENDING") is JobState.PENDING
    assert slurm_state("SUSPENDED") is JobState.PENDING
    assert slurm_state("SOMETHING_NEW") is JobState.GONE
    jobs = parse_squeue(framed("9|SOMETHING_NEW|None||a|x|N/A|N/A|hpcspawner:hub:a:"),
                        "hpcspawner:hub:", FRAME)
    assert jobs["9"].reason == "the job ended (SOMETHING_NEW)"


def test_sacct_says_why_a_job_that_left_the_queue_ended() -> None:
    # `sacct -n -P -X -j 104,105,106,108 -o JobID,State,ExitCode`
    out = ("104|CANCELLED by 1001|0:15\n105|TIMEOUT|0:0\n106|FAILED|2:0\n"
           "108|NODE_FAIL|0:0\n109|RUNNING|0:0\n")
    jobs = parse_sacct(out)
    assert jobs["104"].reason == "the job was cancelled"
    assert jobs["105"].reason == "the job reached its time limit"
    assert jobs["106"].reason == "the job failed with exit code 2"
    assert jobs["106"].exit_code == 2
    assert jobs["108"].reason == "the node running the job failed"
    assert "109" not in jobs  # still running: not an explanation of an end


def test_sbatch_printing_no_job_id_is_a_clear_error_not_a_crash() -> None:
    """sbatch exiting 0 with only whitespace (a broken wrapper, a site's submit filter)."""

    class Quiet(SlurmBackend):
        async def as_user(self, username: str, argv: list[str], *, input: str | None = None,
                          hint: str = "", timeout: float | None = None,
                          env: Mapping[str, str] | None = None) -> Result:
            return Result(argv, 0, "  \n\n", "")

    profile = parse_profiles("profiles:\n  - name: small\n    resources: {memory: 1GiB, "
                             "runtime: 1h}\n").profiles[0]
    request = SubmitRequest(script="#!/bin/bash\n", username="alice", profile=profile)
    with pytest.raises(BackendError, match="sbatch printed no job id"):
        asyncio.run(Quiet().submit(request))


def test_private_data_hides_jobs_only_when_it_names_jobs_or_all() -> None:
    config = "MinJobAge               = 300 sec\nPrivateData             = {}\nProctrackType = x\n"
    assert private_jobs(config.format("jobs,usage"))
    assert private_jobs(config.format("all"))
    assert not private_jobs(config.format("none"))
    assert not private_jobs(config.format("usage,users"))
    assert not private_jobs("")


@pytest.mark.parametrize(("admin_level", "hidden"), [
    ("Operator", False), ("Administrator", False), ("None", True), ("", True)])
def test_private_data_hides_jobs_unless_the_hub_is_a_slurm_operator(
        monkeypatch: pytest.MonkeyPatch, admin_level: str, hidden: bool) -> None:
    """With PrivateData=jobs a followed job missing from squeue is "hidden" (never ended)
    unless sacctmgr says the hub's account is an operator or administrator: then it is
    asked for by id, as without PrivateData."""
    from hpcspawner.backends.slurm import SlurmBackend
    from hpcspawner.commands import Result

    backend = SlurmBackend()
    asked: list[list[str]] = []

    async def as_hub(argv: list[str], *, check: bool = True) -> Result:
        asked.append(argv)
        if argv[0] == backend.scontrol:
            return Result(argv, 0, "PrivateData             = jobs\n", "")
        if argv[0] == backend.sacctmgr:
            return Result(argv, 0, f"{admin_level}\n" if admin_level else "", "")
        return Result(argv, 0, "", "")  # squeue: nothing listed

    monkeypatch.setattr(backend, "as_hub", as_hub)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setattr("pwd.getpwuid", lambda uid: type("pw", (), {"pw_name": "jupyterhub"}))
    jobs = asyncio.run(backend.query("hpcspawner:hub:", ["42"]))
    assert [a[:2] for a in asked if a[0] == backend.sacctmgr] == [[backend.sacctmgr, "-n"]]
    by_id = [a for a in asked if a[0] == backend.squeue and "--jobs=42" in a]
    if hidden:
        assert jobs["42"].reason == "PrivateData=jobs hides the job from the hub" and not by_id
    else:
        assert "42" not in jobs and by_id


def test_sbatch_options_are_units_of_an_option_and_its_value() -> None:
    """As sbatch's getopt reads them: a short or long option takes the next word as its
    value; -c4 and --mem=4G carry it; a flag takes none, so the word after it is no option."""
    from hpcspawner.backends.slurm_options import Option, split_options

    words = split_options("-c 2 --mem=24G --qos long -A physics -c4 -Hq normal --gres gpu:1 "
                          "--exclusive user -Z")
    assert [w.text if isinstance(w, Option) else w for w in words] == [
        "--cpus-per-task=2", "--mem=24G", "--qos=long", "--account=physics",
        "--cpus-per-task=4", "--hold", "--qos=normal", "--gres=gpu:1", "--exclusive", "user",
        "-Z"]
    assert [w.written for w in words if isinstance(w, Option)][:3] == [
        "-c 2", "--mem=24G", "--qos long"]
    [alone] = split_options("-c")
    assert isinstance(alone, Option) and alone.missing_value


def test_the_resources_in_options_are_read_the_last_one_winning() -> None:
    from hpcspawner.backends.slurm_options import read_request, split_options

    def units(origin: str, text: str, quiet: bool = False) -> list:
        return [(origin, word, quiet) for word in split_options(text)]

    request = read_request([
        *units("req_nprocs", "--cpus-per-task=1", quiet=True),
        *units("req_options", "-c 2 --mem-per-cpu 2G -t 1-00:00:00 -p a,b --gres=gpu:a100:2,"
               "tmpfs:10G --reservation=r -J x -N 2 2")])
    assert (request.cores, request.total_memory, request.runtime, request.partition) == (
        2, 4 * 2**30, 86400, "a,b")
    assert (request.gpus, request.gpu_model) == (2, "a100")
    assert request.extra == [("req_options", "--gres=tmpfs:10G"),
                             ("req_options", "--reservation=r")]
    said = [text for _, text in request.said]
    assert said[0] == ("'-c 2' overrides '--cpus-per-task=1' (req_nprocs): sbatch takes the "
                       "last; it is resources.cores")
    assert "'-J x' left out: hpcspawner names every job c.SlurmBackend.job_name (its one " \
        "squeue asks for that name)" in said
    assert "'-N 2' left out: a server's job runs on one node (hpcspawner writes --nodes=1)" \
        in said
    assert "'2' left out: it is no sbatch option (a value without its option?)" in said
    # a whole node's memory, an unlimited time: no size a profile can hold
    request = read_request(units("o", "--mem=0 --time=UNLIMITED --exclusive=user"))
    assert (request.total_memory, request.runtime) == (None, None)
    assert request.extra == [("o", "--exclusive=user")]
    assert len(request.said) == 2


@pytest.mark.parametrize(("value", "gpus", "rest"), [
    ("gpu:2", (None, 2), ""), ("gpu", (None, 1), ""), ("gpu:a100:2", ("a100", 2), ""),
    ("gpu:a100", ("a100", 1), ""), ("tmpfs:10G,gpu:1", (None, 1), "tmpfs:10G"),
    ("mps:100", None, "mps:100")])
def test_a_gres_value_says_which_gpus_it_asks(value: str, gpus: tuple | None,
                                               rest: str) -> None:
    from hpcspawner.backends.slurm_options import gpu_request

    assert gpu_request(value) == (gpus, rest)


def test_a_scripts_sbatch_lines_are_read_until_its_first_command() -> None:
    from hpcspawner.backends.slurm_options import Option, script_words

    script = ("#!/bin/bash\n#SBATCH -c 2 --mem=4G  # two cores\n\n#SBATCH --gres=gpu:1\n"
              "module load cuda\n#SBATCH --time=1:00:00\n")
    read = [(n, w.text if isinstance(w, Option) else w) for n, w in script_words(script)]
    assert read == [(2, "--cpus-per-task=2"), (2, "--mem=4G"), (4, "--gres=gpu:1")]


@pytest.mark.parametrize(("running", "asked", "refused"), [
    ("batch", ["batch"], True),  # the job runs in batch: batch's 4 h hold
    ("jupyter", ["jupyter"], False),
    ("", ["jupyter", "batch"], False),  # squeue does not say: the most any of them allows
])
def test_more_time_for_a_job_of_a_partition_list_holds_to_the_partition_it_runs_in(
        running: str, asked: list[str], refused: bool) -> None:
    from hpcspawner.backends.base import ExtendRefused

    [profile] = parse_profiles("""\
profiles:
  - name: either
    partition: jupyter,batch
    resources: {cores: 1, memory: 1GiB, runtime: 1h}
    extend: {step: 1h, max_runtime: 1d}
""").profiles
    backend = SlurmBackend()
    calls: list[list[str]] = []
    limits = {"jupyter": "1-00:00:00", "batch": "04:00:00"}

    async def as_hub(argv: list[str], *, check: bool = True) -> Result:
        calls.append(argv)
        if argv[0] == backend.squeue:
            return Result(argv, 0, f"{running}\n" if running else "", "")
        if argv[1:3] == ["show", "partition"]:
            return Result(argv, 0, f"PartitionName={argv[3]} MaxTime={limits[argv[3]]}", "")
        return Result(argv, 0, "", "")

    backend.as_hub = as_hub  # type: ignore[method-assign]
    if refused:
        with pytest.raises(ExtendRefused, match=re.escape(
                "The partition 'batch' lets a job run at most 4 h; this server would run 5 h.")):
            asyncio.run(backend.extend("42", 5 * 3600, profile))
    else:
        asyncio.run(backend.extend("42", 5 * 3600, profile))
        assert calls[-1][1] == "update"
    assert calls[0] == [backend.squeue, "-h", "-j", "42", "-o", "%P"]
    assert [c[3] for c in calls if c[1:3] == ["show", "partition"]] == asked
