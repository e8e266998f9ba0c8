"""A fourth scheduler, added the way a site would: everything it knows is in this file (a
backend class, registered; its job template, written where the site's templates live), and
the spawn runs end to end through it — profile, script, token hand-off, queue, node, report,
route, availability, cancel — with no change anywhere else. "ToyQ" is an in-memory queue with
the usual shape: submit prints an id, a queue listing names state, reason, node and tag."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pwd
from collections.abc import Collection
from pathlib import Path

import pytest

from hpcspawner import backends, messages
from hpcspawner.availability import outlook
from hpcspawner.backends import Availability, Backend, JobInfo, JobState, SubmitRequest
from hpcspawner.backends.base import CancelRefused, Tool
from hpcspawner.commands import Result
from hpcspawner.job import BatchJob, JobContext, Plan
from hpcspawner.jobspec import JobBuilder
from hpcspawner.poller import Poller
from hpcspawner.profiles import ProfileError, parse_profiles
from hpcspawner.report import Report, accept

ME = pwd.getpwuid(os.getuid()).pw_name
TOKEN = "0123456789abcdef" * 2

TEMPLATE = """#!/bin/sh
#TOYQ name={{ job_name }} tag={{ tag }} cores={{ resources.cores }} mib={{ memory_mib }}
{% for name, value in env.items() %}export {{ name }}={{ value | toyq_quote }}
{% endfor %}export {{ secret_file_env }}={{ secret_file | toyq_quote }}
exec {{ python }} -m hpcspawner.launcher -- {{ command | join(" ") }}
"""


class ToyQBackend(Backend):
    """Everything hpcspawner knows about ToyQ."""

    name = "toyq"
    template_name = "toyq.job.j2"

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)
        self.queue: dict[str, dict[str, str]] = {}  # what `toyq list` would print
        self.helper_calls: list[list[str]] = []

    @classmethod
    def filters(cls) -> dict[str, object]:  # type: ignore[override]
        return {"toyq_quote": lambda value: "'" + str(value).replace("'", "'\\''") + "'"}

    @classmethod
    def availability_group(cls, profile: object) -> tuple[str | None, str]:
        return "toy", "the toy queue"

    def log_name(self, server: str, job_id: str = "") -> str:
        return f"{server}-{job_id or '%ID%'}.log"

    async def as_user(self, username: str, argv: list[str], *, input: str | None = None,
                      hint: str = "", timeout: float | None = None) -> Result:
        self.helper_calls.append(argv)  # hpcspawner-helper write-token / remove-token
        return Result(argv, 0, "", "")

    async def submit(self, request: SubmitRequest) -> str:
        header = dict(word.split("=", 1) for word in
                      request.script.splitlines()[1].split()[1:])
        job_id = f"toy{len(self.queue) + 1}"
        self.queue[job_id] = {"state": "Q", "why": "busy", "node": "", "tag": header["tag"],
                              "user": request.username}
        return job_id

    async def query(self, tag_prefix: str, job_ids: Collection[str] = ()) -> dict[str, JobInfo]:
        states = {"Q": JobState.PENDING, "R": JobState.RUNNING, "X": JobState.GONE}
        return {job_id: JobInfo(job_id=job_id, state=states[row["state"]], host=row["node"],
                                reason=row["why"] if row["state"] != "R" else "",
                                meaning="every toy node is taken" if row["why"] == "busy"
                                else "", user=row["user"], tag=row["tag"])
                for job_id, row in self.queue.items() if row["tag"].startswith(tag_prefix)}

    async def route_hosts(self, infos: Collection[JobInfo]) -> dict[str, str]:
        return {info.job_id: self.queue[info.job_id]["node"] for info in infos}

    async def cancel(self, job_id: str, username: str, tag: str) -> None:
        self.queue[job_id].update(state="X", why="the job was cancelled")

    @classmethod
    def checked_cancel(cls, job_id: str, tag: str, user: str, tool: Tool) -> str:
        out = tool("toyq", ["show", job_id])
        if out.stdout.split() != [user, tag]:
            raise CancelRefused(f"job {job_id} is not {user}'s job tagged {tag}")
        tool("toyq", ["del", job_id])
        return f"deleted job {job_id}"

    async def availability(self) -> list[Availability]:
        return [Availability(name="toy1", groups=("toy",), free_cores=4, total_cores=4,
                             free_memory=8 * 2**30)]


@pytest.fixture
def toyq(monkeypatch: pytest.MonkeyPatch) -> ToyQBackend:
    monkeypatch.setattr(backends, "_REGISTERED", {})  # registered for this test only
    backends.register_backend(ToyQBackend)
    return ToyQBackend()


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
        toyq.queue[job.job_id].update(state="R", node="toy1")
        await poller.refresh()
        await accept(job, "", TOKEN, Report(port=5000, host="toy1", submission=job.submission))
        address = await asyncio.wait_for(starting, 5)
        await job.cancel()
        poller.stop()
        return address

    assert asyncio.run(asyncio.wait_for(spawn(), 10)) == ("toy1", 5000)
    [written] = [argv for argv in toyq.helper_calls if "write-token" in argv]
    assert said()[0] == f"Submitted job toy1 ({profile.title})"
    assert "Waiting in queue: busy (every toy node is taken)" in said()[1]
    assert said()[-1] == "Server ready on toy1:5000"
    assert toyq.queue["toy1"]["state"] == "X"
    assert toyq.queue["toy1"]["tag"] == "hpcspawner:hub:" + ME + ":"
    assert outlook(profile, asyncio.run(toyq.availability())).text == \
        "Can start now: 4 cores of 4 free in the toy queue."
    assert messages.explain(asyncio.run(toyq.query("hpcspawner:"))["toy1"]) == \
        "the job was cancelled"
    assert written[-1].endswith(".token")


def test_the_helper_cancels_through_the_fourth_schedulers_own_check(
        toyq: ToyQBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """hpcspawner-helper knows no scheduler: it checks the tag is the user's and hands the
    backend its checked commands."""
    from hpcspawner import helper

    ran: list[list[str]] = []

    def fake_tool(name: str, args: list[str]) -> object:
        ran.append([name, *args])
        owner = "bob" if args[1:] == ["toy9"] else ME
        return type("Done", (), {"stdout": f"{owner} hpcspawner:hub:{ME}:", "returncode": 0})

    checked = ToyQBackend.checked_cancel("toy1", f"hpcspawner:hub:{ME}:", ME, fake_tool)
    assert checked == "deleted job toy1" and ran[-1] == ["toyq", "del", "toy1"]
    with pytest.raises(CancelRefused):
        ToyQBackend.checked_cancel("toy9", f"hpcspawner:hub:{ME}:", ME, fake_tool)
    # the helper names the backends it knows, the registered one among them (as the user:
    # the helper never runs as root)
    monkeypatch.setattr(helper, "me", lambda: pwd.getpwuid(os.getuid()))
    with pytest.raises(helper.Refused, match="'pbs'; say htcondor or slurm or toyq"):
        helper.cancel("pbs", "1", f"hpcspawner:hub:{ME}:")
    assert json.dumps(sorted(backends.backend_classes())) == '["htcondor", "slurm", "toyq"]'
