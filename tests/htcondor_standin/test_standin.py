"""Tests of the HTCondor stand-in against the transcripts of a real HTCondor 25.14 pool.

The reference files in tests/fixtures/htcondor/ are byte-for-byte transcripts ("$ command",
output, "[exit N]").  Each test runs the same command against the stand-in and compares,
after substituting what legitimately differs: epoch timestamps, dates, port numbers, and
(for condor_status) the reference pool's memory size.  The job ids are the transcript's own:
the test daemon's state is seeded so that the first submissions get clusters 30, 31, 32, ...

Run as root (the daemon forks jobs as alice and bob): pytest tests/htcondor_standin
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

HERE = Path(__file__).resolve().parent
BIN = HERE / "bin"
DAEMON = HERE / "condor_standin_daemon.py"
FIXTURES = HERE.parent / "fixtures" / "htcondor"
# shared/ sits beside the checkout (../shared), on a developer machine and in CI alike
SHARED_REFERENCE = HERE.parents[2] / "shared" / "htcondor-reference"
HOST = socket.gethostname()
MAIN_CYCLE = 3.0
FAST_CYCLE = 1.0
T = TypeVar("T")

pytestmark = [pytest.mark.standin,
              pytest.mark.skipif(os.geteuid() != 0, reason="the stand-in tests run as root")]


# ---------------------------------------------------------------- helpers


@dataclass
class Result:
    out: str
    err: str
    rc: int


def wait_for(what: str, fn: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    """Poll `fn` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        return pwd.getpwnam(name)


def fixture(name: str) -> tuple[str, str, int]:
    """(command line, output, exit code) of a reference transcript."""
    lines = (FIXTURES / name).read_text().splitlines(keepends=True)
    assert lines[0].startswith("$ ")
    m = re.fullmatch(r"\[exit (\d+)\]\n?", lines[-1])
    assert m, f"{name} does not end with [exit N]"
    return lines[0][2:].rstrip("\n"), "".join(lines[1:-1]), int(m.group(1))


def normalize(text: str) -> str:
    """Replace what differs between two runs of the same scenario."""
    text = re.sub(r"\b1[5-9]\d{8}\b", "<TIME>", text)
    text = re.sub(r"\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}", "<DATETIME>", text)
    text = re.sub(r"[ \d]\d/\d[\d ] \d{2}:\d{2}", "<DATE>", text)  # HTCondor: "%2d/%-2d"
    text = re.sub(r"127\.0\.0\.1([:-])\d+", r"127.0.0.1\1<PORT>", text)
    text = re.sub(r"(InitialWaitDuration|AutoClusterId) = \d+", r"\1 = <N>", text)
    text = re.sub(r"#<TIME>#\d+#", "#<TIME>#<CLAIM>#", text)   # the startd's claim counter
    return text


class Standin:
    def __init__(self, tmp: Path, sock: Path, proc: subprocess.Popen[bytes]) -> None:
        self.tmp = tmp
        self.sock = sock
        self.proc = proc

    def run(self, tool: str, *args: str, user: str | None = None, stdin: str | None = None,
            cwd: str | None = None, sock: Path | None = None) -> Result:
        sock = sock or self.sock
        if user:
            cmd = ["sudo", "-u", user, "env", f"CONDOR_STANDIN_SOCKET={sock}",
                   "PYTHONDONTWRITEBYTECODE=1", str(BIN / tool), *args]
            env = None
            cwd = cwd or pwd.getpwnam(user).pw_dir
        else:
            cmd = [str(BIN / tool), *args]
            env = {**os.environ, "CONDOR_STANDIN_SOCKET": str(sock),
                   "PYTHONDONTWRITEBYTECODE": "1"}
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=cwd, env=env,
                           timeout=60)
        return Result(p.stdout, p.stderr, p.returncode)

    def af(self, job: str, *attrs: str) -> list[str]:
        r = self.run("condor_q", job, "-af", *attrs)
        assert r.rc == 0, r.err
        return r.out.split() if r.out else []

    def status(self, job: str) -> int:
        """JobStatus of a job in the queue, 0 if it left the queue."""
        out = self.af(job, "JobStatus")
        return int(out[0]) if out else 0

    def history(self, job: str, *attrs: str) -> dict[str, object]:
        """The job's history ad (projected on attrs), {} if it has none."""
        r = self.run("condor_history", job, "-json", "-attributes", ",".join(attrs))
        assert r.rc == 0, r.err
        ads = json.loads(r.out)
        return ads[0] if ads else {}

    def submit(self, text: str, user: str = "alice", cwd: str | None = None) -> str:
        r = self.run("condor_submit", "-terse", user=user, stdin=text, cwd=cwd)
        assert r.rc == 0, r.err
        m = re.fullmatch(r"(\d+)\.0 - \d+\.\d+\n", r.out)
        assert m, r.out
        return m.group(1)

    def wait_status(self, job: str, status: int, timeout: float) -> None:
        wait_for(f"job {job} to reach JobStatus {status}",
                 lambda: self.status(job) == status, timeout)


