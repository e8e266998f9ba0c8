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
    assert lines[3].startswith("gpu: GPU — 4 cores, 28 GiB, 1 GPU, 1 day — slurm, "
                               "partition jupyter")
    assert lines[4].startswith("desktop: Remote desktop — 2 cores, 8 GiB, 4 h — slurm, "
                               "partition jupyter, app desktop")
    assert lines[6].endswith("app streamlit (the user names the script)")
    assert lines[-1].endswith("7 profiles OK")


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
    assert out.returncode == 0 and "7 profiles OK" in out.stdout


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


FAST_PROFILES = """
profiles:
  - name: quick
    backend: htcondor
    resources: {cores: 1, memory: 1536MiB, runtime: 1h}
    htcondor: {fast_path: {timeout: 30s}}
  - name: big
    backend: htcondor
    resources: {cores: 1, memory: 12GiB, runtime: 1h}
    htcondor: {fast_path: {timeout: 30s}}
"""


def fake_condor_status(tmp_path: Path, output: str) -> str:
    """A condor_status that prints ``output`` for the reserved-slot query (Cpus Memory)."""
    tool = tmp_path / "condor_status"
    tool.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    tool.chmod(0o755)
    return str(tool)


def test_check_warns_when_a_fast_path_profile_cannot_fit_the_reserved_slots(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profiles.yaml").write_text(FAST_PROFILES)
    status = fake_condor_status(tmp_path, "1 1536\\n1 1536\\n")
    assert cli_main(["check", str(tmp_path / "profiles.yaml"), "--condor-status", status]) == 0
    err = capsys.readouterr().err
    assert "profile 'quick'" not in err
    assert (f"warning: {tmp_path / 'profiles.yaml'}:7: profile 'big': it asks 1 core(s) and "
            "12GiB but the reserved notebook slots have 1 and 1536MiB: it could never start "
            "on the fast path") in err


def test_check_says_nothing_of_the_pool_when_condor_status_does_not_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profiles.yaml").write_text(FAST_PROFILES)
    code = cli_main(["check", str(tmp_path / "profiles.yaml"), "--condor-status",
                     str(tmp_path / "no-such-tool")])
    assert code == 0 and capsys.readouterr().err == ""


def test_a_fast_path_slot_size_the_profile_exceeds_is_an_error_with_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "profiles.yaml").write_text(FAST_PROFILES.replace(
        "htcondor: {fast_path: {timeout: 30s}}\n", "htcondor: {fast_path: {timeout: 30s, "
        "slot: {cores: 1, memory: 1536MiB}}}\n"))
    assert cli_main(["check", str(tmp_path / "profiles.yaml")]) == 1
    err = capsys.readouterr().err
    assert "profiles.yaml:7: profile 'big': it asks 1 core(s) and 12GiB but the reserved " in err
    assert "profile 'quick'" not in err


DEMO_CONFIG = REPO / "demo" / "jupyterhub_config.py"


