"""`hpcspawner import` (docs/migrating.md) on batchspawner + wrapspawner configurations of the
shapes real sites write (tests/fixtures/batchspawner/, our own): profile lists, req_* alone,
an options form, options with values, resources inside options, a site's own GPU script,
subclasses with class defaults, an all-Torque list, a key used twice, culling and per-profile
landing pages, a partition list. The profiles it writes pass `hpcspawner check` without a
warning, and each SLURM profile's job asks SLURM for what batchspawner itself (its classes,
its templates, the site's script) asked for, options included; what it could not carry over
is said at its line, once."""

from __future__ import annotations

import asyncio
import getopt
import re
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader
from traitlets.utils.importstring import import_item

from hpcspawner.cli import main

CONFIGS = Path(__file__).parent / "fixtures" / "batchspawner"
UNITS = {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}
# sbatch's options as its getopt reads them (SLURM 22.05 `sbatch --help`), to read a script
# the way sbatch does, independently of hpcspawner's own reading
SHORT = "a:A:b:c:C:d:D:e:F:G:i:J:L:M:m:n:N:o:p:q:S:t:w:x:HkOQsvWhV"
LONG_NAMES = {"a": "array", "A": "account", "b": "begin", "c": "cpus-per-task",
              "C": "constraint", "d": "dependency", "D": "chdir", "e": "error", "G": "gpus",
              "J": "job-name", "n": "ntasks", "N": "nodes", "o": "output", "p": "partition",
              "q": "qos", "t": "time", "w": "nodelist", "x": "exclude", "s": "oversubscribe"}
LONG = ["account=", "array=", "begin=", "cpus-per-task=", "constraint=", "dependency=",
        "chdir=", "error=", "gpus=", "job-name=", "ntasks=", "nodes=", "output=", "partition=",
        "qos=", "time=", "nodelist=", "exclude=", "mem=", "mem-per-cpu=", "gres=",
        "reservation=", "comment=", "signal=", "nice=", "export=", "get-user-env=",
        "exclusive", "no-requeue", "ntasks-per-node=", "clusters="]
# what each script writes for its own running, not as the profile's request
NOT_ASKED = {"job-name", "output", "error", "chdir", "export", "get-user-env", "comment",
             "no-requeue"}


def sbatch_request(script: str) -> dict[str, Any]:
    """What a job script asks SLURM for, read as sbatch reads it (every word of every
    #SBATCH line, the last of two values wins): partition, cores, MiB, seconds, GPUs, and
    every other option (``--name=value``); words that are no option are ``stray``."""
    words = [word for line in re.findall(r"^#SBATCH (.+)$", script, re.M)
             for word in shlex.split(line)]
    options, stray = getopt.gnu_getopt(words, SHORT, LONG)
    asked: dict[str, str] = {}
    other: dict[str, str] = {}
    for option, value in options:
        name = option[2:] if option.startswith("--") else LONG_NAMES[option[1]]
        if name in NOT_ASKED or (name == "nodes" and value == "1"):
            continue
        if name in ("mem", "mem-per-cpu"):
            asked.pop("mem", None), asked.pop("mem-per-cpu", None)
        if name in ("partition", "cpus-per-task", "ntasks", "mem", "mem-per-cpu", "time",
                    "gres", "gpus"):
            asked[name] = value
        else:
            other[name] = f"--{name}" + (f"={value}" if value else "")
    cores = int(asked.get("cpus-per-task", 1)) * int(asked.get("ntasks", 1))
    out: dict[str, Any] = {"partition": asked.get("partition"), "cores": cores,
                           "other": set(other.values()), "stray": stray}
    for name in ("mem", "mem-per-cpu"):
        if name in asked:
            number, unit = re.fullmatch(r"(\d+)([KMGT]?)", asked[name].upper()).groups()  # type: ignore[union-attr]
            out["mib"] = int(number) * UNITS[unit] * (cores if name == "mem-per-cpu" else 1)
    if "time" in asked:
        days, _, clock = asked["time"].rpartition("-")
        h, m, s = (int(x) for x in clock.split(":"))
        out["seconds"] = int(days or 0) * 86400 + h * 3600 + m * 60 + s
    for name in ("gres", "gpus"):
        if name in asked:
            *model, count = asked[name].removeprefix("gpu:").removeprefix("gpu").split(":")
            out["gpus"] = (model[0] if model else None, int(count or 1))
    return out


