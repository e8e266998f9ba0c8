"""profiles.yaml: loading with file:line errors, hot reload that keeps the last good file; the
schema's fields are profile_schema.py's, their value types profile_types.py's (both named
here too, for the modules that read profiles).

A profile is one entry of the dropdown ("Medium — 2 cores, 20 GiB, 6 h"). The file holds a
``defaults:`` block merged under every profile, a ``profiles:`` list and, optionally, the
site's own ``apps:`` (docs/apps.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from .profile_schema import (
    Caps,
    CapTable,
    CustomApp,
    ExtendSettings,
    Profile,
    Resources,
    fast_path_misfit,
    know_schedulers,
)
from .profile_types import ANY_MODEL, BUILTIN_APPS, SLUG_RE

__all__ = ["ANY_MODEL", "SLUG_RE", "CapTable", "Caps", "CustomApp", "ExtendSettings", "Profile",
           "ProfileError", "ProfileSet", "ProfileStore", "Resources", "fast_path_misfit",
           "know_schedulers", "load_profiles", "parse_profiles"]

log = logging.getLogger("hpcspawner.profiles")


class ProfileError(Exception):
    """profiles.yaml is not valid; ``problems`` holds one ``PATH:LINE: message`` per error."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class ProfileSet:
    path: str
    profiles: tuple[Profile, ...]
    by_name: dict[str, Profile] = field(compare=False)
    apps: dict[str, CustomApp] = field(default_factory=dict, compare=False)
    caps: CapTable = field(default_factory=CapTable, compare=False)

    @property
    def default(self) -> Profile:
        return next((p for p in self.profiles if p.default), self.profiles[0])

    def names(self) -> list[str]:
        return [p.name for p in self.profiles]

    def for_user(self, user: str, groups: Iterable[str] = ()) -> list[Profile]:
        group_list = list(groups)
        return [p for p in self.profiles if p.visible_to(user, group_list)]


# --- loading with line numbers ---------------------------------------------------------------

Path_ = tuple[Any, ...]