def render_with(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli_main(["render", "--profile", "small", "--user", "alice", *argv]) == 0
    return capsys.readouterr().out


def test_render_with_the_demo_config_prints_what_the_demo_hub_submits(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """The demo's own settings (its profiles, its ten-minute warning, its job Python) are in
    the script; a backend setting a site adds changes the script as it changes the hub's."""
    monkeypatch.delenv("HPCSPAWNER_PROFILES", raising=False)
    plain = render_with(["--profiles", str(REPO / "profiles.yaml")], capsys)
    demo = render_with(["--config", str(DEMO_CONFIG)], capsys)
    assert "export HPCSPAWNER_WALLTIME_WARNING=900" in plain
    assert "export HPCSPAWNER_WALLTIME_WARNING=600" in demo  # c.HPCSpawner.walltime_warning
    assert "#SBATCH --partition=jupyter" in demo and "#SBATCH --export=ALL" in demo
    assert demo.replace("=600", "=900") == plain.replace(
        "-- jupyterhub-singleuser", f"-- {Path(sys.executable).parent}/jupyterhub-singleuser")
    site = tmp_path / "jupyterhub_config.py"
    site.write_text(f"c = get_config()\nload_subconfig({str(DEMO_CONFIG)!r})\n"
                    "c.SlurmBackend.login_environment = True\n"
                    "c.HPCSpawner.hub_id = 'site1'\n")
    changed = render_with(["--config", str(site)], capsys)
    assert "#SBATCH --export=NONE" in changed and "#SBATCH --export=ALL" not in changed
    assert "#SBATCH --comment=hpcspawner:site1:alice:" in changed


def test_check_and_render_say_when_the_config_cannot_be_read(
        tmp_path: Path) -> None:
    broken = tmp_path / "jupyterhub_config.py"
    broken.write_text("c = get_config()\nc.HPCSpawner.walltime_warning = (\n")
    for command in (["check"], ["render", "--profile", "small", "--user", "alice"]):
        out = subprocess.run([*CLI, *command, "--config", str(broken)], capture_output=True,
                             text=True)
        assert out.returncode == 1
        assert f"{broken}: cannot be loaded (SyntaxError" in out.stderr, out.stderr
    out = subprocess.run([*CLI, "check", "--config", str(tmp_path / "nope.py")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "nope.py: no such configuration file" in out.stderr


def test_check_with_a_config_reads_the_profiles_it_names(tmp_path: Path) -> None:
    (tmp_path / "site-profiles.yaml").write_text(EXAMPLE_PROFILES)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()\nc.HPCSpawner.profiles_path = 'site-profiles.yaml'\n")
    out = subprocess.run([*CLI, "check", "--config", str(config)], capture_output=True,
                         text=True)  # (here: ./profiles.yaml would be the repository's)
    assert out.returncode == 0, out.stderr
    assert f"{tmp_path / 'site-profiles.yaml'}: 7 profiles OK" in out.stdout


# what the import of `req_options = '-c 2 --mem=24G --gres=gpu:1'` wrote before (word by
# word), and options a hand-written file gets wrong: each said at its line
SPLIT_OPTIONS = """\
defaults:
  extra_options: [--partition=batch]
profiles:
  - name: gpu
    partition: jupyter
    resources: {cores: 1, memory: 2GiB, runtime: 2h}
    extra_options:
      - -c
      - '2'
      - --mem=24G
      - --gres=gpu:1
      - --cpus-per-task=1
      - --qos long
      - --comment=mine
  - name: plain
    resources: {cores: 1, memory: 2GiB, runtime: 2h}
"""


def test_check_warns_at_their_lines_about_extra_options_that_are_no_unit_or_a_resource(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(SPLIT_OPTIONS)
    assert cli_main(["check", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    gpu = f"warning: {path}:{{}}: profile 'gpu': extra_options"
    assert err == [
        gpu.format(8) + "[0] '-c' has no value: with extra_options[1] '2' it is one option, "
        "--cpus-per-task=2: write that as one entry",
        gpu.format(8) + "[0] '-c' overrides resources.cores (1) with 2: sbatch takes the "
        "last, but the form, the caps and the server's CPU_LIMIT and MEM_LIMIT read the "
        "profile's resources: set resources.cores: 2 and drop the option",
        gpu.format(10) + "[2] '--mem=24G' overrides resources.memory (2GiB) with 24GiB: sbatch "
        "takes the last, but the form, the caps and the server's CPU_LIMIT and MEM_LIMIT read "
        "the profile's resources: set resources.memory: 24GiB and drop the option",
        gpu.format(11) + "[3] '--gres=gpu:1' overrides resources.gpus (0) with 1: sbatch takes "
        "the last, but the form, the caps and the server's CPU_LIMIT and MEM_LIMIT read the "
        "profile's resources: set resources.gpus: 1 and drop the option",
        gpu.format(12) + "[4] '--cpus-per-task=1' repeats resources.cores: drop it",
        gpu.format(13) + "[5] '--qos long' cannot be one #SBATCH value of the job script "
        "(letters, digits and _.,:@+%=/- only): write --qos=long",
        gpu.format(14) + "[6] '--comment=mine' overrides what hpcspawner's job script writes "
        "itself: the job's comment is hpcspawner's tag, which ties the job to its server; "
        "drop it",
        # inherited from defaults: said at the defaults' line
        f"warning: {path}:2: profile 'plain': extra_options[0] '--partition=batch' overrides "
        "partition (none) with batch: sbatch takes the last, but the spawn page's "
        "availability and extend read the profile's partition: set partition: batch and "
        "drop the option",
    ]


def test_check_has_nothing_to_say_of_extra_options_that_are_units_of_their_own(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(EXAMPLE_PROFILES.replace(
        "      runtime: 12h\n",
        "      runtime: 12h\n    extra_options: [--qos=interactive, --exclusive, "
        "--gres=tmpfs:10G, --account=physics]\n", 1))
    assert cli_main(["check", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_import_prints_its_notes_and_says_why_when_it_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()  # noqa\nc.ProfilesSpawner.profiles = [\n"
                      "    ('Here', 'local', 'jupyterhub.spawner.LocalProcessSpawner', {}),\n"
                      "]\n")
    assert cli_main(["import", str(config), "-o", str(tmp_path / "p.yaml")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("note: jupyterhub_config.py:3: profile 'local' (Here): not "
                             "carried over")
    assert err[-1] == ("hpcspawner import: nothing to import: none of the 1 profile(s) runs "
                       "on SLURM or HTCondor (the notes say why each was left); nothing "
                       "written (1 note(s) above)")
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="the refusal is root's")
@pytest.mark.parametrize("command", [["check", "--config"], ["render", "--profile", "small",
                                                              "--user", "alice", "--config"],
                                     ["import"]])
def test_root_refuses_a_config_another_account_can_write(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    """Loading a jupyterhub_config.py runs its Python: as root, not one that bob (or a group,
    or anyone) could have changed, nor one in a directory they can write."""
    import os

    ran = tmp_path / "ran"
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(f"open({str(ran)!r}, 'w').write('x')\n")
    config.chmod(0o644)
    tmp_path.chmod(0o755)
    os.chown(config, 65534, 65534)  # nobody's
    assert cli_main([*command, str(config)]) == 1
    said = capsys.readouterr().err
    assert f"{config}: refusing to run it as root" in said and "uid 65534" in said
    assert not ran.exists()
    os.chown(config, 0, 0)
    config.chmod(0o666)
    assert cli_main([*command, str(config)]) == 1
    assert "is writable by its group or by others (-rw-rw-rw-)" in capsys.readouterr().err
    config.chmod(0o644)
    tmp_path.chmod(0o777)
    assert cli_main([*command, str(config)]) == 1
    assert f"{tmp_path} is writable by its group" in capsys.readouterr().err
    assert not ran.exists()
    tmp_path.chmod(0o755)
    cli_main([*command, str(config)])  # root's file in root's directories: loaded
    assert ran.exists()
