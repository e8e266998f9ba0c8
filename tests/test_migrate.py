"""`hpcspawner import` (docs/migrating.md) on three real-world style batchspawner configs: a
wrapspawner ProfilesSpawner list with SlurmSpawner and CondorSpawner entries, req_* settings
alone, and a user-options form. The profiles it writes pass `hpcspawner check`, and each
SLURM profile's job asks SLURM for what batchspawner's own default script (rendered by
batchspawner itself) asked for; what it could not carry over is said, with why."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from batchspawner import SlurmSpawner, format_template
from traitlets.config.loader import PyFileConfigLoader

from hpcspawner.cli import main

CONFIGS = Path(__file__).parent / "fixtures" / "batchspawner"
UNITS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}


def sbatch_resources(script: str) -> dict[str, Any]:
    """What a job script asks SLURM for, in numbers: partition, cores, MiB, seconds, GPUs,
    and any other option (sbatch's own rules: --mem in MiB unless K/M/G/T)."""
    out: dict[str, Any] = {"other": set()}
    options = [word for line in re.findall(r"^#SBATCH (.+)$", script, re.M)
               for word in shlex.split(line)]  # sbatch reads every word of the line
    for option in options:
        name, _, value = option.partition("=")
        if name == "--partition":
            out["partition"] = value
        elif name == "--cpus-per-task":
            out["cores"] = int(value)
        elif name == "--mem":
            number, unit = re.fullmatch(r"(\d+)([KMGT]?)", value.upper()).groups()  # type: ignore[union-attr]
            out["mib"] = int(number) * UNITS[unit]
        elif name == "--time":
            days, _, clock = value.rpartition("-")
            h, m, s = (int(x) for x in clock.split(":"))
            out["seconds"] = int(days or 0) * 86400 + h * 3600 + m * 60 + s
        elif name in ("--gres", "--gpus"):
            *model, count = value.removeprefix("gpu:").split(":")
            out["gpus"] = (model[0] if model else None, int(count))
        elif name in ("--reservation", "--exclusive", "--constraint", "--qos", "--account"):
            out["other"].add(option)
    return out


def batchspawner_script(settings: dict[str, Any]) -> str:
    """The job script batchspawner's SlurmSpawner renders from these req_* settings."""
    template = SlurmSpawner.class_traits()["batch_script"].default_value
    subvars = {name[4:]: value for name, value in settings.items() if name.startswith("req_")}
    return str(format_template(template, **{
        "homedir": "/home/alice", "keepvars": "PATH", "cmd": "jupyterhub-singleuser",
        "srun": "", "prologue": "", "epilogue": "", "options": "", "reservation": "",
        "gres": "", **subvars}))


def site_settings(config_file: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """(key, class, req_* settings as batchspawner merges them) of each SLURM entry."""
    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    base = {**config.BatchSpawnerBase, **config.SlurmSpawner}
    entries = config.ProfilesSpawner.profiles if "ProfilesSpawner" in config else [
        ("", "default", "SlurmSpawner", {})]
    return [(key, cls.rsplit(".", 1)[-1], {**base, **own}) for _, key, cls, own in entries]


def imported(config_file: Path, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path / "profiles.yaml"
    assert main(["import", str(config_file), "-o", str(out)]) == 0
    notes = capsys.readouterr().err
    assert main(["check", str(out)]) == 0, capsys.readouterr()
    capsys.readouterr()
    return out, {p["name"]: p for p in yaml.safe_load(out.read_text())["profiles"]}, notes


def our_script(profiles: Path, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["render", "--profiles", str(profiles), "--profile", name, "--user",
                 "alice", "--home", "/home/alice"]) == 0
    return capsys.readouterr().out


def test_a_profiles_spawner_list_becomes_profiles_with_the_same_slurm_requests(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = CONFIGS / "profiles_spawner.py"
    path, profiles, notes = imported(config, tmp_path, capsys)
    assert list(profiles) == ["small", "large", "gpu", "condor"]  # the local one left out
    compared = 0
    for key, cls, settings in site_settings(config):
        if cls != "SlurmSpawner":
            continue
        theirs = sbatch_resources(batchspawner_script(settings))
        ours = sbatch_resources(our_script(path, key, capsys))
        assert {k: ours.get(k) for k in theirs} == theirs, key
        compared += 1
    assert compared == 3
    assert profiles["gpu"]["resources"]["gpus"] == 1
    condor = profiles["condor"]
    assert (condor["backend"], condor["resources"]["memory"]) == ("htcondor", "2GiB")
    assert condor["extra_options"] == ['+AccountingGroup = "jupyter"']
    # said, with why: the local spawner, the prologue, Condor's missing runtime, the account
    assert "LocalProcessSpawner is not a SLURM or HTCondor batchspawner class" in notes
    assert "req_prologue not carried over: the launcher starts the server" in notes
    assert "CondorSpawner's job had no runtime limit; a profile needs one: set to 8h" in notes
    assert 'add extra_options: ["--account=hpc-users"]' in notes


def test_req_settings_alone_become_one_profile_with_the_same_slurm_requests(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = CONFIGS / "req_settings.py"
    path, profiles, notes = imported(config, tmp_path, capsys)
    [(key, _, settings)] = site_settings(config)
    assert list(profiles) == [key]
    theirs = sbatch_resources(batchspawner_script(settings))
    assert sbatch_resources(our_script(path, key, capsys)) == {
        **theirs, "other": theirs["other"]}
    assert theirs["other"] == {"--reservation=jupyter-days"} and "gpus" not in theirs
    assert "req_ngpus not carried over: batchspawner's default SLURM script never passed " \
        "it" in notes
    assert "exec_prefix not carried over" in notes


def test_an_options_form_becomes_choices_and_a_profile_per_partition(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = CONFIGS / "options_form.py"
    path, profiles, notes = imported(config, tmp_path, capsys)
    assert list(profiles) == ["default-short", "default-long"]
    short = profiles["default-short"]
    assert short["choices"] == {"cores": {"min": 1, "max": 8},
                                "runtime": {"choices": ["1h", "4h", "12h"]}}
    # what a user who kept the form's defaults got from batchspawner, she gets by default
    for name, partition in (("default-short", "short"), ("default-long", "long")):
        theirs = sbatch_resources(batchspawner_script({
            "req_memory": "8G", "req_partition": partition, "req_runtime": "01:00:00",
            "req_nprocs": "2"}))
        assert {k: v for k, v in sbatch_resources(our_script(path, name, capsys)).items()
                if k in theirs} == theirs
    assert "the options form became choices of req_nprocs, req_runtime and one profile " \
        "per partition" in notes


def test_a_config_without_batch_profiles_says_so(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()  # noqa\nc.JupyterHub.spawner_class = 'simple'\n")
    assert main(["import", str(config)]) == 1
    assert "found neither wrapspawner's ProfilesSpawner.profiles nor" in \
        capsys.readouterr().err