def _construct(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            if key in out:
                raise ProfileError([f"line {key_node.start_mark.line + 1}: duplicate key '{key}'"])
            key_path = (*path, key)
            out[key] = _construct(value_node, key_path, lines)
            lines[key_path] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _merge(defaults: dict[str, Any], profile: dict[str, Any]) -> dict[str, Any]:
    merged = dict(defaults)
    for key, value in profile.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _line_for(loc: Path_, lines: dict[Path_, int], index: int, profile: dict[str, Any]) -> int:
    """Line of the longest known prefix; a key inherited from defaults points at defaults."""
    rel = tuple(loc)
    for cut in range(len(rel), -1, -1):
        own = ("profiles", index, *rel[:cut])
        if own in lines and _present(profile, rel[:cut]):
            return lines[own]
        inherited = ("defaults", *rel[:cut])
        if cut and inherited in lines:
            return lines[inherited]
    return lines.get(("profiles", index), 1)


def _present(data: Any, keys: Path_) -> bool:
    for key in keys:
        in_dict = isinstance(data, dict) and key in data
        in_list = isinstance(data, list) and isinstance(key, int) and key < len(data)
        if in_dict or in_list:
            data = data[key]
        else:
            return False
    return True


def _message(err: Any) -> str:
    loc = ".".join(str(part) for part in err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"field '{loc}' is not known; check its spelling"
    if kind == "missing":
        return f"field '{loc}' is required"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        msg = f"'{err['input']}' is not allowed; {msg[0].lower()}{msg[1:]}"
    return f"field '{loc}': {msg}" if loc else msg


def parse_profiles(text: str, path: str = "profiles.yaml") -> ProfileSet:
    """Validate ``text`` (the content of ``path``); raise ProfileError listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise ProfileError([f"{path}:{line}: not valid YAML: {exc.problem}"]) from None
    if root is None:
        raise ProfileError([f"{path}:1: the file is empty; it needs a 'profiles:' list"])
    lines: dict[Path_, int] = {}
    try:
        data = _construct(root, (), lines)
    except ProfileError as exc:
        located = [f"{path}:{p.removeprefix('line ')}" for p in exc.problems]
        raise ProfileError(located) from None
    if not isinstance(data, dict):
        raise ProfileError([f"{path}:1: the top level must be a mapping with 'profiles:'"])
    problems, defaults, entries = _top_level(data, lines, path)
    apps = _apps(data.get("apps"), lines, path, problems)
    caps = _caps(data.get("caps"), lines, path, problems)
    profiles: list[Profile] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"{path}:{lines[('profiles', index)]}: a profile must be a mapping")
            continue
        label = f"profile '{entry.get('name', index + 1)}'"
        try:
            profiles.append(Profile.model_validate(_merge(defaults, entry)))
        except ValidationError as exc:
            for err in exc.errors():
                line = _line_for(err["loc"], lines, index, entry)
                problems.append(f"{path}:{line}: {label}: {_message(err)}")
        except UnicodeError:  # e.g. "\ud800" escapes: YAML makes lone surrogates of them
            problems.append(f"{path}:{lines[('profiles', index)]}: profile {index + 1}: a "
                            "value holds characters that are not valid text (a \\uD800-"
                            "\\uDFFF escape?); write the character itself")
    problems += _clashes(profiles, lines, path)
    problems += _unknown_apps(profiles, entries, apps, lines, path)
    problems += _unknown_worker_profiles(profiles, entries, lines, path)
    if problems:
        raise ProfileError(problems)
    return ProfileSet(path=path, profiles=tuple(profiles), by_name={p.name: p for p in profiles},
                      apps=apps, caps=caps)


def _caps(data: Any, lines: dict[Path_, int], path: str, problems: list[str]) -> CapTable:
    """``caps: {default: {...}, groups: {NAME: {...}}, users: {NAME: {...}}}``."""
    if data is None:
        return CapTable()
    try:
        return CapTable.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            keys = [("caps", *loc[:cut]) for cut in range(len(loc), -1, -1)]
            line = next((lines[key] for key in keys if key in lines), 1)
            problems.append(f"{path}:{line}: caps: {_message(err)}")
        return CapTable()


def _apps(data: Any, lines: dict[Path_, int], path: str,
          problems: list[str]) -> dict[str, CustomApp]:
    """The site's own apps (``apps: {NAME: {command: [...], url: ..., ...}}``)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}:{lines[('apps',)]}: 'apps' must be a mapping of app names")
        return {}
    apps: dict[str, CustomApp] = {}
    for name, entry in data.items():
        where = f"{path}:{lines.get(('apps', name), 1)}: app '{name}'"
        if not isinstance(name, str) or not SLUG_RE.match(name) or name in BUILTIN_APPS:
            problems.append(f"{where}: not a usable app name (lower-case letters, digits, - and "
                            f"_; not one of the built-in {', '.join(BUILTIN_APPS)})")
            continue
        try:
            apps[name] = CustomApp.model_validate(entry)
        except ValidationError as exc:
            for err in exc.errors():
                line = lines.get(("apps", name, *err["loc"][:1]), lines.get(("apps", name), 1))
                problems.append(f"{path}:{line}: app '{name}': {_message(err)}")
    return apps


def _unknown_worker_profiles(profiles: list[Profile], entries: list[Any],
                             lines: dict[Path_, int], path: str) -> list[str]:
    """Each ``dask.worker_profile`` names a profile of the same scheduler."""
    by_name = {p.name: p for p in profiles}
    problems = []
    for profile in profiles:
        worker = profile.dask.worker_profile
        if worker is None:
            continue
        if worker not in by_name:
            problem = (f"'{worker}' is not a profile here; use one of: "
                       f"{', '.join(sorted(by_name))}")
        elif by_name[worker].backend != profile.backend:
            problem = (f"'{worker}' runs on {by_name[worker].backend}, the server on "
                       f"{profile.backend}; workers must use the server's scheduler")
        else:
            continue
        index = next(i for i, e in enumerate(entries)
                     if isinstance(e, dict) and e.get("name") == profile.name)
        line = lines.get(("profiles", index, "dask", "worker_profile"),
                         lines.get(("defaults", "dask", "worker_profile"), 1))
        problems.append(f"{path}:{line}: profile '{profile.name}': dask.worker_profile "
                        f"{problem}")
    return problems


def _unknown_apps(profiles: list[Profile], entries: list[Any], apps: dict[str, CustomApp],
                  lines: dict[Path_, int], path: str) -> list[str]:
    problems = []
    for profile in profiles:
        name = profile.app.name
        if name in BUILTIN_APPS or name in apps:
            continue
        index = next((i for i, e in enumerate(entries)
                      if isinstance(e, dict) and e.get("name") == profile.name), 0)
        line = lines.get(("profiles", index, "app"), lines.get(("profiles", index), 1))
        known = ", ".join([*BUILTIN_APPS, *apps])
        problems.append(f"{path}:{line}: profile '{profile.name}': app '{name}' is not defined; "
                        f"use one of {known}, or define it under 'apps:'")
    return problems


def _top_level(data: dict[Any, Any], lines: dict[Path_, int],
               path: str) -> tuple[list[str], dict[str, Any], list[Any]]:
    """Check the keys around the profiles; return (problems, defaults, profile entries)."""
    problems = [f"{path}:{lines[(key,)]}: top-level key '{key}' is not known; "
                "allowed: defaults, profiles, apps, caps"
                for key in data if key not in ("defaults", "profiles", "apps", "caps")]
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(f"{path}:{lines[('defaults',)]}: 'defaults' must be a mapping")
        defaults = {}
    entries = data.get("profiles")
    if not isinstance(entries, list) or not entries:
        line = lines.get(("profiles",), 1)
        problems.append(f"{path}:{line}: 'profiles' must be a non-empty list of profiles")
        raise ProfileError(problems)
    return problems, defaults, entries


def _clashes(profiles: list[Profile], lines: dict[Path_, int], path: str) -> list[str]:
    """Names used twice, and more than one default."""
    problems = []
    seen: dict[str, int] = {}
    for index, profile in enumerate(profiles):
        line = lines.get(("profiles", index, "name"), 1)
        if profile.name in seen:
            problems.append(f"{path}:{line}: profile name '{profile.name}' is used twice "
                            f"(first at line {seen[profile.name]}); names must be unique")
        seen.setdefault(profile.name, line)
    if sum(p.default for p in profiles) > 1:
        names = ", ".join(p.name for p in profiles if p.default)
        problems.append(f"{path}:{lines[('profiles',)]}: more than one default profile ({names}); "
                        "mark one with 'default: true'")
    return problems


def load_profiles(path: str | Path) -> ProfileSet:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError([f"{p}:0: cannot read the profiles file: {exc.strerror}"]) from None
    return parse_profiles(text, str(p))


class ProfileStore:
    """Reloads profiles.yaml when it changes; a broken edit keeps the last good profiles."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._current: ProfileSet | None = None
        self._stamp: tuple[float, int] | None = None
        self.last_error: ProfileError | None = None

    def get(self) -> ProfileSet:
        try:
            stat = self.path.stat()
            stamp: tuple[float, int] | None = (stat.st_mtime, stat.st_size)
        except OSError:
            stamp = None
        if self._current is not None and stamp == self._stamp:
            return self._current
        try:
            fresh = load_profiles(self.path)
        except ProfileError as exc:
            self._stamp = stamp
            self.last_error = exc
            if self._current is None:
                raise
            log.error("%s is broken, keeping the last good profiles:\n%s", self.path, exc)
            return self._current
        if self._current is not None:
            log.info("Reloaded %s: %s", self.path, ", ".join(fresh.names()))
        self._current, self._stamp, self.last_error = fresh, stamp, None
        return fresh