@pytest.fixture(scope="module")
def users() -> dict[str, pwd.struct_passwd]:
    return {name: ensure_user(name) for name in ("alice", "bob")}


@pytest.fixture(scope="module")
def standin(users: dict[str, pwd.struct_passwd]) -> Iterator[Standin]:
    tmp = Path(tempfile.mkdtemp(prefix="condor-standin-"))
    tmp.chmod(0o755)
    state = tmp / "state"
    state.mkdir()
    # start the cluster ids where the reference transcripts start (30 = blocker, 31, 32, ...)
    (state / "queue.json").write_text(json.dumps({"next_cluster": 30, "jobs": []}))
    sock = tmp / "schedd.sock"
    log = open(tmp / "daemon.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-B", str(DAEMON), "--socket", str(sock), "--state-dir", str(state),
         "--pidfile", str(tmp / "daemon.pid"), "--main-cycle", str(MAIN_CYCLE),
         "--fast-cycle", str(FAST_CYCLE), "--periodic-interval", "1", "--jupyter-slots", "2"],
        stdout=log, stderr=subprocess.STDOUT)
    s = Standin(tmp, sock, proc)
    wait_for("the stand-in daemon to answer",
             lambda: sock.exists() and s.run("condor_q", "-af", "ClusterId").rc == 0, 15)
    try:
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def workdir(users: dict[str, pwd.struct_passwd]) -> Iterator[Path]:
    """A directory of alice's where test jobs write their files."""
    alice = users["alice"]
    path = Path(tempfile.mkdtemp(prefix="standin-test-", dir=alice.pw_dir))
    os.chown(path, alice.pw_uid, alice.pw_gid)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def write_as(user: pwd.struct_passwd, path: Path, text: str, mode: int = 0o644) -> Path:
    path.write_text(text)
    path.chmod(mode)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def example_job(workdir: Path) -> str:
    """The reference transcripts' example-job.sub, writing into `workdir`, not /home/alice."""
    return (FIXTURES / "example-job.sub").read_text().replace("/home/alice", str(workdir))


def assert_matches(result: Result, name: str, stdout: bool = True, stderr: bool = False,
                   subst: dict[str, str] | None = None) -> None:
    """The stand-in printed exactly the reference output, on the stream(s) HTCondor uses."""
    _, expected, rc = fixture(name)
    for old, new in (subst or {}).items():
        expected = expected.replace(old, new)
    got = (result.out if stdout else "") + (result.err if stderr else "")
    assert normalize(got) == normalize(expected), f"{name}:\n{got}"
    assert result.rc == rc
    if not stdout:
        assert result.out == ""
    if not stderr:
        assert result.err == ""


# ---------------------------------------------------------------- the reference scenario


def test_fixtures_are_the_reference_transcripts() -> None:
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"no {SHARED_REFERENCE} (../shared beside the checkout) on this machine")
    for ref in SHARED_REFERENCE.iterdir():
        copy = FIXTURES / ref.name
        assert copy.is_file(), ref.name
        if ref.name != "README.md":
            assert copy.read_bytes() == ref.read_bytes(), ref.name


def test_schedd_down(standin: Standin, workdir: Path) -> None:
    gone = standin.tmp / "no-such.sock"
    r = standin.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-json",
                    user="alice", sock=gone)
    assert_matches(r, "q_schedd_down.txt", stdout=False, stderr=True, subst={" vm\n": f" {HOST}\n"})
    r = standin.run("condor_submit", "-terse", user="alice", stdin=example_job(workdir),
                    sock=gone)
    assert_matches(r, "submit_schedd_down.txt", stdout=False, stderr=True)