def batchspawner_scripts(config_file: Path) -> dict[str, str]:
    """By profile key, the job script batchspawner itself renders for each SLURM entry: the
    entry's class (with its class defaults), built as wrapspawner builds it from the loaded
    configuration and the entry's own settings (the first entry of a key: wrapspawner's)."""
    config = PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()
    if "ProfilesSpawner" in config:
        entries = [(key, cls, own) for _, key, cls, own in config.ProfilesSpawner.profiles]
    else:
        entries = [("default", config.JupyterHub.spawner_class, {})]
    scripts: dict[str, str] = {}
    for key, cls, own in entries:
        spawner_class = import_item(cls) if isinstance(cls, str) else cls
        if key in scripts or "SlurmSpawner" not in [c.__name__ for c in spawner_class.mro()]:
            continue
        spawner = spawner_class(user=SimpleNamespace(name="alice", url="/user/alice/"),
                                config=config, **{"req_keepvars": "PATH",
                                                  "req_homedir": "/home/alice",
                                                  "req_username": "alice", **own})
        subvars = {**spawner.get_req_subvars(), "cmd": "jupyterhub-singleuser"}
        scripts[key] = asyncio.run(spawner._get_batch_script(**subvars))
    return scripts


def imported(config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
             ) -> tuple[Path, dict[str, Any], str]:
    """Import, then `hpcspawner check` the file: no error, no warning."""
    out = tmp_path / "profiles.yaml"
    assert main(["import", str(config_file), "-o", str(out)]) == 0, capsys.readouterr().err
    notes = capsys.readouterr().err
    assert main(["check", str(out)]) == 0, capsys.readouterr()
    assert capsys.readouterr().err == ""  # check has nothing to warn about
    return out, {p["name"]: p for p in yaml.safe_load(out.read_text())["profiles"]}, notes


def our_script(profiles: Path, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["render", "--profiles", str(profiles), "--profile", name, "--user",
                 "alice", "--home", "/home/alice"]) == 0
    return capsys.readouterr().out


