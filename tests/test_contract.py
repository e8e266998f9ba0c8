"""Each fact of the hub–job contract is defined once, in hpcspawner/contract.py, and both sides (the
hub: job_builder, apps, report, tokenfile, helper; the job: the launcher) take it from there."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpcspawner import contract, helper, launcher, report, tokenfile
from hpcspawner.job_builder import JobBuilder
from hpcspawner.spawner import HPCSpawner
from tests.conftest import REPO

PACKAGE = REPO / "hpcspawner"
TEMPLATES = REPO / "templates"
NAMES = {value for key, value in vars(contract.Env).items() if key.isupper()}


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
        if path.name == "contract.py":
            continue
        for line, text in string_literals(path):
            found += [f"{path.relative_to(REPO)}:{line}: {name}" for name in NAMES
                      if re.search(rf"\b{name}\b", text)]
    for path in sorted(TEMPLATES.rglob("*.j2")):
        code = re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S)  # comments may name them
        found += [f"{path.relative_to(REPO)}: {name}" for name in NAMES
                  if re.search(rf"\b{name}\b", code)]
    assert found == [], "name these through hpcspawner.contract.Env: " + ", ".join(found)


def test_the_hub_and_the_launcher_share_one_set_of_defaults() -> None:
    fields = JobBuilder.__dataclass_fields__
    assert fields["start_timeout"].default == contract.START_TIMEOUT
    assert fields["walltime_warning"].default == contract.WALLTIME_WARNING
    assert HPCSpawner().start_timeout == contract.START_TIMEOUT
    assert HPCSpawner.walltime_warning.default_value == contract.WALLTIME_WARNING
    # the launcher, given no value, takes the same defaults
    assert launcher.START_TIMEOUT is contract.START_TIMEOUT
    assert launcher.WALLTIME_WARNING is contract.WALLTIME_WARNING
    assert launcher.number({}, contract.Env.START_TIMEOUT, contract.START_TIMEOUT, 86400.0) == 3600


@pytest.mark.parametrize("sent", [
    contract.Report(8888, "node01", "gpu", "a1b2", ends=1_800_000_000),
    contract.Report(8888, server_name="", submission="a1b2", ended=True)])
def test_what_the_launcher_posts_is_what_the_hub_reads(sent: contract.Report) -> None:
    body = json.loads(json.dumps(sent.body()))
    assert report.parse_report(body) == sent
    assert set(body) <= contract.REPORT_KEYS


def test_the_token_file_the_hub_writes_is_the_one_the_helper_checks_and_the_launcher_reads(
        tmp_path: Path) -> None:
    text = tokenfile.secrets_text("t0ken-" + "x" * 40, {"SECRET_THING": "42"})
    assert helper.checked_secrets(text)
    path = Path(JobBuilder(username="alice", server_name="gpu", home=str(tmp_path),
                           job_dir=str(tmp_path / contract.JOB_DIR_NAME), hub_id="hub",
                           python="/p", cmd=["x"], env={}).secret_path())
    assert helper.checked_name(path.name) == path.name
    path.parent.mkdir()
    path.write_text(text)
    assert launcher.read_secrets(str(path)) == ("t0ken-" + "x" * 40, {"SECRET_THING": "42"})


def test_the_tag_the_hub_writes_is_the_one_the_helper_and_the_poller_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One parser (contract.parse_tag) for the hub, the poller and the helper; one hub-id rule
    for the hub's setting and the tag (64 characters: helper.py once allowed 128)."""
    tag = contract.job_tag("hub1", "alice", "gpu")
    assert contract.parse_tag(tag) == ("hub1", "alice", "gpu")
    assert contract.tag_user(tag) == "alice"
    assert contract.tag_prefix("hub1") == "hpcspawner:hub1:"
    assert tag.startswith(contract.tag_prefix("hub1"))
    assert contract.parse_tag(contract.worker_tag(tag)) == ("hub1", "alice", "gpu/dask")
    longest = "h" * 64
    assert contract.HUB_ID_RE.fullmatch(longest) and not contract.HUB_ID_RE.fullmatch(longest + "h")
    assert contract.parse_tag(contract.job_tag(longest + "h", "alice", "")) is None
    monkeypatch.setattr(helper, "me", lambda: SimpleNamespace(pw_name="alice"))
    with pytest.raises(helper.Refused, match="is not a hub tag for alice"):
        helper.cancel("slurm", "1", contract.job_tag(longest + "h", "alice", ""))
