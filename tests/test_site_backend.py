"""A site's own backend in a package of its own (tests/fixtures/site_backend, installed into the
venv by scripts/setup-machine): found through its entry point by the hub's code and by the
real hpcspawner-helper under sudo, its template taken from its package; a broken or clashing
package is named in one sentence; and a user cannot make the helper load code of hers."""

from __future__ import annotations

import importlib.metadata
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcspawner import backends
from hpcspawner.backends import BackendLoadError, backend_classes
from hpcspawner.cli import main as cli_main
from hpcspawner.profiles import ProfileError, parse_profiles
from hpcspawner.render import package_templates
from tests.conftest import REPO

HELPER = Path(sys.executable).parent / "hpcspawner-helper"  # the venv's, as sudoers names it
TAG = "hpcspawner:hub:alice:"
PROFILES = """profiles:
  - name: site
    backend: sitebatch
    partition: jupyter
    resources: {cores: 2, memory: 3GiB, runtime: 90m}
    extend: {step: 1h, max_runtime: 3h}
"""


@pytest.fixture(scope="module")
def sitebatch() -> type[backends.Backend]:
    """The fixture package, as installed (its absence in CI is a failure, never a skip)."""
    try:
        importlib.metadata.distribution("hpcspawner-sitebatch")
    except importlib.metadata.PackageNotFoundError:
        problem = ("hpcspawner-sitebatch is not installed in this venv: run "
                   "scripts/setup-machine (it installs tests/fixtures/site_backend)")
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return backend_classes()["sitebatch"]


@pytest.fixture
def alice(sitebatch: type[backends.Backend]) -> pwd.struct_passwd:
    """The real helper runs as a real user through sudo: root, alice and the hub's account."""
    try:
        account = pwd.getpwnam("alice")
        pwd.getpwnam("jupyterhub")
    except KeyError:
        account = None
    if os.geteuid() != 0 or account is None or not shutil.which("sudo"):
        problem = "needs root, sudo, alice and jupyterhub: run scripts/setup-machine, cluster-up"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    return account


def as_the_hub(*args: str, env: dict[str, str] | None = None,
               cwd: str = "/") -> subprocess.CompletedProcess[str]:
    """``sudo -n -u alice HELPER ARGS`` as the hub's account runs it (the sudoers file that
    scripts/setup-machine installs), with ``env`` in the hub's own environment."""
    return subprocess.run(
        ["/usr/sbin/runuser", "-u", "jupyterhub", "--", "sudo", "-n", "-u", "alice", "--",
         str(HELPER), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **(env or {})})


def test_the_site_backend_is_found_through_its_entry_point_alone(
        sitebatch: type[backends.Backend]) -> None:
    assert sitebatch.__module__ == "hpcspawner_sitebatch"
    assert "sitebatch" not in backends.builtin_backends()
    [entry] = [e for e in importlib.metadata.entry_points(group=backends.ENTRY_POINT_GROUP)
               if e.name == "sitebatch"]
    assert entry.dist is not None and entry.dist.name == "hpcspawner-sitebatch"
    # hpcspawner names it nowhere: adding it changed no file of the package
    named = [str(p) for p in (REPO / "hpcspawner").rglob("*") if p.is_file()
             and b"sitebatch" in p.read_bytes()]
    assert named == []


