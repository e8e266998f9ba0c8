"""Every error path of profiles.yaml shows file:line and what is allowed."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from hpcspawner.profiles import ProfileError, ProfileStore, load_profiles, parse_profiles
from tests.conftest import EXAMPLE_PROFILES, REPO


def problems(text: str) -> list[str]:
    with pytest.raises(ProfileError) as info:
        parse_profiles(textwrap.dedent(text), "p.yaml")
    return info.value.problems


GOOD = """\
defaults:
  partition: jupyter
profiles:
  - name: small
    resources: {cores: 1, memory: 12GiB, runtime: 12h}
"""


def test_example_file_holds_desys_three_classes_a_desktop_and_dashboards() -> None:
    profiles = load_profiles(REPO / "profiles.yaml")
    got = {p.name: (p.resources.cores, p.resources.memory // 1024**3, p.resources.runtime // 3600,
                    p.partition, p.backend, p.app.name) for p in profiles.profiles}
    assert got == {"small": (1, 12, 12, "jupyter", "slurm", "notebook"),
                   "medium": (2, 20, 6, "jupyter", "slurm", "notebook"),
                   "large": (2, 48, 3, "jupyter", "slurm", "notebook"),
                   "gpu": (4, 28, 24, "jupyter", "slurm", "notebook"),
                   "desktop": (2, 8, 4, "jupyter", "slurm", "desktop"),
                   "dashboard": (1, 4, 8, "jupyter", "slurm", "streamlit"),
                   "my-dashboard": (1, 4, 8, "jupyter", "slurm", "streamlit")}
    assert profiles.by_name["dashboard"].app.script == "/opt/hpcspawner/examples/dashboard.py"
    assert profiles.by_name["my-dashboard"].app.user_script
    gpu = profiles.by_name["gpu"]
    assert (gpu.resources.gpus, gpu.groups) == (1, ["gpu"])
    assert (gpu.choices.memory.min, gpu.choices.memory.max) == (16 * 1024**3, 64 * 1024**3)
    assert [p.name for p in profiles.for_user("bob", [])] == [
        "small", "medium", "large", "desktop", "dashboard", "my-dashboard"]
    assert profiles.caps.for_user("alice", ["gpu-heavy"]).memory == 64 * 1024**3
    assert profiles.default.name == "small"


def test_defaults_apply_and_profiles_override() -> None:
    ps = parse_profiles(GOOD + "    partition: batch\n  - name: other\n"
                        "    resources: {memory: 1GiB, runtime: 1h}\n")
    assert ps.by_name["small"].partition == "batch"
    assert ps.by_name["other"].partition == "jupyter"
    assert ps.default.name == "small"


def test_title_is_made_from_resources_when_not_given() -> None:
    assert parse_profiles(GOOD).profiles[0].title == "Small — 1 core, 12 GiB, 12 h"


def test_typod_unit_names_line_field_and_the_fix() -> None:
    [msg] = problems("""\
        profiles:
          - name: gpu
            resources:
              cores: 2
              memory: 28 GB
              runtime: 6h
        """)
    assert msg.startswith("p.yaml:5: profile 'gpu': field 'resources.memory'")
    assert "write 28GiB" in msg


def test_unknown_field_is_a_typo() -> None:
    [msg] = problems("""\
        profiles:
          - name: small
            resources: {memory: 1GiB, runtime: 1h}
            partiton: jupyter
        """)
    assert msg == "p.yaml:4: profile 'small': field 'partiton' is not known; check its spelling"


def test_missing_memory() -> None:
    [msg] = problems("profiles:\n  - name: small\n    resources:\n      runtime: 1h\n")
    assert msg.startswith("p.yaml:3:") and "'resources.memory' is required" in msg


def test_bad_backend_lists_the_allowed_ones() -> None:
    [msg] = problems(GOOD + "    backend: pbs\n")
    assert msg.startswith("p.yaml:6:") and "'slurm'" in msg and "'htcondor'" in msg


def test_bad_runtime_and_bad_cores_are_both_reported() -> None:
    msgs = problems("profiles:\n  - name: x\n    resources: {cores: 0, memory: 1GiB, "
                    "runtime: 6 hours}\n")
    assert len(msgs) == 2
    assert any("cores" in m and "greater than 0" in m for m in msgs)
    assert any("runtime" in m and "6h" in m for m in msgs)


def test_bad_name() -> None:
    [msg] = problems("profiles:\n  - name: Big Medium\n"
                     "    resources: {memory: 1GiB, runtime: 1h}\n")
    assert msg.startswith("p.yaml:2:") and "lower-case" in msg


def test_duplicate_names() -> None:
    [msg] = problems(GOOD + "  - name: small\n    resources: {memory: 1GiB, runtime: 1h}\n")
    assert msg.startswith("p.yaml:6:") and "used twice (first at line 4)" in msg


def test_two_defaults() -> None:
    text = GOOD + "    default: true\n  - name: b\n    default: true\n" \
                  "    resources: {memory: 1GiB, runtime: 1h}\n"
    [msg] = problems(text)
    assert "more than one default profile (small, b)" in msg


def test_error_in_defaults_points_at_defaults() -> None:
    [msg] = problems("defaults:\n  pending_timeout: soon\nprofiles:\n  - name: a\n"
                     "    resources: {memory: 1GiB, runtime: 1h}\n")
    assert msg.startswith("p.yaml:2: profile 'a': field 'pending_timeout'")


def test_newline_in_partition_is_refused() -> None:
    [msg] = problems(GOOD + '    partition: "jupyter\\n#SBATCH --uid=0"\n')
    assert "single line" in msg


def test_extra_option_with_newline_is_refused() -> None:
    [msg] = problems(GOOD + '    extra_options: ["--qos=x\\nrm -rf ~"]\n')
    assert "single line" in msg


@pytest.mark.parametrize(("text", "expected"), [
    ("", "p.yaml:1: the file is empty"),
    ("- a\n- b\n", "p.yaml:1: the top level must be a mapping"),
    ("profiles: []\n", "p.yaml:1: 'profiles' must be a non-empty list"),
    ("defaults: {}\n", "p.yaml:1: 'profiles' must be a non-empty list"),
    ("profiles:\n  - just-a-string\n", "p.yaml:2: a profile must be a mapping"),
    ("profiles: [\n", "p.yaml:2: not valid YAML"),
    ("profile:\n  - name: a\n", "p.yaml:1: top-level key 'profile' is not known"),
    ("profiles:\n  - name: a\n    name: b\n", "p.yaml:3: duplicate key 'name'"),
    ("defaults: 3\nprofiles:\n  - {name: a, resources: {memory: 1GiB, runtime: 1h}}\n",
     "p.yaml:1: 'defaults' must be a mapping"),
])
def test_structural_errors(text: str, expected: str) -> None:
    assert any(m.startswith(expected) for m in problems(text)), problems(text)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"missing.yaml:0: cannot read"):
        load_profiles(tmp_path / "missing.yaml")


def test_every_message_has_file_and_line() -> None:
    bad = "profiles:\n  - name: A\n    backend: pbs\n    resources: {memory: 3, runtime: x}\n"
    for msg in problems(bad):
        assert re.match(r"^p\.yaml:\d+: ", msg), msg


def test_visibility_by_group_and_user() -> None:
    ps = parse_profiles(GOOD + "  - name: gpu\n    groups: [gpu-users]\n    users: [carol]\n"
                               "    resources: {memory: 1GiB, runtime: 1h, gpus: 1}\n")
    assert [p.name for p in ps.for_user("alice", [])] == ["small"]
    assert [p.name for p in ps.for_user("alice", ["gpu-users"])] == ["small", "gpu"]
    assert [p.name for p in ps.for_user("carol", [])] == ["small", "gpu"]


def test_store_keeps_last_good_profiles_after_a_broken_edit(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(EXAMPLE_PROFILES)
    store = ProfileStore(path)
    names = ["small", "medium", "large", "gpu", "desktop", "dashboard", "my-dashboard"]
    assert store.get().names() == names
    path.write_text(EXAMPLE_PROFILES.replace("20GiB", "20 GB") + "\n# edit\n")
    assert store.get().names() == names
    assert store.last_error is not None and "20GiB" in str(store.last_error)
    path.write_text(GOOD)
    assert store.get().names() == ["small"]
    assert store.last_error is None


def test_store_without_any_good_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text("profiles: []\n")
    with pytest.raises(ProfileError):
        ProfileStore(path).get()


HTC = """\
profiles:
  - name: nb
    backend: htcondor
    resources: {memory: 1GiB, runtime: 1h}
    htcondor:
"""


def test_htcondor_fast_path_options_are_checked() -> None:
    ps = parse_profiles(HTC + "      fast_path: {timeout: 20s, schedd: jupyter-schedd}\n")
    fast = ps.profiles[0].htcondor.fast_path
    assert fast is not None and fast.timeout == 20 and fast.schedd == "jupyter-schedd"
    assert ps.profiles[0].fast_path_enabled
    [msg] = problems(HTC + "      fast_path: {timout: 20s}\n")
    assert msg.startswith("p.yaml:6:") and "'htcondor.fast_path.timout' is not known" in msg
    [msg] = problems(HTC + "      schedd: \"a b; rm\"\n")
    assert "is not a schedd or pool name" in msg
    [msg] = problems(HTC + "      fast_path: {slot_attribute: \"x == y\"}\n")
    assert "slot_attribute" in msg


def test_a_slurm_profile_never_uses_the_fast_path() -> None:
    ps = parse_profiles(GOOD)
    assert not ps.profiles[0].fast_path_enabled
