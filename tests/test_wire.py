"""Each fact of the hub–job wire is defined once, in hpcspawner/wire.py, and both sides (the
hub: jobspec, apps, report, tokenfile, helper; the job: the launcher) take it from there."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpcspawner import helper, launcher, report, tokenfile, wire
from hpcspawner.jobspec import JobBuilder
from hpcspawner.spawner import HPCSpawner
from tests.conftest import REPO

PACKAGE = REPO / "hpcspawner"
TEMPLATES = REPO / "templates"
NAMES = {value for key, value in vars(wire.Env).items() if key.isupper()}


def string_literals(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings, with their line."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_the_jobs_variable_names_are_written_only_in_wire() -> None:
    assert len(NAMES) >= 13 and all(n.isupper() for n in NAMES)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "wire.py":
            continue
        for line, text in string_literals(path):
            found += [f"{path.relative_to(REPO)}:{line}: {name}" for name in NAMES
                      if re.search(rf"\b{name}\b", text)]
    for path in sorted(TEMPLATES.rglob("*.j2")):
        code = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)  # comments may name them
        found += [f"{path.relative_to(REPO)}: {name}" for name in NAMES
                  if re.search(rf"\b{name}\b", code)]
    assert found == [], "name these through hpcspawner.wire.Env: " + ", ".join(found)


def test_the_hub_and_the_launcher_share_one_set_of_defaults() -> None:
    fields = JobBuilder.__dataclass_fields__
    assert fields["start_timeout"].default == wire.START_TIMEOUT
    assert fields["walltime_warning"].default == wire.WALLTIME_WARNING
    assert HPCSpawner().start_timeout == wire.START_TIMEOUT
    assert HPCSpawner.walltime_warning.default_value == wire.WALLTIME_WARNING
    # the launcher, given no value, takes the same defaults
    assert launcher.START_TIMEOUT is wire.START_TIMEOUT
    assert launcher.WALLTIME_WARNING is wire.WALLTIME_WARNING
    assert launcher.number({}, wire.Env.START_TIMEOUT, wire.START_TIMEOUT, 86400.0) == 3600


@pytest.mark.parametrize("sent", [
    wire.Report(8888, "node01", "gpu", "a1b2", ends=1_800_000_000),
    wire.Report(8888, server_name="", submission="a1b2", ended=True)])
def test_what_the_launcher_posts_is_what_the_hub_reads(sent: wire.Report) -> None:
    body = json.loads(json.dumps(sent.body()))
    assert report.parse_report(body) == sent
    assert set(body) <= wire.REPORT_KEYS


def test_the_token_file_the_hub_writes_is_the_one_the_helper_checks_and_the_launcher_reads(
        tmp_path: Path) -> None:
    text = tokenfile.secrets_text("t0ken-" + "x" * 40, {"SECRET_THING": "42"})
    assert helper.checked_secrets(text)
    path = Path(JobBuilder(username="alice", server_name="gpu", home=str(tmp_path),
                           job_dir=str(tmp_path / wire.JOB_DIR_NAME), hub_id="hub",
                           python="/p", cmd=["x"], env={}).secret_path())
    assert helper.checked_name(path.name) == path.name
    path.parent.mkdir()
    path.write_text(text)
    assert launcher.read_secrets(str(path)) == ("t0ken-" + "x" * 40, {"SECRET_THING": "42"})


def test_the_tag_the_hub_writes_is_the_one_the_helper_and_the_poller_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One parser (wire.parse_tag) for the hub, the poller and the helper; one hub-id rule
    for the hub's setting and the tag (64 characters: helper.py once allowed 128)."""
    tag = wire.job_tag("hub1", "alice", "gpu")
    assert wire.parse_tag(tag) == ("hub1", "alice", "gpu")
    assert wire.tag_user(tag) == "alice"
    assert wire.tag_prefix("hub1") == "hpcspawner:hub1:"
    assert tag.startswith(wire.tag_prefix("hub1"))
    assert wire.parse_tag(wire.worker_tag(tag)) == ("hub1", "alice", "gpu/dask")
    longest = "h" * 64
    assert wire.HUB_ID_RE.fullmatch(longest) and not wire.HUB_ID_RE.fullmatch(longest + "h")
    assert wire.parse_tag(wire.job_tag(longest + "h", "alice", "")) is None
    monkeypatch.setattr(helper, "me", lambda: SimpleNamespace(pw_name="alice"))
    with pytest.raises(helper.Refused, match="is not a hub tag for alice"):
        helper.cancel("slurm", "1", wire.job_tag(longest + "h", "alice", ""))