class TestReferenceScenario:
    """Clusters 31 and 32 of the transcripts: submitted, running, held, removed."""

    def test_submit_terse_and_plain(self, standin: Standin, workdir: Path,
                                    users: dict[str, pwd.struct_passwd]) -> None:
        # cluster 30 fills slot1 so that 31 and 32 first get "no match found"
        blocker = standin.submit("executable = /bin/sleep\narguments = 300\nrequest_cpus = 8\n"
                                 "request_memory = 1024\nqueue\n")
        assert blocker == "30"
        standin.wait_status("30", 2, MAIN_CYCLE + 3)

        r = standin.run("condor_submit", "-terse", user="alice", stdin=example_job(workdir),
                        cwd=str(workdir))
        assert_matches(r, "submit_terse.txt")
        sub = write_as(users["alice"], workdir / "example-job.sub", example_job(workdir))
        r = standin.run("condor_submit", "example-job.sub", user="alice", cwd=str(workdir))
        _, expected, _ = fixture("submit_plain.txt")
        monitor = "To monitor your job(s), run: condor_watch_q -clusters 32\n"
        assert r.out + r.err == expected and r.err == monitor and r.rc == 0
        sub.unlink()

    def test_rejected_then_running(self, standin: Standin) -> None:
        wait_for("a main negotiation cycle to reject 31",
                 lambda: standin.af("31", "LastRejMatchReason") == ["no", "match", "found"],
                 MAIN_CYCLE + 3)
        r = standin.run("condor_rm", "30", user="alice")
        assert r.out == "All jobs in cluster 30 have been marked for removal\n" and r.rc == 0
        standin.wait_status("31", 2, MAIN_CYCLE + 3)
        standin.wait_status("32", 2, 2)

    def test_af(self, standin: Standin) -> None:
        r = standin.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-af",
                        "ClusterId", "ProcId", "Owner", "JobStatus", "RemoteHost", "HoldReason",
                        "EnteredCurrentStatus", user="alice")
        assert_matches(r, "q_af_all.txt")
        r = standin.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-af:j",
                        "JobStatus", "RemoteHost", user="alice")
        assert_matches(r, "q_af_format.txt")

    def test_json_running(self, standin: Standin) -> None:
        r = standin.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-json",
                        "-attributes", "ClusterId,ProcId,Owner,JobStatus,RemoteHost,HoldReason,"
                        "HoldReasonCode,EnteredCurrentStatus,HPCSpawnerUser,HPCSpawnerServer",
                        user="alice")
        assert_matches(r, "q_json_running.txt")

    def test_default_table(self, standin: Standin) -> None:
        r = standin.run("condor_q", "-all", user="alice")
        assert_matches(r, "q_default.txt")

    def test_long(self, standin: Standin, workdir: Path) -> None:
        r = standin.run("condor_q", "-l", "31.0", user="alice")
        assert_matches(r, "q_long_31.txt", subst={"/home/alice": str(workdir)})

    def test_status(self, standin: Standin) -> None:
        # the reference pool had one 16000 MB partitionable slot and no notebook slots
        notebook = ("-constraint", "IsJupyterSlot =!= true")
        memory = {"11904": str(64000 - 2 * 2048)}
        r = standin.run("condor_status", *notebook, "-af", "Name", "State", "Activity", "Cpus",
                        "Memory", "TotalSlotCpus", "PartitionableSlot")
        assert_matches(r, "status_af.txt", subst=memory)
        r = standin.run("condor_status", *notebook, "-json", "-attributes",
                        "Name,State,Cpus,Memory,Gpus,PartitionableSlot,ChildCpus")
        assert_matches(r, "status_json.txt", subst=memory)
        r = standin.run("condor_status", *notebook, "-total")
        assert_matches(r, "status_total.txt")

    def test_notebook_slots(self, standin: Standin) -> None:
        """The notebook slots as the real test pool names and types them (scripts/condor-pool):
        slot2@host, slot3@host of slot type 2, and IsJupyterSlot an expression in every ad."""
        where = ("-constraint", "DynamicSlot =!= true")
        r = standin.run("condor_status", *where, "-json", "-attributes",
                        "Name,SlotID,SlotType,SlotTypeID,IsJupyterSlot")
        assert_matches(r, "status_json_notebook_slots.txt")
        r = standin.run("condor_status", *where, "-af", "Name", "SlotID", "SlotType",
                        "SlotTypeID", "IsJupyterSlot")
        assert_matches(r, "status_af_notebook_slots.txt")

    def test_hold(self, standin: Standin) -> None:
        r = standin.run("condor_hold", "32", user="alice")
        assert_matches(r, "hold.txt")
        r = standin.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-json",
                        "-attributes", "ClusterId,ProcId,JobStatus,HoldReason,HoldReasonCode,"
                        "HoldReasonSubCode", user="alice")
        assert_matches(r, "q_json_held.txt")

    def test_rm(self, standin: Standin) -> None:
        assert_matches(standin.run("condor_rm", "31", user="alice"), "rm_ok.txt")
        assert_matches(standin.run("condor_rm", "31", user="alice"), "rm_again.txt",
                       stdout=False, stderr=True)
        assert_matches(standin.run("condor_rm", "32", user="bob"), "rm_other_user.txt",
                       stdout=False, stderr=True)
        assert standin.status("32") == 5
        assert_matches(standin.run("condor_rm", "9999", user="alice"), "rm_missing.txt",
                       stdout=False, stderr=True)
        assert_matches(standin.run("condor_rm", "32", user="alice"), "rm_held.txt")
        r = standin.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-af",
                        "ClusterId", "JobStatus", user="alice")
        assert_matches(r, "q_after_rm.txt")

    def test_history(self, standin: Standin) -> None:
        r = standin.run("condor_history", "-json", "-attributes",
                        "ClusterId,ProcId,JobStatus,RemoveReason,ExitCode,EnteredCurrentStatus",
                        "-constraint", "HPCSpawner =?= true", "-limit", "2", user="alice")
        assert_matches(r, "history_json.txt")

    def test_reschedule(self, standin: Standin) -> None:
        assert_matches(standin.run("condor_reschedule", user="alice"), "reschedule.txt")


