"""Fuzzing (hypothesis, 1,000 examples each) of every entry point a user or a job reaches:
the form, the REST body, spawn URLs, the report route, profile names, server and user names.
Never a crash: a value is accepted, or refused with a 4xx and a sentence; a rendered script
holds a value only as data."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tornado import web

from hpcspawner import shared
from hpcspawner.apps import ScriptError, check_script_path
from hpcspawner.backends.base import JobInfo, JobState
from hpcspawner.compat import SpawnException
from hpcspawner.job import BatchJob, JobContext
from hpcspawner.job_builder import JobBuilder
from hpcspawner.poller import Poller
from hpcspawner.profiles import ProfileError, parse_profiles
from hpcspawner.render import RenderError
from hpcspawner.report import Forbidden, NotYet, Refused, Report, accept, parse_report
from tests.test_job import ME, PROFILES_TEXT, ScriptedSlurm, make_spawner

MANY = settings(max_examples=1000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
NAMES = ["fast", "small"]


@pytest.fixture(scope="module")
def spawner(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("fuzz") / "profiles.yaml"
    path.write_text(PROFILES_TEXT)
    return make_spawner(path)


def refused_with_a_sentence(exc: SpawnException) -> None:
    assert 400 <= exc.status_code < 500, exc.status_code
    assert len(exc.message) > 10 and exc.message.endswith(".")


@MANY
@given(form=st.dictionaries(st.text(max_size=20), st.lists(st.text(max_size=40), max_size=3),
                            max_size=4))
def test_the_form(spawner: Any, form: dict[str, list[str]]) -> None:
    try:
        options = spawner.options_from_form(form)
    except SpawnException as exc:
        refused_with_a_sentence(exc)
        return
    assert options["profile"] in ("", *NAMES)


@MANY
@given(query=st.dictionaries(st.sampled_from(["profile", "memory", "x", ""]) | st.text(),
                             st.lists(st.text(max_size=40), min_size=1, max_size=2),
                             max_size=3))
def test_spawn_urls(spawner: Any, query: dict[str, list[str]]) -> None:
    """/hub/spawn?profile=…: JupyterHub turns the query into options with options_from_query."""
    try:
        options = spawner.options_from_query(query)
        profile = spawner.resolve_profile(options)
    except SpawnException as exc:
        refused_with_a_sentence(exc)
        return
    assert profile.name in NAMES


@MANY
@given(body=JSON)
def test_the_rest_body(spawner: Any, body: Any) -> None:
    try:
        profile = spawner.resolve_profile(body)
    except SpawnException as exc:
        refused_with_a_sentence(exc)
        return
    assert profile.name in NAMES
    assert body in (None, {}) or isinstance(body, dict)


@MANY
@given(body=JSON | st.fixed_dictionaries(
    {"port": st.integers(-5, 70000) | JSON},
    optional={"host": st.text(max_size=300) | JSON, "server_name": st.text() | JSON,
              "submission": st.text(max_size=80) | JSON}))
def test_the_report_body(body: Any) -> None:
    try:
        report = parse_report(body)
    except web.HTTPError as exc:
        assert exc.status_code == 400 and exc.log_message
        return
    assert 1 <= report.port <= 65535


REAL_TOKEN = "f" * 32
REPORT_OUTCOMES: Counter[str] = Counter()  # what test_the_report_checks saw, by outcome


@MANY
@example(token=REAL_TOKEN, port=5000, host="node1", submission="n1", state=JobState.RUNNING,
         node="node1")  # routed
@example(token=REAL_TOKEN, port=5000, host="node2", submission="n1", state=JobState.RUNNING,
         node="node1")  # refused: another host
@example(token=REAL_TOKEN, port=5000, host="", submission="n1", state=JobState.PENDING,
         node="")  # not yet
@example(token="g" * 32, port=5000, host="node1", submission="n1", state=JobState.RUNNING,
         node="node1")  # forbidden
@given(token=st.sampled_from([REAL_TOKEN, "", "g" * 32]) | st.text(max_size=40),
       port=st.integers(1, 65535),
       host=st.sampled_from(["", "node1", "NODE1", "node1.cluster.example", "node2",
                             "localhost", "10.0.0.1", "169.254.169.254"]),
       submission=st.sampled_from(["n1", "", "n2"]) | st.text(max_size=20),
       state=st.sampled_from(list(JobState)),
       node=st.sampled_from(["node1", "", "node[1-2]", "node1,node2"]))
def test_the_report_checks(token: str, port: int, host: str, submission: str,
                           state: JobState, node: str) -> None:
    """accept() routes only a running job's own report (its token, its submission), to the
    scheduler's one node, whatever host the job names; everything else is refused."""
    backend = ScriptedSlurm()
    poller = Poller(backend, "hpcspawner:hub:")
    ctx = JobContext(backend=backend, poller=poller, save=lambda: None,
                     on_gone=lambda _: None, log=logging.getLogger("fuzz"), name="fuzz")
    job = BatchJob.from_state({"job_id": "1", "backend": "slurm", "submission": "n1",
                               "token_sha256": hashlib.sha256(REAL_TOKEN.encode()).hexdigest(),
                               "tag": f"hpcspawner:hub:{ME}:"}, ctx, ME)
    poller.watch("1", tag=job.tag, starting=True)
    backend.jobs["1"] = JobInfo(job_id="1", state=state, host=node, user=ME,
                                tag=f"hpcspawner:hub:{ME}:")

    async def attempt() -> tuple[str, int] | str:
        try:
            return await accept(job, "", token, Report(port=port, host=host,
                                                       submission=submission))
        except (Forbidden, Refused, NotYet) as exc:
            return type(exc).__name__
        finally:
            poller.stop()

    routed = asyncio.run(attempt())
    REPORT_OUTCOMES["routed" if isinstance(routed, tuple) else str(routed)] += 1
    if isinstance(routed, tuple):
        assert routed == (node, port) == job.address
        assert state is JobState.RUNNING and submission == "n1" and token == REAL_TOKEN
        assert host.split(".")[0].lower() in ("", "node1")
    else:
        assert job.address is None
        if token != REAL_TOKEN:
            assert routed == "Forbidden"


