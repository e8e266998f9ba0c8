"""Job scripts: golden files for the example classes, and hostile values stay inert."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from hpcspawner import shared
from hpcspawner.cli import main as cli_main
from hpcspawner.job_builder import JobBuilder
from hpcspawner.profiles import Profile, load_profiles
from hpcspawner.render import RenderError
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
PYTHON = "/opt/hpcspawner/venv/bin/python3"
HOSTILE = [
    "$(touch {canary})",
    "`touch {canary}`",
    "a\nb; touch {canary}",
    "it's \"quoted\" \\ and $HOME",
    "; touch {canary} #",
    "${IFS}touch${IFS}{canary}",
    "$(ProcId)",  # condor_submit's own macro: not data any more (found by test_fuzz)
    "$$(ClusterId)",  # a match-time macro around the hub's own $(ClusterId)
    "$ENV(HOME)",
    "$$(Machine)",
]



def check_golden(golden: Path, text: str) -> None:
    """``text`` is the golden file's, byte for byte. HPCSPAWNER_UPDATE_GOLDEN=1 rewrites a
    file that differs and fails the test (so an update is never a pass: run again without
    it, and review the diff)."""
    if os.environ.get("HPCSPAWNER_UPDATE_GOLDEN") and golden.read_text() != text:
        golden.write_text(text)
        pytest.fail(f"{golden.name} rewritten; review `git diff` and run again without "
                    "HPCSPAWNER_UPDATE_GOLDEN")
    assert text == golden.read_text()

def render_cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = cli_main(["render", "--profiles", str(REPO / "profiles.yaml"), "--python", PYTHON,
                     "--hub-id", "hub", *args])
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.mark.parametrize("profile", ["small", "medium", "large", "desktop", "dashboard",
                                     "my-dashboard"])
def test_golden_slurm_scripts(profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["--script", "dashboards/app.py"] if profile == "my-dashboard" else []
    script = render_cli(capsys, "--profile", profile, "--user", "alice", *extra)
    golden = GOLDEN / f"slurm-{profile}.sbatch"
    check_golden(golden, script)


def test_golden_scripts_carry_the_class_resources(capsys: pytest.CaptureFixture[str]) -> None:
    script = render_cli(capsys, "--profile", "medium", "--user", "alice")
    for line in ("#SBATCH --partition=jupyter", "#SBATCH --cpus-per-task=2",
                 "#SBATCH --mem=20480M", "#SBATCH --time=06:00:00"):
        assert line in script.splitlines()


def slurm_script(profile: Profile, *, server: str = "", home: str = "/home/alice",
                 python: str = PYTHON, cmd: tuple[str, ...] = ("/bin/true",),
                 env: dict[str, str] | None = None) -> str:
    """What a spawn submits (the same JobBuilder the spawner and the CLI use)."""
    builder = JobBuilder(username="alice", server_name=server, home=home,
                         job_dir=f"{home}/.hpcspawner", hub_id="hub", python=python,
                         cmd=list(cmd), env=env or {})
    return builder.render(profile, shared.backend("slurm"), secret_file=f"{home}/t.token",
                          submission="0123", fast=False)[1]


def _stub_python(tmp_path: Path) -> Path:
    """Stands in for the job's Python: prints its argv and environment as JSON."""
    stub = tmp_path / "python"
    stub.write_text("#!/bin/sh\nexec /usr/bin/python3 -c 'import json, os, sys; "
                    "print(json.dumps({\"argv\": sys.argv[1:], \"env\": dict(os.environ)}))' "
                    "\"$@\"\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return stub


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_reach_the_job_unchanged_and_run_nothing(template: str,
                                                                tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    value = template.replace("{canary}", str(canary))
    profile = load_profiles(REPO / "profiles.yaml").by_name["small"]
    script = tmp_path / "job.sh"
    script.write_text(slurm_script(
        profile, home=str(tmp_path), python=str(_stub_python(tmp_path)),
        cmd=("/bin/echo", value, "--x=" + value),
        env={"JUPYTERHUB_USER": value, "HOSTILE": value}))
    out = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout)
    assert seen["env"]["HOSTILE"] == value
    assert seen["env"]["JUPYTERHUB_USER"] == value
    assert seen["argv"][-3:] == ["/bin/echo", value, "--x=" + value]
    assert not canary.exists()


@pytest.mark.parametrize("bad", ["a b", "$(id)", "x\n#SBATCH --uid=0", "`id`", "a;b"])
def test_values_in_sbatch_directives_are_refused_not_pasted(bad: str) -> None:
    profile = load_profiles(REPO / "profiles.yaml").by_name["small"]
    with pytest.raises(RenderError, match="cannot go in a scheduler directive"):
        slurm_script(profile, server=bad)


def test_bad_environment_name_is_refused() -> None:
    profile = load_profiles(REPO / "profiles.yaml").by_name["small"]
    with pytest.raises(RenderError, match="not an environment variable name"):
        slurm_script(profile, env={"A=1; id": "x"})


def test_admin_template_directory_is_searched_first(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "slurm.sbatch.j2").write_text("#!/bin/bash\n# site template for {{ username }}\n")
    out = render_cli(capsys, "--profile", "small", "--user", "bob", "--template-dir",
                     str(tmp_path))
    assert out == "#!/bin/bash\n# site template for bob\n"


def test_templates_are_strict_about_undefined_names(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "slurm.sbatch.j2").write_text("{{ no_such_thing }}\n")
    code = cli_main(["render", "--profiles", str(REPO / "profiles.yaml"), "--profile", "small",
                     "--user", "bob", "--template-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert "slurm.sbatch.j2" in err and "'no_such_thing' is undefined" in err


HTCONDOR_PROFILES = REPO / "docs/examples/profiles-htcondor.yaml"


@pytest.mark.parametrize(("profile", "fast"), [
    ("quick", True), ("quick", False), ("small", False), ("medium", False), ("large", False)])
def test_golden_htcondor_submit_descriptions(profile: str, fast: bool,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    extra = [] if fast else ["--no-fast-path"]
    code = cli_main(["render", "--profiles", str(HTCONDOR_PROFILES), "--python", PYTHON,
                     "--hub-id", "hub", "--profile", profile, "--user", "alice", *extra])
    out = capsys.readouterr()
    assert code == 0, out.err
    golden = GOLDEN / f"htcondor-{profile}{'-fast' if fast else ''}.sub"
    check_golden(golden, out.out)
    lines = out.out.splitlines()
    assert ("requirements = (TARGET.IsJupyterSlot =?= True)" in lines) is fast
    assert ("+HPCSpawnerFastPath = True" in lines) is fast
    assert "+HPCSpawner = True" in lines and "queue" in lines
    assert "allowed_job_duration" in out.out and "periodic_remove" in out.out


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_in_a_submit_description_reach_the_job_unchanged_or_are_refused(
        template: str, tmp_path: Path) -> None:
    """A value with a line break or a macro is refused (condor_submit would expand $(X),
    $ENV(X), $$(X), and $ before our $(ClusterId));
    any other value, read back with HTCondor's own argument/environment syntax (the
    stand-in's arglist, written from the manual), is exactly the value."""
    from hpcspawner.backends.htcondor_ads import condor_args, condor_env
    from tests.htcondor_standin.condor_standin.arglist import (
        parse_arguments,
        parse_environment,
    )

    value = template.replace("{canary}", str(tmp_path / "canary"))
    must_refuse = "\n" in value or re.search(r"\$[A-Za-z_]*\(|\$\$", value)
    assert must_refuse or "$(" not in value
    if must_refuse:
        with pytest.raises(RenderError, match="line break or"):
            condor_args(["/bin/echo", value])
        with pytest.raises(RenderError, match="line break or"):
            condor_env({"HOSTILE": value})
        return
    args, env = condor_args(["/bin/echo", value]), condor_env({"HOSTILE": value})
    assert parse_arguments(args) == (["/bin/echo", value], False)
    assert parse_environment(env) == {"HOSTILE": value}


def test_condor_argument_syntax_matches_the_manual() -> None:
    from hpcspawner.backends.htcondor_ads import condor_args

    # HTCondor manual, "arguments" (new syntax): arguments = "3 simple arguments"
    assert condor_args(["3", "simple", "arguments"]) == '"3 simple arguments"'
    # arguments = "one 'two with spaces' 3"
    assert condor_args(["one", "two with spaces", "3"]) == "\"one 'two with spaces' 3\""
    # arguments = "one ""two"" 'spacey ''quoted'' argument'"
    assert condor_args(["one", '"two"', "spacey 'quoted' argument"]) == (
        "\"one \"\"two\"\" 'spacey ''quoted'' argument'\"")


def test_the_form_escapes_profile_texts_and_the_last_end_message() -> None:
    from hpcspawner.profiles import parse_profiles
    from hpcspawner.render import render_template

    profiles = parse_profiles(
        "profiles:\n  - name: x\n    display_name: \"<b>X</b>\"\n"
        "    description: \"<img src=x onerror=alert(1)>\"\n"
        "    resources: {memory: 1GiB, runtime: 1h}\n").profiles
    page = render_template("form.html.j2", {
        "profiles": profiles, "chosen": "x",
        "last_end": "held: Failed to execute '<script>alert(2)</script>'"})
    assert "<script>alert" not in page and "<img" not in page and "<b>X</b>" not in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&lt;b&gt;X&lt;/b&gt;" in page


def test_the_form_offers_each_choice_inside_the_users_cap_with_a_label_and_the_range() -> None:
    from hpcspawner.options import form_fields
    from hpcspawner.profiles import parse_profiles
    from hpcspawner.render import render_template

    ps = parse_profiles(
        "caps: {default: {memory: 32GiB}}\n"
        "profiles:\n  - {name: small, resources: {memory: 1GiB, runtime: 1h}}\n"
        "  - name: gpu\n    resources: {cores: 4, memory: 28GiB, runtime: 1d}\n"
        "    choices: {memory: {min: 16GiB, max: 64GiB}, cores: {choices: [2, 4, 8]}}\n")
    caps = ps.caps.for_user("alice", [])
    page = render_template("form.html.j2", {
        "profiles": ps.profiles, "chosen": "gpu", "last_end": "",
        "fields": {p.name: form_fields(p, caps) for p in ps.profiles},
        "last": {"memory": "20GiB", "cores": "", "gpus": "", "runtime": ""}})
    assert '<label for="hpcspawner-gpu-memory" class="form-label">Memory</label>' in page
    assert 'name="gpu.memory" id="hpcspawner-gpu-memory" value="20GiB"' in page
    assert '>16 GiB to 32 GiB<' in page  # the cap, not the profile's 64 GiB
    assert '<option value="4" selected>4</option>' in page
    assert 'name="small.' not in page  # a profile without choices shows no fields


def test_a_chosen_gpu_model_is_a_gres_type_for_slurm_and_a_device_name_for_htcondor() -> None:
    base = load_profiles(REPO / "profiles.yaml").by_name["gpu"]
    chosen = base.model_copy(update={"resources": base.resources.model_copy(
        update={"gpu_model": "a100"})})
    assert "#SBATCH --gpus=a100:1" in slurm_script(chosen).splitlines()
    assert "#SBATCH --gpus=1" in slurm_script(base).splitlines()  # any model
    condor = chosen.model_copy(update={"backend": "htcondor", "partition": None})
    builder = JobBuilder(username="alice", server_name="", home="/home/alice",
                         job_dir="/home/alice/.hpcspawner", hub_id="hub", python=PYTHON,
                         cmd=["/bin/true"])
    sub = builder.render(condor, shared.backend("htcondor"), secret_file="/home/alice/t",
                         submission="0123", fast=False)[1].splitlines()
    assert "request_gpus = 1" in sub
    assert 'require_gpus = regexp("a100", DeviceName, "i")' in sub


def test_the_login_environment_is_the_admins_choice() -> None:
    """By default the job starts from sbatch's bare environment (`--export=ALL`, no `su -`
    before every job); with login_environment, from the user's login environment."""
    from hpcspawner.backends.slurm import SlurmBackend

    profile = load_profiles(REPO / "profiles.yaml").by_name["small"]
    builder = JobBuilder(username="alice", server_name="", home="/home/alice",
                         job_dir="/home/alice/.hpcspawner", hub_id="hub", python=PYTHON,
                         cmd=["/bin/true"])
    scripts = {login: builder.render(profile, SlurmBackend(login_environment=login),
                                     secret_file="/home/alice/t", submission="0",
                                     fast=False)[1].splitlines()
               for login in (False, True)}
    assert "#SBATCH --export=ALL" in scripts[False]
    assert "#SBATCH --export=NONE" in scripts[True]


@pytest.mark.parametrize("value", ["$$(ClusterId)", "x$$(ClusterId).log", "$ENV(HOME)",
                                   "$$(Machine)", "$RANDOM_INTEGER(1,9)"])
def test_no_macro_passes_the_submit_value_filter_around_the_hubs_own(value: str) -> None:
    """Only "$(ClusterId)" (log paths) may stand in a submit line: not "$$(ClusterId)", which
    condor_submit would leave as a match-time macro, nor $ENV(...)."""
    from hpcspawner.backends.htcondor_ads import classad_string, submit_value

    with pytest.raises(RenderError, match="macro"):
        submit_value(value)
    with pytest.raises(RenderError, match="macro"):
        classad_string(value)
    assert submit_value("/home/a/.hpcspawner/logs/x-$(ClusterId).log").endswith("$(ClusterId).log")