class TestIdleJobs:
    """Clusters 33 and 34 of the transcripts: jobs that never match."""

    def test_submit_bad_and_big(self, standin: Standin) -> None:
        r = standin.run("condor_submit", "-terse", user="alice",
                        stdin="executable = /bin/sleep\narguments = 300\nrequest_memory = lots\n"
                              "queue\n")
        assert_matches(r, "submit_bad.txt")
        r = standin.run("condor_submit", "-terse", user="alice",
                        stdin="executable = /bin/sleep\narguments = 300\nrequest_cpus = 64\n"
                              "+HPCSpawner = True\nqueue\n")
        assert_matches(r, "submit_big.txt")
        assert standin.af("33", "RequestMemory") == ["undefined"]

    def test_idle_json(self, standin: Standin) -> None:
        wait_for("a main cycle to reject 34",
                 lambda: standin.af("34", "LastRejMatchTime") != ["undefined"], MAIN_CYCLE + 3)
        r = standin.run("condor_q", "-all", "-constraint", "HPCSpawner =?= true", "-json",
                        "-attributes", "ClusterId,ProcId,JobStatus,LastRejMatchReason,"
                        "LastRejMatchTime,NumJobMatches,RequestCpus", user="alice")
        assert_matches(r, "q_json_idle.txt")
        assert standin.af("33", "JobStatus", "LastRejMatchReason") == \
            ["1", "no", "match", "found"]


def test_submit_syntax_error(standin: Standin, workdir: Path,
                             users: dict[str, pwd.struct_passwd]) -> None:
    write_as(users["alice"], workdir / "syntax.sub",
             "executable = /bin/sleep\nrequest_cpus = (\nqueue\n")
    r = standin.run("condor_submit", "-terse", "syntax.sub", user="alice", cwd=str(workdir))
    assert_matches(r, "submit_syntax.txt", stdout=False, stderr=True)


# ---------------------------------------------------------------- behaviour


JUPYTER = "requirements = TARGET.IsJupyterSlot =?= True\nqueue\n"


def test_fast_negotiator_starts_notebook_while_regular_job_waits(standin: Standin) -> None:
    """Right after a main cycle, a notebook job starts within ~2 s; a regular job waits for
    the next main cycle (condor_reschedule does not bring it forward)."""
    probe = "34" if standin.status("34") == 1 else standin.submit(
        "executable = /bin/sleep\nrequest_cpus = 64\nqueue\n")
    first = wait_for("a main cycle to reject the probe",
                     lambda: [t for t in standin.af(probe, "LastRejMatchTime") if t.isdigit()],
                     MAIN_CYCLE + 3)
    wait_for("the next main cycle", lambda: standin.af(probe, "LastRejMatchTime") != first,
             MAIN_CYCLE + 3, interval=0.05)
    regular = standin.submit("executable = /bin/sleep\narguments = 300\nqueue\n")
    notebook = standin.submit("executable = /bin/sleep\narguments = 300\n" + JUPYTER)
    assert standin.run("condor_reschedule", user="alice").rc == 0
    standin.wait_status(notebook, 2, 2.0)
    assert standin.status(regular) == 1
    assert standin.af(notebook, "RemoteHost")[0] in (f"slot2@{HOST}", f"slot3@{HOST}")
    standin.wait_status(regular, 2, MAIN_CYCLE + 2)
    assert standin.af(regular, "RemoteHost")[0].startswith("slot1_")
    assert standin.run("condor_rm", regular, notebook, user="alice").rc == 0


def test_notebook_slots_full(standin: Standin) -> None:
    jobs = [standin.submit("executable = /bin/sleep\narguments = 300\n" + JUPYTER)
            for _ in range(3)]
    wait_for("two notebook jobs to run",
             lambda: sorted(standin.status(j) for j in jobs) == [1, 2, 2], FAST_CYCLE + 3)
    idle = next(j for j in jobs if standin.status(j) == 1)
    wait_for("the idle notebook job to be rejected",
             lambda: standin.af(idle, "LastRejMatchReason") == ["no", "match", "found"],
             FAST_CYCLE + 2)
    assert standin.af(idle, "LastRejMatchNegotiator") == [f"jupyter@{HOST}"]
    r = standin.run("condor_status", "-af", "Name", "State", "IsJupyterSlot",
                    "-constraint", "IsJupyterSlot")
    assert r.out == f"slot2@{HOST} Claimed true\nslot3@{HOST} Claimed true\n"
    assert standin.run("condor_rm", *jobs, user="alice").rc == 0


