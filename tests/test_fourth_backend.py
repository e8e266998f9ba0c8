"""A fourth scheduler, added the way a site would: everything it knows is in this file (a
backend class, declared as an entry point of ``hpcspawner.backends`` by a package the test
installs; its job template, written where the site's templates live), and the spawn runs end
to end through it — profile, script, token hand-off, queue, node, report, route,
availability, and the cancel, which the real hpcspawner-helper does in a fresh process that
finds the backend through its entry point alone — with no change anywhere else. "ToyQ" is a
queue in a JSON file with the usual shape (state, reason, node, owner, tag) and a ``toyq``
command that the helper runs (``toyq show ID``, ``toyq del ID``). The tests/e2e/nodes test
of hpcspawner-sitebatch does the same with a real scheduler, a real hub and sudo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
import subprocess
import sys
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from hpcspawner import backends, sentences
from hpcspawner.availability import outlook
from hpcspawner.backends import Availability, Backend, JobInfo, JobState, SubmitRequest
from hpcspawner.backends.base import CancelRefused, Tool
from hpcspawner.commands import CommandError, Result
from hpcspawner.job import BatchJob, JobContext, Plan
from hpcspawner.job_builder import JobBuilder
from hpcspawner.poller import Poller
from hpcspawner.profiles import ProfileError, parse_profiles
from hpcspawner.report import Report, accept
from tests.conftest import REPO

ME = pwd.getpwuid(os.getuid()).pw_name
TOKEN = "0123456789abcdef" * 2

TEMPLATE = """#!/bin/sh
#TOYQ name={{ job_name }} tag={{ tag }} cores={{ resources.cores }} mib={{ memory_mib }}
{% for name, value in env.items() %}export {{ name }}={{ value | toyq_quote }}
{% endfor %}export {{ secret_file_env }}={{ secret_file | toyq_quote }}
exec {{ python }} -m hpcspawner.launcher -- {{ command | join(" ") }}
"""

# the scheduler's own command, which the helper runs as the user
TOYQ = """#!{python}
import json, sys
jobs = json.load(open({queue!r}))
command, job_id = sys.argv[1:3]
if job_id not in jobs:
    sys.exit("toyq: no job " + job_id)
if command == "show":
    print(jobs[job_id]["user"], jobs[job_id]["tag"])
elif command == "del":
    jobs[job_id].update(state="X", why="the job was cancelled")
    json.dump(jobs, open({queue!r}, "w"))