def test_its_job_comes_from_the_template_in_its_own_package(
        sitebatch: type[backends.Backend], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert not (package_templates() / "sitebatch.job.j2").exists()
    (tmp_path / "profiles.yaml").write_text(PROFILES)

    def render(*more: str) -> str:
        code = cli_main(["render", "--profiles", str(tmp_path / "profiles.yaml"), "--profile",
                         "site", "--user", "alice", "--hub-id", "hub",
                         "--python", "/opt/hpcspawner/venv/bin/python3", *more])
        out = capsys.readouterr()
        assert code == 0, out.err
        return out.out

    script = render()
    assert "#SBATCH --comment=hpcspawner:hub:alice:\n" in script
    assert "#SBATCH --partition=jupyter\n#SBATCH --nodes=1\n" in script
    assert "#SBATCH --time=90\n" in script and "#SBATCH --mem=3072M\n" in script
    assert "/.hpcspawner/logs/default-sitebatch-%j.log\n" in script
    assert "-m hpcspawner.launcher -- " in script
    # the admin's template_paths still come first, as for the built-in backends
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "sitebatch.job.j2").write_text("#!/bin/sh\n# {{ tag }} site's own\n")
    assert render("--template-dir", str(tmp_path / "mine")) == \
        "#!/bin/sh\n# hpcspawner:hub:alice: site's own\n"


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on the path where a test installs packages that declare backends (a
    dist-info directory each), read afresh."""
    monkeypatch.syspath_prepend(str(tmp_path))
    backends.installed_backends.cache_clear()
    yield tmp_path
    monkeypatch.undo()
    for name in [m for m in sys.modules if m.startswith("site_broken")]:
        del sys.modules[name]
    backends.installed_backends.cache_clear()


def declare(where: Path, package: str, entry: str, module: str = "") -> None:
    info = where / f"{package.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[hpcspawner.backends]\n{entry}\n")
    if module:
        (where / "site_broken.py").write_text(module)


@pytest.mark.parametrize(("entry", "module", "said"), [
    ("slurm = site_broken:Mine", "", "the backend 'slurm' that site-broken 1.0 declares "
     "(hpcspawner.backends: slurm = site_broken:Mine) has the name of hpcspawner's own "
     "backend; name it otherwise in that package's entry points"),
    ("pbs = site_broken:PBSBackend", "import not_installed_anywhere\n",
     "the backend 'pbs' that site-broken 1.0 declares (hpcspawner.backends: pbs = "
     "site_broken:PBSBackend) cannot be loaded (ModuleNotFoundError: No module named "
     "'not_installed_anywhere'); reinstall or uninstall site-broken 1.0"),
    ("pbs = site_broken:PBSBackend", "PBSBackend = 42\n", "is not a subclass of "
     "hpcspawner.backends.Backend"),
    ("pbs = site_broken:PBSBackend", "from hpcspawner.backends import Backend\n"
     "class PBSBackend(Backend):\n    name = 'torque'\n",
     "is a class whose name is 'torque'; the entry point and the class must use the same name"),
])
def test_a_package_whose_backend_cannot_be_used_is_named_in_one_sentence(
        packages: Path, entry: str, module: str, said: str) -> None:
    declare(packages, "site-broken", entry, module)
    with pytest.raises(BackendLoadError) as caught:
        backend_classes()
    assert said in str(caught.value)
    # where the hub meets it first: reading the profiles, at the line of the backend
    with pytest.raises(ProfileError) as problem:
        parse_profiles("profiles:\n  - name: small\n    backend: slurm\n    resources: "
                       "{cores: 1, memory: 1GiB, runtime: 1h}\n")
    assert "profiles.yaml:3" in str(problem.value) and said in str(problem.value)


def test_two_packages_with_a_backend_of_one_name_are_both_named(
        sitebatch: type[backends.Backend], packages: Path) -> None:
    declare(packages, "site-broken", "sitebatch = site_broken:Other", "Other = 1\n")
    with pytest.raises(BackendLoadError, match="uninstall one of the two packages") as caught:
        backend_classes()
    assert "site-broken 1.0" in str(caught.value)
    assert "hpcspawner-sitebatch 0.1.0" in str(caught.value)


def test_the_real_helper_under_sudo_reaches_the_site_backends_own_check(
        alice: pwd.struct_passwd) -> None:
    """What the hub runs to cancel a sitebatch job: the backend's own sentence comes back
    (before the fix: "unknown backend 'sitebatch'")."""
    refused = as_the_hub("cancel", "sitebatch", "not-a-job", TAG)
    assert (refused.returncode, refused.stderr) == (
        2, "hpcspawner-helper: refused: sitebatch: 'not-a-job' is not a job id\n")
    unknown = as_the_hub("cancel", "pbs", "1", TAG)
    assert unknown.returncode == 2 and "unknown backend 'pbs'; say htcondor or sitebatch or " \
        "slurm (a site's own backend is found through its package's entry point in " \
        "hpcspawner.backends" in unknown.stderr


def test_alice_cannot_make_the_helper_load_code_of_hers(alice: pwd.struct_passwd) -> None:
    """Her user site directory (a package declaring a backend, a .pth, usercustomize), the
    hub's working directory and PYTHONPATH in the hub's environment: none reaches the helper
    (sudo's env_reset, a venv without the user site, the script's own directory first); a
    Python that would import from a place she can write is refused."""
    marker = Path(f"/tmp/hpcspawner-alice-code-{secrets.token_hex(6)}")
    code = (f"import sys\nopen({str(marker)!r}, 'a').write(repr(sys.orig_argv) + '\\n')\n"
            "from hpcspawner.backends import Backend\n"
            "class Evil(Backend):\n    name = 'evil'\n")
    home = Path(alice.pw_dir)
    site = home / f".local/lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    plant = home / f"hpcspawner-plant-{secrets.token_hex(4)}"
    made: list[Path] = []
    for directory in (home / ".local", site, plant / "hpcspawner_sitebatch"):
        for path in reversed([directory, *directory.parents]):
            if path.is_relative_to(home) and not path.exists():
                path.mkdir()
                os.chown(path, alice.pw_uid, alice.pw_gid)
                made.append(path)
    files = {site / "alice_evil.py": code, site / "usercustomize.py": code,
             site / "alice-evil.pth": "import alice_evil\n",
             site / "alice_evil-1.0.dist-info" / "METADATA":
                 "Metadata-Version: 2.1\nName: alice-evil\nVersion: 1.0\n",
             site / "alice_evil-1.0.dist-info" / "entry_points.txt":
                 "[hpcspawner.backends]\nevil = alice_evil:Evil\nsitebatch = alice_evil:Evil\n",
             plant / "alice_evil.py": code, plant / "hpcspawner_sitebatch" / "__init__.py": code}
    there = [str(path) for path in files if path.exists()]
    assert there == [], "alice has files of the names this test plants"
    try:
        for path, text in files.items():
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
            os.chown(path, alice.pw_uid, alice.pw_gid)
            os.chown(path.parent, alice.pw_uid, alice.pw_gid)
        hostile = {"PYTHONPATH": str(plant), "PYTHONSTARTUP": str(plant / "alice_evil.py"),
                   "PYTHONUSERBASE": str(home / ".local")}
        unknown = as_the_hub("cancel", "evil", "1", TAG, env=hostile, cwd=str(plant))
        assert "unknown backend 'evil'; say htcondor or sitebatch or slurm" in unknown.stderr
        own = as_the_hub("cancel", "sitebatch", "not-a-job", TAG, env=hostile, cwd=str(plant))
        assert own.stderr == "hpcspawner-helper: refused: sitebatch: 'not-a-job' is not a " \
            "job id\n"
        # the hub's account cannot hand PYTHONPATH over on sudo's command line either
        handed = subprocess.run(
            ["/usr/sbin/runuser", "-u", "jupyterhub", "--", "sudo", "-n", "-u", "alice",
             f"PYTHONPATH={plant}", "--", str(HELPER), "cancel", "evil", "1", TAG],
            capture_output=True, text=True, timeout=60, check=False)
        assert handed.returncode == 1 and "not allowed to set" in handed.stderr
        # a site whose sudo kept PYTHONPATH (here root's, who may set it): refused, fail closed
        kept = subprocess.run(["sudo", "-u", "alice", f"PYTHONPATH={site}", str(HELPER),
                               "cancel", "sitebatch", "1", TAG],
                              capture_output=True, text=True, timeout=60, check=False)
        assert kept.returncode == 2 and f"this Python imports from {site}, which {site} lets " \
            "someone other than root change" in kept.stderr
        said = marker.read_text() if marker.exists() else ""
        # (alice's own processes with the system's Python do read her user site directory)
        assert [line for line in said.splitlines() if str(HELPER) in line] == []
    finally:
        for path in files:
            path.unlink(missing_ok=True)
        shutil.rmtree(site / "alice_evil-1.0.dist-info", ignore_errors=True)
        for path in reversed(made):
            shutil.rmtree(path, ignore_errors=True)
        marker.unlink(missing_ok=True)