def same_request(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Ours asks what theirs asked; where theirs asked no memory or time (the partition's
    default), ours asks the import's stated default."""
    assert ours["stray"] == [] and theirs["stray"] == []
    assert {k: ours.get(k) for k in theirs if k != "stray"} == \
        {k: v for k, v in theirs.items() if k != "stray"}
    assert ours.get("gpus") == theirs.get("gpus")


SLURM_CONFIGS = ["profiles_spawner.py", "req_settings.py", "options_values.py",
                 "options_resources.py", "gpu_script.py", "slurm_subclass.py",
                 "duplicate_key.py", "culling_urls.py", "multi_partition.py"]


@pytest.mark.filterwarnings("ignore:Passing unrecognized arguments")  # (as in wrapspawner)
@pytest.mark.parametrize("name", SLURM_CONFIGS)
def test_every_imported_slurm_profile_asks_slurm_what_batchspawner_asked(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, profiles, _ = imported(CONFIGS / name, tmp_path, capsys)
    scripts = batchspawner_scripts(CONFIGS / name)
    assert scripts and set(scripts) <= set(profiles)
    for key, script in scripts.items():
        same_request(sbatch_request(our_script(path, key, capsys)), sbatch_request(script))


def test_a_profiles_spawner_list_becomes_profiles_and_says_what_it_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, profiles, notes = imported(CONFIGS / "profiles_spawner.py", tmp_path, capsys)
    assert list(profiles) == ["small", "large", "gpu", "condor"]  # the local one left out
    assert profiles["gpu"]["resources"]["gpus"] == 1
    assert profiles["large"]["extra_options"] == ["--exclusive", "--signal=B:USR1@300"]
    condor = profiles["condor"]
    assert (condor["backend"], condor["resources"]["memory"]) == ("htcondor", "2GiB")
    assert condor["extra_options"] == ['+AccountingGroup = "jupyter"']
    # said once each, at the line that set it, naming the profiles it concerns
    assert "note: profiles_spawner.py:8: c.BatchSpawnerBase.req_prologue (4 profiles: small, " \
        "large, gpu, condor): not carried over: the launcher starts the server" in notes
    assert "profiles_spawner.py:22: profile 'local' (On the hub host): not carried over: " \
        "jupyterhub.spawner.LocalProcessSpawner is no batchspawner SLURM or HTCondor " \
        "spawner" in notes
    assert "runtime (profile condor): CondorSpawner's job had no runtime limit; a profile " \
        "needs one: set to 8h" in notes
    assert 'c.SlurmSpawner.req_account (3 profiles: small, large, gpu): batchspawner\'s ' \
        'default SLURM script never passed it; to pass it, add extra_options: ' \
        '["--account=hpc-users"]' in notes
    assert "'--get-user-env=L' left out" in notes and "login_environment = True" in notes


def test_req_settings_alone_become_one_profile(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, profiles, notes = imported(CONFIGS / "req_settings.py", tmp_path, capsys)
    assert list(profiles) == ["default"]
    assert profiles["default"]["extra_options"] == ["--reservation=jupyter-days"]
    assert "gpus" not in profiles["default"]["resources"]  # the default script passed none
    assert "req_settings.py:9: c.SlurmSpawner.req_ngpus (profile default): batchspawner's " \
        "default SLURM script never passed it (the jobs had no GPU); to give the profile " \
        "GPUs, set resources.gpus: 1" in notes
    assert "c.SlurmSpawner.exec_prefix (profile default): not carried over" in notes


def test_an_options_form_becomes_choices_and_a_profile_per_partition(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, profiles, notes = imported(CONFIGS / "options_form.py", tmp_path, capsys)
    assert list(profiles) == ["default-jupyter", "default-batch"]
    assert profiles["default-jupyter"]["choices"] == {
        "cores": {"min": 1, "max": 8}, "runtime": {"choices": ["1h", "4h", "12h"]}}
    # what a user who kept the form's defaults got from batchspawner, she gets by default
    for name, partition in (("default-jupyter", "jupyter"), ("default-batch", "batch")):
        theirs = f"#SBATCH --partition={partition}\n#SBATCH --time=01:00:00\n" \
            "#SBATCH --mem=8G\n#SBATCH --cpus-per-task=2\n"
        same_request(sbatch_request(our_script(path, name, capsys)), sbatch_request(theirs))
    assert "options_form (profile default): became choices of req_nprocs, req_runtime and " \
        "one profile per partition" in notes


def test_options_with_values_stay_one_option_each(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--qos teaching -A physics101` are two options with their values, not four words."""
    path, profiles, notes = imported(CONFIGS / "options_values.py", tmp_path, capsys)
    assert profiles["teaching"]["extra_options"] == [
        "--qos=teaching", "--account=physics101", "--exclusive"]
    assert profiles["research"]["extra_options"] == [
        "--qos=normal", "--signal=B:USR1@120", "--nice=10"]
    script = our_script(path, "teaching", capsys)
    assert "#SBATCH --qos=teaching\n#SBATCH --account=physics101\n#SBATCH --exclusive\n" in script
    assert "options_values.py:11: req_options (profile research): '-J analysis' left out: " \
        "hpcspawner names every job c.SlurmBackend.job_name" in notes


def test_resources_inside_options_become_the_profiles_resources(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-c 2 --mem=24G --gres=gpu:1 is 2 cores, 24 GiB and a GPU: in resources, where the form,
    the caps and the server's CPU_LIMIT/MEM_LIMIT read them."""
    path, profiles, notes = imported(CONFIGS / "options_resources.py", tmp_path, capsys)
    small = profiles["gpu-small"]
    assert small["resources"] == {"cores": 2, "memory": "24GiB", "runtime": "2h", "gpus": 1}
    assert "extra_options" not in small and small["partition"] == "jupyter"
    long = profiles["long"]
    assert (long["partition"], long["resources"]) == (
        "batch", {"cores": 4, "memory": "8GiB", "runtime": "1d"})
    assert profiles["gpu-pair"]["resources"] == {
        "cores": 1, "memory": "16GiB", "runtime": "2h", "gpus": 2, "gpu_model": "a100"}
    script = our_script(path, "gpu-small", capsys)
    assert "export CPU_LIMIT=2\n" in script and f"export MEM_LIMIT={24 * 2**30}\n" in script
    assert "asked for none" not in notes and "no req_memory" not in notes
    assert "options_resources.py:10: req_options (profile gpu-small): '-c 2' overrides " \
        "'--cpus-per-task=1' (req_nprocs): sbatch takes the last; it is resources.cores" in notes
    assert "'-p batch' overrides '--partition=jupyter' (req_partition)" in notes


def test_gpus_a_sites_own_script_asks_for_are_the_profiles_gpus(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, profiles, notes = imported(CONFIGS / "gpu_script.py", tmp_path, capsys)
    assert profiles["gpu1"]["resources"] == {"cores": 8, "memory": "64GiB", "runtime": "8h",
                                             "gpus": 1}
    assert profiles["gpu2"]["resources"]["gpus"] == 2
    assert "#SBATCH --gpus=2\n" in our_script(path, "gpu2", capsys)
    assert "extra_options" not in notes
    assert "gpu_script.py:5: c.SlurmSpawner.batch_script (2 profiles: gpu1, gpu2): its " \
        "commands (module load cuda/12.2) are not carried over" in notes
    assert "gpu_script.py:23: req_account (profile gpu2): not carried over: the job script " \
        "never used it" in notes


def test_a_subclass_is_read_with_its_own_class_defaults(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, profiles, _ = imported(CONFIGS / "condor_subclass.py", tmp_path, capsys)
    [profile] = profiles.values()
    assert (profile["backend"], profile["display_name"]) == (
        "htcondor", "HTCondorNotebookSpawner (imported)")
    assert profile["resources"] == {"cores": 2, "memory": "4GiB", "runtime": "8h"}
    assert profile["extra_options"] == ['+AccountingGroup = "group_jupyter"']
    _, profiles, _ = imported(CONFIGS / "slurm_subclass.py", tmp_path, capsys)
    assert profiles["site-default"]["partition"] == "batch"
    assert profiles["site-default"]["resources"] == {"cores": 1, "memory": "8GiB",
                                                     "runtime": "6h"}
    assert profiles["site-big"]["resources"] == {"cores": 4, "memory": "32GiB",
                                                 "runtime": "6h"}


def test_a_spawner_class_that_is_not_batchspawners_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()  # noqa\n"
                      "c.JupyterHub.spawner_class = 'site_spawners.NotebookSpawner'\n")
    assert main(["import", str(config)]) == 1
    err = capsys.readouterr().err
    assert "c.JupyterHub.spawner_class is 'site_spawners.NotebookSpawner' " \
        "(jupyterhub_config.py:2): site_spawners.NotebookSpawner cannot be imported here " \
        "(ModuleNotFoundError" in err and "nothing to import" in err
    config.write_text("c = get_config()  # noqa\nc.JupyterHub.spawner_class = 'simple'\n")
    assert main(["import", str(config)]) == 1
    assert "'simple' (jupyterhub_config.py:2): simple is no batchspawner SLURM or HTCondor " \
        "spawner" in capsys.readouterr().err


def test_a_list_of_nothing_importable_says_why_for_each_and_writes_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profiles.yaml"
    assert main(["import", str(CONFIGS / "torque_profiles.py"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert not out.exists()
    assert "torque_profiles.py:6: profile 'local' (On the hub): not carried over" in err
    assert "torque_profiles.py:7: profile 'compute2c4g8h' (Compute — 2 cores, 4 GB, 8 hours): " \
        "not carried over: batchspawner.TorqueSpawner runs Torque/PBS jobs: hpcspawner has no " \
        "backend for that scheduler; on SLURM or HTCondor it would be resources: {cores: 2, " \
        "memory: 4GiB, runtime: 8h}, partition: compute (its queue)" in err
    assert "torque_profiles.py:9: profile 'bigmem'" in err
    assert "nothing to import: none of the 3 profile(s) runs on SLURM or HTCondor" in err
    assert "must be a non-empty list" not in err


def test_a_key_used_twice_is_named_at_its_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, profiles, notes = imported(CONFIGS / "duplicate_key.py", tmp_path, capsys)
    assert list(profiles) == ["gpu-node", "cpu"]
    assert profiles["gpu-node"]["resources"]["gpus"] == 1  # the one wrapspawner started
    assert "duplicate_key.py:11: key 'gpu-node': used twice (first at duplicate_key.py:7): " \
        "wrapspawner starts the first for both; this one ('GPU node — 2 GPUs') is not " \
        "carried over: give it a key of its own" in notes


def test_culling_and_landing_pages_are_carried_and_one_note_names_all_it_concerns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, profiles, notes = imported(CONFIGS / "culling_urls.py", tmp_path, capsys)
    assert len(profiles) == 20 and "1c1g1h" in profiles  # keys kept as they are
    assert yaml.safe_load(path.read_text())["defaults"] == {"idle_timeout": "1h"}
    classic = [p for p in profiles.values() if p["name"].endswith("-classic")]
    assert len(classic) == 10
    assert all(p["app"] == {"name": "notebook", "url": "/tree"} for p in classic)
    assert {p["idle_timeout"] for p in classic} == {"1h", "8h"}
    assert all("app" not in p for p in profiles.values() if p not in classic)
    assert "export JUPYTERHUB_DEFAULT_URL=/tree\n" in our_script(path, "2c4g8h-classic", capsys)
    assert "JUPYTERHUB_DEFAULT_URL" not in our_script(path, "2c4g8h", capsys)
    runtime = [line for line in notes.splitlines() if "no time limit" in line]
    assert len(runtime) == 1 and "(20 profiles: 1c1g1h, 1c1g1h-classic, " in runtime[0]
    assert "c.JupyterHub.services 'idle-culler': --timeout=3600 carried over as " \
        "idle_timeout: 1h" in notes
    assert "cull_inactive_limit (5 profiles: 1c1g8h-classic, " in notes


def test_a_key_that_is_no_profile_name_is_renamed_and_said(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()  # noqa\n"
                      "c.ProfilesSpawner.profiles = [\n"
                      "    ('GPU', 'GPU Node', 'batchspawner.SlurmSpawner',\n"
                      "     dict(req_memory='4G', req_runtime='1:00:00')),\n"
                      "]\n")
    _, profiles, notes = imported(config, tmp_path, capsys)
    assert list(profiles) == ["gpu-node"]
    assert "jupyterhub_config.py:3: key 'GPU Node' (profile gpu-node): renamed 'gpu-node'" \
        in notes


def test_a_partition_list_is_one_partition_setting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, profiles, _ = imported(CONFIGS / "multi_partition.py", tmp_path, capsys)
    assert profiles["default"]["partition"] == "jupyter,batch"
    assert "#SBATCH --partition=jupyter,batch\n" in our_script(path, "default", capsys)


def test_values_that_do_not_read_are_said_and_never_guessed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A site script's --gres=gpu:{ngpus} for a profile without req_ngpus, a memory in words:
    left out with the reason, and the written profiles still pass check."""
    config = tmp_path / "jupyterhub_config.py"
    config.write_text("c = get_config()  # noqa\n"
                      "c.SlurmSpawner.batch_script = '#!/bin/bash\\n#SBATCH --gres=gpu:{ngpus}\\n"
                      "#SBATCH --mem={memory}\\n{cmd}\\n'\n"
                      "c.ProfilesSpawner.profiles = [\n"
                      "    ('CPU', 'cpu', 'batchspawner.SlurmSpawner', dict(req_memory='4G')),\n"
                      "    ('Pool', 'pool', 'batchspawner.CondorSpawner',\n"
                      "     dict(req_memory='four gigabytes')),\n"
                      "]\n")
    _, profiles, notes = imported(config, tmp_path, capsys)
    assert "gpus" not in profiles["cpu"]["resources"]
    assert profiles["cpu"]["resources"]["memory"] == "4GiB"
    assert "batch_script line 2 (profile cpu): '--gres=gpu:' left out: 'gpu:' names no GPU " \
        "count or type" in notes
    assert profiles["pool"]["resources"]["memory"] == "2GiB"
    assert "jupyterhub_config.py:5: req_memory (profile pool): 'four gigabytes' does not " \
        "read as a number (cores) or MiB" in notes