def test_job_runs_as_submitter_with_manual_arguments_and_environment(
        standin: Standin, workdir: Path, users: dict[str, pwd.struct_passwd]) -> None:
    """The examples of the condor_submit manual ("arguments", "environment")."""
    alice = users["alice"]
    write_as(alice, workdir / "show.sh",
             '#!/bin/sh\nid -un > whoami\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n'
             'printf "one=[%s] two=[%s] three=[%s] home=[%s]\\n" "$one" "$two" "$three" '
             '"$HOME"\npwd\n', 0o755)
    cases = [
        # new syntax: the manual's three examples, and its environment example
        ('"3 simple arguments"', ["3", "simple", "arguments"],
         """"one=1 two=""2"" three='spacey ''quoted'' value'\"""",
         ("1", '"2"', "spacey 'quoted' value")),
        ("\"one 'two with spaces' 3\"", ["one", "two with spaces", "3"], None, ("", "", "")),
        ("\"one \"\"two\"\" 'spacey ''quoted'' argument'\"",
         ["one", '"two"', "spacey 'quoted' argument"], None, ("", "", "")),
        # old syntax: the manual's examples
        ("one \\\"two\\\" 'three'", ["one", '"two"', "'three'"],
         "one=1;two=2;three=\"quotes have no 'special' meaning\"",
         ("1", "2", "\"quotes have no 'special' meaning\"")),
    ]
    for i, (args, argv, env, values) in enumerate(cases):
        text = (f"executable = show.sh\narguments = {args}\noutput = out{i}\nerror = err{i}\n"
                + (f"environment = {env}\n" if env else "") + JUPYTER)
        job = standin.submit(text, cwd=str(workdir))
        wait_for(f"job {job} to finish", lambda: standin.status(job) == 0,  # noqa: B023
                 FAST_CYCLE + 4)
        assert standin.history(job, "JobStatus", "ExitCode") == {"JobStatus": 4, "ExitCode": 0}
        out = (workdir / f"out{i}").read_text().splitlines()
        assert out == [f"[{a}]" for a in argv] + [
            f"one=[{values[0]}] two=[{values[1]}] three=[{values[2]}] home=[{alice.pw_dir}]",
            str(workdir)]
        assert (workdir / f"out{i}").stat().st_uid == alice.pw_uid
        assert (workdir / "whoami").read_text() == "alice\n"
    ad = standin.run("condor_history", job, "-l").out
    assert 'Args = "one \\"two\\" \'three\'"\n' in ad


def test_condor_rm_kills_the_job(standin: Standin, workdir: Path) -> None:
    job = standin.submit("executable = /bin/sh\narguments = \"-c 'echo $$ > rm.pid; exec sleep "
                         "300'\"\n" + JUPYTER, cwd=str(workdir))
    pid = wait_for("the job's pid", lambda: read_pid(workdir / "rm.pid"), FAST_CYCLE + 3)
    assert pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name == "alice"
    r = standin.run("condor_rm", job, user="alice")
    assert r.out == f"All jobs in cluster {job} have been marked for removal\n"
    wait_for("the job process to die", lambda: not Path(f"/proc/{pid}").exists(), 3)
    wait_for("the job to leave the queue", lambda: standin.status(job) == 0, 3)


def test_condor_rm_sigkills_a_job_ignoring_sigterm(standin: Standin, workdir: Path) -> None:
    job = standin.submit("executable = /bin/sh\narguments = \"-c 'trap \"\"\"\" TERM; "
                         "echo $$ > trap.pid; while :; do sleep 0.2; done'\"\n" + JUPYTER,
                         cwd=str(workdir))
    pid = wait_for("the job's pid", lambda: read_pid(workdir / "trap.pid"), FAST_CYCLE + 3)
    assert standin.run("condor_rm", job, user="alice").rc == 0
    time.sleep(2)  # not synchronisation: the job must still be alive 2 s after SIGTERM
    assert Path(f"/proc/{pid}").exists()
    # as on a real pool: removed (3) but still in the queue, not yet in the history
    assert standin.status(job) == 3
    assert standin.history(job, "ClusterId") == {}
    wait_for("SIGKILL after 5 s", lambda: not Path(f"/proc/{pid}").exists(), 6)
    wait_for("the job in the history", lambda: standin.history(job, "JobStatus"), 3)
    assert standin.status(job) == 0


def test_a_missing_executable_is_refused_at_submit(standin: Standin) -> None:
    """As the real condor_submit does (../shared/htcondor-reference/
    submit_missing_executable.txt): exit 1, nothing on stdout, nothing queued."""
    before = standin.run("condor_q", "-all", "-af", "ClusterId", user="alice").out
    r = standin.run("condor_submit", "-terse", user="alice",
                    stdin="executable = /nonexistent/python3\nshould_transfer_files = NO\n"
                          "queue\n")
    assert (r.out, r.err, r.rc) == ("", "\nERROR: Can't access executable file "
                                        "/nonexistent/python3: No such file or directory\n", 1)
    assert standin.run("condor_q", "-all", "-af", "ClusterId", user="alice").out == before


