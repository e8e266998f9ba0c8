"""Form, REST and URL options go through one check."""

from __future__ import annotations

from typing import Any

import pytest

from hpcspawner.compat import SpawnException
from hpcspawner.options import choose, choose_profile
from hpcspawner.profiles import parse_profiles

PROFILES = parse_profiles("""\
profiles:
  - {name: small, resources: {memory: 1GiB, runtime: 1h}}
  - {name: medium, default: true, resources: {memory: 2GiB, runtime: 1h}}
  - {name: gpu, groups: [gpu], resources: {memory: 2GiB, runtime: 1h, gpus: 1}}
""")


def visible(groups: tuple[str, ...] = ()) -> list[Any]:
    return PROFILES.for_user("alice", groups)


@pytest.mark.parametrize("options", [None, {}, {"profile": ""}])
def test_no_choice_is_the_default(options: Any) -> None:
    assert choose_profile(options, visible(), PROFILES.default).name == "medium"


def test_a_visible_profile_is_taken() -> None:
    assert choose_profile({"profile": "small"}, visible(), PROFILES.default).name == "small"
    assert choose_profile({"profile": "gpu"}, visible(("gpu",)), PROFILES.default).name == "gpu"


@pytest.mark.parametrize(("options", "words"), [
    ({"profile": "nope"}, "Unknown profile 'nope'; choose one of: small, medium."),
    ({"profile": "gpu"}, "Unknown profile 'gpu'; choose one of: small, medium."),
    ({"profile": ["small"]}, "Unknown profile '(invalid)'"),
    ({"profile": "x" * 200}, "Unknown profile '(invalid)'"),
    ({"profile": "small", "cores": 64}, "Unknown server option 'cores'"),
    (["small"], "must be a JSON object"),
])
def test_anything_else_is_a_400_saying_what_is_allowed(options: Any, words: str) -> None:
    with pytest.raises(SpawnException) as info:
        choose_profile(options, visible(), PROFILES.default)
    assert info.value.status_code == 400
    assert words in info.value.message


def test_nothing_visible_is_a_403() -> None:
    with pytest.raises(SpawnException) as info:
        choose_profile({}, [], PROFILES.default)
    assert info.value.status_code == 403


DASH = parse_profiles("""\
profiles:
  - {name: small, default: true, resources: {memory: 1GiB, runtime: 1h}}
  - {name: dash, app: streamlit, resources: {memory: 1GiB, runtime: 1h}}
""")


def test_a_dashboard_profile_takes_the_users_script_checked_by_name() -> None:
    choice = choose({"profile": "dash", "script": "app.py"}, list(DASH.profiles), DASH.default,
                    "/home/alice")
    assert (choice.profile.name, choice.script) == ("dash", "/home/alice/app.py")
    assert choose({"profile": "small"}, list(DASH.profiles), DASH.default, "/h/a").script == ""


@pytest.mark.parametrize(("options", "words"), [
    ({"profile": "dash", "script": "; rm -rf ~"}, "characters a script name may not have"),
    ({"profile": "dash", "script": "../../etc/shadow"}, "may not contain '..'"),
    ({"profile": "dash"}, "Name the dashboard's script"),
    ({"profile": "small", "script": "app.py"}, "does not take a script"),
])
def test_a_bad_script_is_a_400_with_a_sentence(options: dict[str, str], words: str) -> None:
    with pytest.raises(SpawnException) as info:
        choose(options, list(DASH.profiles), DASH.default, "/home/alice")
    assert info.value.status_code == 400
    assert words in info.value.message
