"""What squeue and sacct print, read into honest job states."""

from __future__ import annotations

from hpcspawner.backends.base import JobState
from hpcspawner.backends.slurm import SQUEUE_FORMAT, parse_sacct, parse_squeue, slurm_state

# `squeue -h -a --states=all --name=jupyterhub -o '%i|%T|%r|%N|%u|%V|%k'` on the test cluster
SQUEUE = """\
101|RUNNING|None|vm|alice|2026-11-22T04:43:21|hpcspawner:hub:alice:
102|PENDING|Resources||bob|2026-11-22T04:43:30|hpcspawner:hub:bob:
103|PENDING|ReqNodeNotAvail, UnavailableNodes:big01||carol|2026-11-22T04:44:00|hpcspawner:hub:c:
104|CANCELLED|None|vm|alice|2026-11-22T04:40:00|hpcspawner:hub:alice:old
105|TIMEOUT|None|vm|bob|2026-11-22T03:40:00|hpcspawner:hub:bob:old
106|RUNNING|None|vm|dave|2026-11-22T04:40:00|hpcspawner:otherhub:dave:
107|COMPLETING|None|vm|alice|2026-11-22T04:40:00|hpcspawner:hub:alice:x
"""


def test_format_asks_for_the_fields_we_read() -> None:
    assert SQUEUE_FORMAT.count("|") == 6 and SQUEUE_FORMAT.endswith("%k")


def test_squeue_lines_become_states_with_reasons_and_nodes() -> None:
    jobs = parse_squeue(SQUEUE, "hpcspawner:hub:")
    assert "106" not in jobs  # another hub's job is none of ours
    assert (jobs["101"].state, jobs["101"].host, jobs["101"].user) == (
        JobState.RUNNING, "vm", "alice")
    assert (jobs["102"].state, jobs["102"].reason) == (JobState.PENDING, "Resources")
    assert jobs["103"].reason == "ReqNodeNotAvail, UnavailableNodes:big01"
    assert (jobs["104"].state, jobs["104"].reason) == (JobState.GONE, "the job was cancelled")
    assert jobs["105"].reason == "the job reached its time limit"
    assert jobs["107"].state is JobState.COMPLETING
    assert jobs["101"].since is not None


def test_unknown_scheduler_words_are_gone_with_the_word_kept() -> None:
    assert slurm_state("PENDING") is JobState.PENDING
    assert slurm_state("SUSPENDED") is JobState.PENDING
    assert slurm_state("SOMETHING_NEW") is JobState.GONE
    jobs = parse_squeue("9|SOMETHING_NEW|None||a|x|hpcspawner:hub:a:\n", "hpcspawner:hub:")
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