def test_hold_reason_for_an_executable_that_cannot_run(
        standin: Standin, workdir: Path, users: dict[str, pwd.struct_passwd]) -> None:
    """It exists (so condor_submit takes it) but may not be executed: held at start."""
    program = write_as(users["alice"], workdir / "not-a-program", "data\n", mode=0o644)
    job = standin.submit(f"executable = {program}\n" + JUPYTER)
    standin.wait_status(job, 5, FAST_CYCLE + 3)
    r = standin.run("condor_q", job, "-json", "-attributes",
                    "JobStatus,HoldReason,HoldReasonCode,HoldReasonSubCode", user="alice")
    ad = json.loads(r.out)[0]
    assert ad["HoldReason"] == (f"Error from slot2@{HOST}: Failed to execute "
                                f"'{program}': (errno=13: 'Permission denied')")
    assert (ad["HoldReasonCode"], ad["HoldReasonSubCode"], ad["JobStatus"]) == (6, 13, 5)
    assert standin.run("condor_rm", job, user="alice").rc == 0


def test_hold_when_output_is_not_writable_by_the_user(standin: Standin) -> None:
    job = standin.submit("executable = /bin/true\noutput = /root/denied.out\n" + JUPYTER)
    standin.wait_status(job, 5, FAST_CYCLE + 3)
    r = standin.run("condor_q", job, "-af:j", "HoldReason", "HoldReasonCode",
                    "HoldReasonSubCode")
    assert r.out == (f"{job}.0 Error from slot2@{HOST}: Failed to open '/root/denied.out' as "
                     "standard output: Permission denied (errno 13) 7 13\n")
    assert not Path("/root/denied.out").exists()
    assert standin.run("condor_rm", job, user="alice").rc == 0


def test_allowed_job_duration_and_periodic_remove(standin: Standin) -> None:
    job = standin.submit("executable = /bin/sleep\narguments = 300\nallowed_job_duration = 2\n"
                         "periodic_remove = (JobStatus == 5) && (HoldReasonCode == 46)\n"
                         + JUPYTER)
    wait_for(f"job {job} to leave the queue", lambda: standin.status(job) == 0, 8)
    ad = standin.history(job, "JobStatus", "HoldReason", "HoldReasonCode", "RemoveReason")
    assert ad == {"JobStatus": 3, "HoldReason": "The job exceeded allowed job duration of 00:02",
                  "HoldReasonCode": 46,
                  "RemoveReason": "The job attribute PeriodicRemove expression "
                                  "'(JobStatus == 5) && (HoldReasonCode == 46)' evaluated to TRUE"}


def test_transfer_input_files_copies_a_private_file_as_the_user(
        standin: Standin, workdir: Path, users: dict[str, pwd.struct_passwd]) -> None:
    write_as(users["alice"], workdir / "token", "s3cret\n", 0o600)
    job = standin.submit("executable = /bin/sh\narguments = \"-c 'cat token; stat -c %U:%a "
                         "token; pwd'\"\nshould_transfer_files = YES\n"
                         "transfer_input_files = token\noutput = xfer.out\n" + JUPYTER,
                         cwd=str(workdir))
    wait_for(f"job {job} to finish", lambda: standin.status(job) == 0, FAST_CYCLE + 4)
    lines = (workdir / "xfer.out").read_text().splitlines()
    assert lines[:2] == ["s3cret", "alice:600"]
    assert "/execute/dir_" in lines[2]


def test_environment_is_readable_by_every_user(standin: Standin) -> None:
    """Why hpcspawner must never put a token in `environment`: any user reads it."""
    job = standin.submit("executable = /bin/sleep\narguments = 300\n"
                         "environment = \"JUPYTERHUB_API_TOKEN=leaked\"\n" + JUPYTER)
    standin.wait_status(job, 2, FAST_CYCLE + 3)
    assert standin.run("condor_q", "-l", user="bob").out == ""          # only bob's own jobs
    long = standin.run("condor_q", "-all", "-l", user="bob").out
    assert 'Environment = "JUPYTERHUB_API_TOKEN=leaked"\n' in long
    assert standin.run("condor_rm", job, user="bob").rc == 1
    assert standin.run("condor_rm", job, user="alice").rc == 0
    hist = standin.run("condor_history", job, "-l", user="bob").out
    assert 'Environment = "JUPYTERHUB_API_TOKEN=leaked"\n' in hist