PROFILE_NAME_YAML = "profiles:\n  - name: {name}\n    resources: {{memory: 1GiB, runtime: 1h}}\n"


@MANY
@given(name=st.text(max_size=80))
def test_profile_names(name: str) -> None:
    text = PROFILE_NAME_YAML.format(name=json.dumps(name))
    try:
        profiles = parse_profiles(text, "profiles.yaml")
    except ProfileError as exc:
        assert all(re.match(r"^profiles\.yaml:\d+: ", p) for p in exc.problems), exc.problems
        return
    assert re.match(r"^[a-z0-9][a-z0-9_-]{0,62}$", profiles.profiles[0].name)


@MANY
@given(raw=st.text(max_size=80) | st.sampled_from(["../x.py", "~/a/../../b.py", "/home/al/x.py"]))
def test_dashboard_script_names(raw: str) -> None:
    """A name the user types is a path inside their home with no '..' and no character a
    shell reads, or a refusal in one sentence."""
    try:
        path = check_script_path(raw, "/home/al")
    except ScriptError as exc:
        assert str(exc).endswith(".") and "\n" not in str(exc)
        return
    assert path.startswith("/home/al/") and path.endswith(".py")
    assert ".." not in path.split("/")
    assert re.match(r"^[A-Za-z0-9_./+@%,-]+$", path)


SBATCH_LINE = re.compile(r"^#SBATCH --[a-z-]+(=[A-Za-z0-9_.,:@+%=/-]+)?$")


@MANY
@given(server=st.text(max_size=60), value=st.text(max_size=60))
def test_server_names_and_values_reach_scripts_only_as_data(server: str, value: str) -> None:
    profile = parse_profiles(PROFILES_TEXT).by_name["small"]
    builder = JobBuilder(username=ME, server_name=server, home="/home/x",
                         job_dir="/home/x/.hpcspawner", hub_id="hub", python="/usr/bin/python3",
                         cmd=["/bin/echo", value], env={"JUPYTERHUB_SERVER_NAME": server})
    for backend_name in ("slurm", "htcondor"):
        backend = shared.backend(backend_name)
        try:
            _, script = builder.render(profile, backend, secret_file="/home/x/t.token",
                                       submission="s", fast=False)
        except RenderError as exc:
            assert str(exc)
            continue
        if backend_name == "slurm":
            check_sbatch(script)
        else:
            check_submit_description(script, server)


def check_sbatch(script: str) -> None:
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            assert SBATCH_LINE.match(line), line
    out = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr


def classad_unquote(literal: str) -> str:
    assert literal.startswith('"') and literal.endswith('"'), literal
    return re.sub(r'\\(.)', r"\1", literal[1:-1])


def check_submit_description(text: str, server: str) -> None:
    # condor_submit reads lines split at \n only (not at \x1e and the like)
    lines = [line for line in text.split("\n") if line and not line.startswith("#")]
    assert lines[-1] == "queue"
    for line in lines[:-1]:
        assert re.match(r"^\+?[A-Za-z_]+ = .*$", line), line
        assert "$(" not in line.replace("$(ClusterId)", "")
    server_line = next(line for line in lines if line.startswith("+HPCSpawnerServer = "))
    literal = server_line.split(" = ", 1)[1]
    assert classad_unquote(literal) == server  # a ClassAd string, \\ and " escaped
    assert '"' not in literal[1:-1].replace('\\"', "")


def test_the_fuzzers_reach_both_outcomes(spawner: Any, tmp_path: Path) -> None:
    """A fuzzer that only ever saw refusals would prove nothing: the report fuzzer, run here,
    routes some reports and refuses others for each reason."""
    REPORT_OUTCOMES.clear()
    test_the_report_checks()
    assert REPORT_OUTCOMES["routed"] > 0, REPORT_OUTCOMES
    assert {"Forbidden", "Refused", "NotYet"} <= set(REPORT_OUTCOMES), REPORT_OUTCOMES
    assert spawner.resolve_profile({"profile": "small"}).name == "small"
    with pytest.raises(SpawnException):
        spawner.resolve_profile({"profile": "nope"})
    assert parse_report({"port": 8888}).port == 8888
