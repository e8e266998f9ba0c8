"""Server options from the form, the REST API and spawn URLs, checked the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .apps import ScriptError, check_script_path
from .compat import SpawnException
from .profiles import Profile

OPTION_KEYS = {"profile", "script"}


@dataclass(frozen=True)
class Choice:
    """What the user chose: a profile, and for a dashboard profile that lets users name one,
    the script (an absolute path in their home, checked by name; ``""`` otherwise)."""

    profile: Profile
    script: str = ""


def choose(options: Any, visible: list[Profile], default: Profile, home: str) -> Choice:
    """The Choice ``options`` make; SpawnException (400) with a sentence otherwise."""
    profile = choose_profile(options, visible, default)
    raw = options.get("script") if isinstance(options, dict) else None
    if not profile.app.user_script:
        if raw not in (None, ""):
            raise SpawnException(f"The profile {profile.name!r} does not take a script; only "
                                 "dashboard profiles that let you name one do.",
                                 reason="options")
        return Choice(profile)
    try:
        return Choice(profile, check_script_path(raw, home))
    except ScriptError as exc:
        raise SpawnException(str(exc), reason="options") from None


def choose_profile(options: Any, visible: list[Profile], default: Profile) -> Profile:
    """The profile ``options`` ask for among ``visible``; SpawnException (400) otherwise.

    ``{}`` or no profile means the default (or the first visible one). An unknown key, an
    unknown or hidden profile, or a non-object body is refused with the valid choices.
    """
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise SpawnException('Server options must be a JSON object like {"profile": "medium"}.',
                             reason="options")
    names = ", ".join(p.name for p in visible)
    unknown = sorted(set(options) - OPTION_KEYS)
    if unknown:
        raise SpawnException(
            f"Unknown server option {', '.join(map(repr, unknown))}; the options are: "
            f"{', '.join(sorted(OPTION_KEYS))} (profile is one of: {names}).",
            reason="options",
        )
    name = options.get("profile")
    if name is None or name == "":
        if default in visible:
            return default
        if visible:
            return visible[0]
        raise SpawnException("No profile is available to you; ask the hub's administrators.",
                             reason="options", status_code=403)
    for profile in visible:
        if profile.name == name:
            return profile
    shown = name if isinstance(name, str) and len(name) < 80 else "(invalid)"
    raise SpawnException(f"Unknown profile {shown!r}; choose one of: {names}.",
                         reason="options")