"""

# `sudo -u USER hpcspawner-helper ARGS`, played by a fresh Python: the helper never runs as
# root, so it is told that this test's account is the user
AS_THE_USER = ("import os, pwd, sys\nfrom hpcspawner import helper\n"
               "helper.me = lambda: pwd.getpwuid(os.getuid())\n"
               "sys.exit(helper.main(sys.argv[1:]))\n")


class ToyQBackend(Backend):
    """Everything hpcspawner knows about ToyQ."""

    name = "toyq"
    template_name = "toyq.job.j2"
    home = ""  # where ToyQ keeps its queue (queue.json) and its command (bin/toyq)
    packages = ""  # the directory of the site's installed packages, as the helper's path has it

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.helper_calls: list[list[str]] = []

    @classmethod
    def filters(cls) -> dict[str, object]:  # type: ignore[override]
        return {"toyq_quote": lambda value: "'" + str(value).replace("'", "'\\''") + "'"}

    @classmethod
    def availability_group(cls, profile: object) -> tuple[str | None, str]:
        return "toy", "the toy queue"

    def log_name(self, server: str, job_id: str = "") -> str:
        return f"{server}-{job_id or '%ID%'}.log"

    def tools_dir(self) -> str:
        return os.path.join(self.home, "bin")

    def queue(self) -> dict[str, dict[str, str]]:
        """What `toyq list` would print."""
        return dict(json.loads(Path(self.home, "queue.json").read_text()))

    def update(self, job_id: str, **row: str) -> None:
        jobs = self.queue()
        jobs.setdefault(job_id, {}).update(row)
        Path(self.home, "queue.json").write_text(json.dumps(jobs))

    async def as_user(self, username: str, argv: list[str], *, input: str | None = None,
                      hint: str = "", timeout: float | None = None) -> Result:
        """The hub's hpcspawner-helper commands: token files are not this test's (recorded);
        a cancel runs the real helper, in a fresh process that never saw this hub's
        configuration and finds ToyQ by its entry point."""
        self.helper_calls.append(argv)
        if argv[1:2] != ["cancel"]:
            return Result(argv, 0, "", "")
        done = subprocess.run([sys.executable, "-c", AS_THE_USER, *argv[1:]], cwd=REPO,
                              env={"PATH": "/usr/bin:/bin",
                                   "PYTHONPATH": f"{self.packages}:{REPO}"},
                              capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise CommandError(argv, done.returncode, done.stderr)
        return Result(argv, 0, done.stdout, done.stderr)

    async def submit(self, request: SubmitRequest) -> str:
        header = dict(word.split("=", 1) for word in
                      request.script.splitlines()[1].split()[1:])
        job_id = f"toy{len(self.queue()) + 1}"
        self.update(job_id, state="Q", why="busy", node="", tag=header["tag"],
                    user=request.username)
        return job_id

    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        states = {"Q": JobState.PENDING, "R": JobState.RUNNING, "X": JobState.GONE}
        return {job_id: JobInfo(job_id=job_id, state=states[row["state"]], host=row["node"],
                                reason=row["why"] if row["state"] != "R" else "",
                                meaning="every toy node is taken" if row["why"] == "busy"
                                else "", user=row["user"], tag=row["tag"])
                for job_id, row in self.queue().items() if row["tag"].startswith(tag_prefix)}

    async def route_hosts(self, infos: Collection[JobInfo]) -> dict[str, str]:
        return {info.job_id: self.queue()[info.job_id]["node"] for info in infos}

    @classmethod
    def checked_cancel(cls, job_id: str, tag: str, user: str, tool: Tool) -> str:
        out = tool("toyq", ["show", job_id])
        if out.returncode != 0:
            raise CancelRefused(f"toyq show failed: {out.stderr.strip()}")
        if out.stdout.split() != [user, tag]:
            raise CancelRefused(f"job {job_id} is not {user}'s job tagged {tag}")
        tool("toyq", ["del", job_id])
        return f"deleted job {job_id}"

    async def availability(self) -> list[Availability]:
        return [Availability(name="toy1", groups=("toy",), free_cores=4, total_cores=4,
                             free_memory=8 * 2**30)]


def install_toyq(where: Path) -> Path:
    """A site's package that declares ToyQ (its dist-info directory; the class is this file's),
    in a directory of installed packages; returns that directory."""
    info = where / "toyq_site-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyq-site\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[hpcspawner.backends]\ntoyq = {__name__}:ToyQBackend\n")
    return where


@pytest.fixture
def toyq(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ToyQBackend]:
    """ToyQ installed as a site installs it, for this hub process and for the helper's."""
    if os.geteuid() != 0:  # the helper runs only root's commands, from root's directories
        if os.environ.get("CI"):
            pytest.fail("the fourth backend's tests run as root (scripts/test)")
        pytest.skip("the helper runs scheduler commands only from root's directories: as root")
    (tmp_path / "bin").mkdir(mode=0o755)
    (tmp_path / "queue.json").write_text("{}")
    command = tmp_path / "bin" / "toyq"
    command.write_text(TOYQ.format(python=sys.executable, queue=str(tmp_path / "queue.json")))
    command.chmod(0o755)
    packages = install_toyq(tmp_path / "site-packages")
    monkeypatch.syspath_prepend(str(packages))
    backends.installed_backends.cache_clear()
    backend = ToyQBackend()
    backend.home, backend.packages = str(tmp_path), str(packages)
    yield backend
    backends.installed_backends.cache_clear()  # (the path is restored after this)


def test_a_scheduler_that_cannot_give_more_time_gets_no_extend_in_its_profiles(
        toyq: ToyQBackend) -> None:
    with pytest.raises(ProfileError, match="servers on toyq cannot be given more time"):
        parse_profiles("profiles:\n  - name: toy\n    backend: toyq\n    resources: "
                       "{cores: 1, memory: 1GiB, runtime: 1h}\n"
                       "    extend: {step: 1h, max_runtime: 3h}\n")