def test_condor_qedit_lets_an_owner_give_any_attribute_any_type(standin: Standin) -> None:
    """What bob can do to his own job ad (qedit.cpp): the hub's parser must survive it."""
    job = standin.submit("executable = /bin/sleep\narguments = 300\n+HPCSpawner = True\n"
                         "queue\n", user="bob")
    r = standin.run("condor_qedit", job, "EnteredCurrentStatus", '"yesterday"', user="bob")
    assert (r.out, r.err, r.rc) == ('Set attribute "EnteredCurrentStatus" for 1 matching '
                                    'jobs.\n', "", 0)
    ad = json.loads(standin.run("condor_q", job, "-json", "-attributes",
                                "EnteredCurrentStatus", user="bob").out)[0]
    assert ad["EnteredCurrentStatus"] == "yesterday"
    r = standin.run("condor_qedit", job, "Owner", '"alice"', user="bob")
    assert (r.err, r.rc) == ('Update of immutable attribute "Owner" is not allowed.\n'
                             "Transaction failed.  No attributes were set.\n", 1)
    r = standin.run("condor_qedit", job, "HPCSpawnerTag", '"x"', user="alice")
    assert (r.err, r.rc) == (f'Failed to set attribute "HPCSpawnerTag" by constraint: ( '
                             f"(ClusterId == {job} ) )\n"
                             "Queue transaction failed.  No attributes were set.\n", 1)
    assert standin.run("condor_rm", job, user="bob").rc == 0


def test_an_owner_edits_remote_host_but_the_slot_ad_stays_the_startds(
        standin: Standin) -> None:
    """As on the real pool (fixtures qedit_*.txt, status_json_slot_of_job.txt): alice may
    condor_qedit RemoteHost of her running job, bob may not; the slot ad, where the hub takes
    its route from, keeps the startd's Machine whatever she writes."""
    job = standin.submit("executable = /bin/sleep\narguments = 300\nrequest_memory = 100\n"
                         "queue\n", user="alice")
    standin.wait_status(job, 2, MAIN_CYCLE + 3)
    ids = {"1": job}

    def matches(result: Result, name: str, stderr: bool = False) -> None:
        subst = {f"ClusterId == {k} )": f"ClusterId == {v} )" for k, v in ids.items()}
        subst |= {f"job {k}.0.": f"job {v}.0." for k, v in ids.items()}
        subst |= {f'"{k}.0"': f'"{v}.0"' for k, v in ids.items()}
        assert_matches(result, name, stdout=not stderr, stderr=stderr,
                       subst={**subst, "@vm": f"@{HOST}", '"vm"': f'"{HOST}"'})

    matches(standin.run("condor_qedit", job, "RemoteHost", '"slot1@127.0.0.2"', user="alice"),
            "qedit_owner.txt")
    matches(standin.run("condor_qedit", job, "RemoteHost", '"slot1@127.0.0.3"', user="bob"),
            "qedit_other_cluster.txt", stderr=True)
    matches(standin.run("condor_qedit", f"{job}.0", "RemoteHost", '"slot1@127.0.0.3"',
                        user="bob"), "qedit_other_job.txt", stderr=True)
    matches(standin.run("condor_q", job, "-af", "RemoteHost", user="alice"),
            "q_af_edited_remotehost.txt")
    slot = standin.run("condor_status", "-constraint", f'JobId == "{job}.0"', "-json",
                       "-attributes", "Name,Machine,JobId,RemoteUser")
    name = json.loads(slot.out)[0]["Name"]
    matches(Result(slot.out.replace(name, "slot1_1@vm".replace("vm", HOST)), slot.err,
                   slot.rc), "status_json_slot_of_job.txt")
    # the slot names the job's full identity, as a real startd does (the hub matches by it)
    ident = json.loads(standin.run("condor_q", job, "-json", "-attributes", "GlobalJobId,User",
                                   user="alice").out)[0]
    said = json.loads(standin.run("condor_status", "-constraint", f'JobId == "{job}.0"', "-json",
                                  "-attributes", "GlobalJobId,RemoteUser,RemoteOwner").out)[0]
    assert (said["GlobalJobId"], said["RemoteUser"], said["RemoteOwner"]) == (
        ident["GlobalJobId"], ident["User"], ident["User"])
    assert standin.run("condor_rm", job, user="alice").rc == 0


def test_only_a_super_user_gives_a_running_job_more_time_and_only_with_forward(
        standin: Standin) -> None:
    """As on the real pool (fixtures qedit_protected_*.txt, qedit_forward_root.txt): alice
    cannot raise her running job's AllowedJobDuration nor move its ShadowBday (protected);
    root's edit with -forward reaches the shadow and the job outlives its first limit, root's
    edit without it changes the schedd's ad only and the job is held at the first limit."""
    sub = ("executable = /bin/sleep\narguments = 300\nrequest_memory = 100\n"
           "allowed_job_duration = 8\nqueue\n")
    forwarded, plain = standin.submit(sub, user="alice"), standin.submit(sub, user="alice")
    standin.wait_status(forwarded, 2, MAIN_CYCLE + 3)
    standin.wait_status(plain, 2, MAIN_CYCLE + 3)

    def matches(result: Result, name: str, stderr: bool = False) -> None:
        assert_matches(result, name, stdout=not stderr, stderr=stderr,
                       subst={"job 1.0.": f"job {forwarded}.0."})

    matches(standin.run("condor_qedit", f"{forwarded}.0", "AllowedJobDuration", "600",
                        user="alice"), "qedit_protected_owner.txt", stderr=True)
    matches(standin.run("condor_qedit", "-forward", f"{forwarded}.0", "ShadowBday",
                        "2000000000", user="alice"), "qedit_protected_forward_owner.txt",
            stderr=True)
    matches(standin.run("condor_qedit", "-forward", f"{forwarded}.0", "AllowedJobDuration",
                        "120"), "qedit_forward_root.txt")
    assert standin.run("condor_qedit", f"{plain}.0", "AllowedJobDuration", "120").rc == 0
    standin.wait_status(plain, 5, 8 + 5)
    held = json.loads(standin.run("condor_q", plain, "-json", "-attributes",
                                  "HoldReasonCode,AllowedJobDuration").out)[0]
    assert (held["HoldReasonCode"], held["AllowedJobDuration"]) == (46, 120)
    assert standin.status(forwarded) == 2
    assert standin.run("condor_rm", forwarded, plain, user="alice").rc == 0


