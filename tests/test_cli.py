from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpcspawner.cli import main as cli_main
from tests.conftest import EXAMPLE_PROFILES, REPO

CLI = [sys.executable, "-m", "hpcspawner.cli"]


def test_check_example_profiles_prints_one_line_each() -> None:
    out = subprocess.run([*CLI, "check", str(REPO / "profiles.yaml")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("small: Small — 1 core, 12 GiB, 12 h — slurm, partition jupyter")
    assert lines[1].startswith("medium: ") and lines[2].startswith("large: ")
    assert lines[-1].endswith("3 profiles OK")


def test_check_with_a_typod_unit_exits_1_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(EXAMPLE_PROFILES.replace("memory: 20GiB", "memory: 20 GB"))
    out = subprocess.run([*CLI, "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 1
    line = EXAMPLE_PROFILES.splitlines().index("      memory: 20GiB") + 1
    assert f"{path}:{line}: profile 'medium': field 'resources.memory'" in out.stderr
    assert "write 20GiB" in out.stderr


def test_check_defaults_to_profiles_yaml_in_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "profiles.yaml").write_text(EXAMPLE_PROFILES)
    out = subprocess.run([*CLI, "check"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "3 profiles OK" in out.stdout


def test_render_unknown_profile_lists_the_valid_ones() -> None:
    out = subprocess.run([*CLI, "render", "--profiles", str(REPO / "profiles.yaml"),
                          "--profile", "huge", "--user", "alice"], capture_output=True, text=True)
    assert out.returncode == 1
    assert "unknown profile 'huge'; choose one of: small, medium, large" in out.stderr


def test_the_documented_sudoers_file_is_what_the_command_prints(
        capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "docs/install.md").read_text()
    marker = text.index("<!-- sudoers-example: hpcspawner ")
    command = text[marker:text.index(" -->", marker)].split("hpcspawner ", 1)[1].split()
    block = text[text.index("```\n", marker) + 4:]
    documented = block[:block.index("```")]
    assert cli_main(command) == 0
    printed = capsys.readouterr().out
    assert printed == documented
    rules = [line for line in printed.splitlines() if line and not line.startswith("#")]
    allowed = rules[0].split("=", 1)[1]
    for word in ("/bin/sh", "bash", "/rm", "install", "ALL,", "cat"):
        assert word not in allowed
    assert rules[-1] == "jupyterhub ALL=(%jupyterusers) NOPASSWD: HPCSPAWNER_CMDS"


def test_sudoers_refuses_a_command_that_is_not_an_absolute_path(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["sudoers", "--submit", "sbatch"]) == 1
    assert "absolute path" in capsys.readouterr().err