def test_a_fourth_scheduler_defined_here_runs_the_whole_spawn(
        toyq: ToyQBackend, tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "toyq.job.j2").write_text(TEMPLATE)
    [profile] = parse_profiles("""
profiles:
  - name: toy
    backend: toyq
    resources: {cores: 2, memory: 3GiB, runtime: 1h}
""").profiles
    builder = JobBuilder(username=ME, server_name="", home=str(tmp_path),
                         job_dir=str(tmp_path / ".hpcspawner"), hub_id="hub",
                         python="/usr/bin/python3", cmd=["jupyterhub-singleuser"],
                         template_dirs=(str(tmp_path / "templates"),))
    poller = Poller(toyq, "hpcspawner:hub:", fast=0.01, slow=0.05, jitter=0)
    job = BatchJob(JobContext(backend=toyq, poller=poller, save=lambda: None,
                              on_gone=lambda info: None, log=logging.getLogger("toyq"),
                              name=f"{ME}/default", fast_poll_interval=0.01),
                   ME, Plan(profile, builder))

    def said() -> list[str]:
        return [event["message"] for event in job.events]

    async def spawn() -> tuple[str, int]:
        starting = asyncio.ensure_future(job.start(TOKEN))
        while not any("Waiting in queue" in m for m in said()):
            await asyncio.sleep(0.005)
        toyq.update(job.job_id, state="R", node="toy1")
        await poller.refresh()
        await accept(job, "", TOKEN, Report(port=5000, host="toy1", submission=job.submission))
        address = await asyncio.wait_for(starting, 5)
        await job.cancel()
        poller.stop()
        return address

    assert asyncio.run(asyncio.wait_for(spawn(), 30)) == ("toy1", 5000)
    [written] = [argv for argv in toyq.helper_calls if "write-token" in argv]
    assert said()[0] == f"Submitted job toy1 ({profile.title})"
    assert "Waiting in queue: busy (every toy node is taken)" in said()[1]
    assert said()[-1] == "Server ready on toy1:5000"
    tag = "hpcspawner:hub:" + ME + ":"
    # the cancel: the hub asked the helper, which found ToyQ itself and ran `toyq del`
    assert [argv[1:] for argv in toyq.helper_calls if "cancel" in argv] == [
        ["cancel", "toyq", "toy1", tag, "--bin-dir", toyq.tools_dir()]]
    assert toyq.queue()["toy1"]["state"] == "X"
    assert toyq.queue()["toy1"]["tag"] == tag
    assert outlook(profile, asyncio.run(toyq.availability())).text == \
        "Can start now: 4 cores of 4 free in the toy queue."
    assert sentences.explain(asyncio.run(toyq.query("hpcspawner:"))["toy1"]) == \
        "the job was cancelled"
    assert written[-1].endswith(".token")


def test_the_helper_cancels_through_the_fourth_schedulers_own_check(
        toyq: ToyQBackend) -> None:
    """hpcspawner-helper knows no scheduler: it checks the tag is the user's and hands the
    backend its checked commands; the backend asks its scheduler whose job it is."""
    tag = f"hpcspawner:hub:{ME}:"
    toyq.update("toy1", state="R", why="", node="toy1", tag=tag, user=ME)
    toyq.update("toy9", state="R", why="", node="toy1", tag=tag, user="bob")

    async def cancel(job_id: str) -> None:
        await toyq.cancel(job_id, ME, tag)

    with pytest.raises(backends.HelperRefused) as refused:
        asyncio.run(cancel("toy9"))
    assert refused.value.why == f"job toy9 is not {ME}'s job tagged {tag}"
    asyncio.run(cancel("toy1"))
    assert [toyq.queue()[job]["state"] for job in ("toy1", "toy9")] == ["X", "R"]


def test_a_backend_registered_in_the_hubs_process_alone_is_unknown_to_the_helper(
        toyq: ToyQBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Issue 32: `register_backend` in jupyterhub_config.py (what the docs said before) reaches
    the hub's process only; the helper, a fresh process, knows its backends by entry point.
    The hub says so when the backend is registered."""
    monkeypatch.setattr(toyq, "packages", str(tmp_path / "nothing-installed"))
    monkeypatch.setattr(backends, "_REGISTERED", {})
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path / "site-packages")])
    backends.installed_backends.cache_clear()
    with caplog.at_level(logging.WARNING, logger="hpcspawner.backends"):
        backends.register_backend(ToyQBackend)
    assert "registered in this process only: hpcspawner-helper will not find it" in caplog.text
    toyq.update("toy1", state="R", why="", node="toy1", tag=f"hpcspawner:hub:{ME}:", user=ME)
    with pytest.raises(backends.HelperRefused) as refused:
        asyncio.run(toyq.cancel("toy1", ME, f"hpcspawner:hub:{ME}:"))
    assert refused.value.why.startswith("unknown backend 'toyq'; say htcondor or ")
    assert "entry point in hpcspawner.backends" in refused.value.why
    assert toyq.queue()["toy1"]["state"] == "R"
