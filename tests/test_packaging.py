"""How a site installs hpcspawner (README, "Install at a site"): a wheel built from a checkout.
The wheel alone must carry the package, its templates and both commands."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hpcspawner import __version__
from tests.conftest import REPO

pytestmark = pytest.mark.packaging


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    readme = (REPO / "README.md").read_text()
    assert "python3 -m pip wheel --no-deps -w dist ." in readme, "README's install path moved"
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True)
    [built] = out.glob("hpcspawner-*.whl")
    return built


def test_the_wheel_is_the_checkouts_version_with_templates_and_commands(wheel: Path) -> None:
    assert wheel.name == f"hpcspawner-{__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    for template in ("slurm.sbatch.j2", "htcondor.sub.j2", "form.html.j2"):
        assert f"hpcspawner/templates/{template}" in names
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "hpcspawner = hpcspawner.cli:main" in text
    assert "hpcspawner-helper = hpcspawner.helper:main" in text
    assert "hpcspawner = hpcspawner:HPCSpawner" in text  # JupyterHub's spawner entry point


def test_the_installed_wheel_alone_checks_and_renders(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, text=True)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import hpcspawner, hpcspawner.cli as c; "
        "assert hpcspawner.__file__.startswith(sys.argv[1]), hpcspawner.__file__; "
        "sys.exit(c.main(sys.argv[2:]))"
    )
    profiles = str(REPO / "profiles.yaml")
    check = subprocess.run([sys.executable, "-c", script, str(target), "check", profiles],
                           capture_output=True, text=True, cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    render = subprocess.run([sys.executable, "-c", script, str(target), "render", "--profiles",
                             profiles, "--profile", "small", "--user", "alice"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    assert render.stdout.startswith("#!/bin/bash")
    assert "#SBATCH --export=ALL" in render.stdout