def test_schedd_name_and_pool(standin: Standin) -> None:
    ok = standin.run("condor_q", "-name", HOST, "-pool", "127.0.0.1:9618", "-af", "ClusterId",
                     user="alice")
    assert ok.rc == 0 and ok.err == ""
    bad = standin.run("condor_q", "-name", "elsewhere", "-af", "ClusterId", user="alice")
    assert (bad.out, bad.err, bad.rc) == ("", "Error: Collector has no record of "
                                              "schedd/submitter\n", 1)
    r = standin.run("condor_submit", "-terse", "-name", "elsewhere", user="alice",
                    stdin="executable = /bin/true\nqueue\n")
    assert (r.out, r.err, r.rc) == ("", "\nERROR: Can't find address of schedd elsewhere\n", 1)
    r = standin.run("condor_reschedule", "-name", HOST, user="alice")
    assert (r.out, r.rc) == (f'Sent "Reschedule" command to schedd {HOST}\n', 0)


def test_unknown_options_are_rejected(standin: Standin) -> None:
    r = standin.run("condor_q", "-bogus")
    assert r.rc == 1 and r.err == "Error: unrecognized argument -bogus\n"
    r = standin.run("condor_rm", "-bogus", "1")
    assert r.rc == 1 and r.err.startswith("Unrecognized option: -bogus\nUsage: condor_rm ")
    r = standin.run("condor_status", "-bogus")
    assert r.rc == 1 and r.err.startswith("Error:  Unknown option -bogus\n")


def test_dask_jobqueue_workers_name_their_files_by_job_id_and_ask_by_expressions(
        standin: Standin, workdir: Path) -> None:
    """dask-jobqueue's HTCondorCluster (hpcspawner.dask) names each worker's files with
    $F(MY.JobId) and asks for resources with RequestCpus = MY.DaskWorkerCores and the like
    (its submit description, as dask-jobqueue 0.9 writes it)."""
    text = f"""#!/usr/bin/env condor_submit

MY.DaskWorkerName = "htcondor--$F(MY.JobId)--"
batch_name = dummy-name
RequestCpus = MY.DaskWorkerCores
RequestMemory = floor(MY.DaskWorkerMemory / 1048576)
RequestDisk = floor(MY.DaskWorkerDisk / 1024)
MY.JobId = "$(ClusterId).$(ProcId)"
MY.DaskWorkerCores = 1
MY.DaskWorkerMemory = 1073741824
MY.DaskWorkerDisk = 1073741824
LogDirectory = {workdir}
Output = $(LogDirectory)/worker-$F(MY.JobId).out
Error = $(LogDirectory)/worker-$F(MY.JobId).err
Log = $(LogDirectory)/worker-$(ClusterId).log
Stream_Output = True
Stream_Error = True

Arguments = "-c 'echo a worker'"
Executable = /bin/sh
"""
    job = standin.submit(text + JUPYTER, cwd=str(workdir))
    assert standin.af(job, "Out", "DaskWorkerName", "RequestCpus", "RequestMemory") == [
        f"{workdir}/worker-{job}.0.out", f"htcondor--{job}.0--", "1", "1024"]
    wait_for(f"job {job} to finish", lambda: standin.status(job) == 0, FAST_CYCLE + 4)
    assert (workdir / f"worker-{job}.0.out").read_text() == "a worker\n"
    # dask-jobqueue submits from a file and removes a worker by CLUSTER.PROC
    (workdir / "worker.sub").write_text(text.replace("echo a worker", "exec sleep 300") + JUPYTER)
    r = standin.run("condor_submit", str(workdir / "worker.sub"), user="alice", cwd=str(workdir))
    assert r.rc == 0 and "1 job(s) submitted to cluster" in r.out, r
    sleeper = r.out.split("submitted to cluster ")[1].rstrip(".\n")
    assert standin.run("condor_rm", f"{sleeper}.0", user="alice").rc == 0
    wait_for(f"job {sleeper} to leave the queue", lambda: standin.status(sleeper) == 0, 10)
