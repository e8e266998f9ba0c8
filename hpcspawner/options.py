"""Server options from the form, the REST API and spawn URLs, checked the same way."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from .apps import ScriptError, check_script_path
from .compat import SpawnException
from .profiles import ANY_MODEL, Caps, Profile, Resources
from .units import format_duration, format_size, parse_duration, parse_size, show_size

RESOURCE_KEYS = ("memory", "cores", "gpus", "gpu_model", "runtime")
NUMBERS = ("memory", "cores", "gpus", "runtime")  # the resources caps limit
DASK_WORKERS = "dask_workers"  # Dask workers started with the server (dask.offer_at_start)
FORM_KEYS = (*RESOURCE_KEYS, DASK_WORKERS)  # what a profile's fieldset of the form may hold
OPTION_KEYS = {"profile", "script", *FORM_KEYS}


@dataclass(frozen=True)
class Choice:
    """What the user chose: a profile, and for a dashboard profile that lets users name one,
    the script (an absolute path in their home, checked by name; ``""`` otherwise), and the
    Dask workers to start with the server (docs/dask.md)."""

    profile: Profile
    script: str = ""
    dask_workers: int = 0


def choose(options: Any, visible: list[Profile], default: Profile, home: str,
           caps: Caps | None = None, hidden: Collection[str] = ()) -> Choice:
    """The Choice ``options`` make; SpawnException (400) with a sentence otherwise. A choice
    of resources gives a copy of the profile with those resources."""
    profile = choose_profile(options, visible, default, hidden)
    workers = 0
    if isinstance(options, dict):
        profile = choose_resources(profile, options, caps or Caps())
        workers = choose_dask_workers(profile, options.get(DASK_WORKERS), caps or Caps())
    raw = options.get("script") if isinstance(options, dict) else None
    if not profile.app.user_script:
        if raw not in (None, ""):
            raise SpawnException(f"The profile {profile.name!r} does not take a script; only "
                                 "dashboard profiles that let you name one do.",
                                 reason="options")
        return Choice(profile, dask_workers=workers)
    try:
        return Choice(profile, check_script_path(raw, home), workers)
    except ScriptError as exc:
        raise SpawnException(str(exc), reason="options") from None


def choose_dask_workers(profile: Profile, raw: object, caps: Caps) -> int:
    """How many Dask workers to start with the server: 0 to the profile's (and the user's)
    most, for a profile that offers it; SpawnException (400) naming what is allowed else."""
    if raw is None or raw == "" or raw == 0:
        return 0
    if not profile.dask.offer_at_start:
        raise SpawnException(f"The profile {profile.name!r} does not start Dask workers with "
                             "the server; start a cluster from a notebook (docs/dask.md).",
                             reason="options")
    most = profile.dask.most(caps)
    text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    if not (text.isascii() and text.isdigit()) or len(text) > 6 or int(text) > most:
        shown = text if text and len(text) < 20 else "(invalid)"
        raise SpawnException(f"Dask workers {shown} is outside what you may ask for "
                             f"{profile.name!r}: 0 to {most}.", reason="options")
    return int(text)


def check_totals(profile: Profile, others: Sequence[Resources], caps: Caps) -> None:
    """SpawnException (400) when ``profile`` with the user's other running servers
    (``others``) would hold more memory, cores or GPUs than the user's total caps. One server
    alone is bounded by its profile and the per-server caps only (a profile's own resources
    are always allowed, as for choices)."""
    if not others:
        return
    for name, total in (("cores", caps.total_cores), ("memory", caps.total_memory),
                        ("gpus", caps.total_gpus)):
        if total is None:
            continue
        held = sum(getattr(r, name) for r in others)
        asked = getattr(profile.resources, name)
        if held + asked > total:
            def show(value: int, what: str = name) -> str:
                return format_size(value) if what == "memory" else str(value)

            noun = {"cores": "cores", "memory": "memory", "gpus": "GPUs"}[name]
            raise SpawnException(
                f"All your servers together may use at most {show(total)} {noun}; your "
                f"{len(others)} other server(s) use {show(held)} and {profile.name!r} asks "
                f"for {show(asked)}. Stop another server, or choose less.", reason="options")


def choose_profile(options: Any, visible: list[Profile], default: Profile,
                   hidden: Collection[str] = ()) -> Profile:
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
    if not isinstance(name, str):  # a list or an object: never a profile's name
        raise SpawnException(f"The profile must be a name, one of: {names}.",
                             reason="options")
    for profile in visible:
        if profile.name == name:
            return profile
    if name in hidden:
        raise SpawnException(f"The profile {name!r} is not available to you; choose one of: "
                             f"{names}.", reason="options", status_code=403)
    shown = name if len(name) < 80 else "(invalid)"
    raise SpawnException(f"Unknown profile {shown!r}; choose one of: {names}.",
                         reason="options")


def _show(name: str, value: int) -> str:
    if name == "memory":
        return show_size(value)
    if name == "runtime":
        return format_duration(value)
    return str(value)


def _parse(name: str, raw: object) -> int:
    """A resource value from the form, a URL or a REST body; ValueError with a sentence."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)) or (
            isinstance(raw, str) and len(raw) > 40):
        raise ValueError(f"{name} must be a value like {_EXAMPLES[name]}")
    text = str(raw).strip()
    if name == "memory":
        return parse_size(text)
    if name == "runtime":
        return parse_duration(text)
    if not text.isdigit():
        raise ValueError(f"{name} must be a whole number like {_EXAMPLES[name]}")
    return int(text)


_EXAMPLES = {"memory": "16GiB", "cores": "4", "gpus": "1", "runtime": "12h"}


def allowed(profile: Profile, name: str, caps: Caps) -> tuple[list[int] | None, int, int]:
    """What ``name`` may be for this user: (the choices, or None; lowest; highest)."""
    choice = getattr(profile.choices, name)
    default = getattr(profile.resources, name)
    cap = getattr(caps, name)
    if choice.choices is not None:
        values = sorted(v for v in choice.choices if cap is None or v <= cap or v == default)
        return values, values[0], values[-1]
    low = choice.min if choice.min is not None else default
    high = choice.max if choice.max is not None else default
    if cap is not None:
        high = max(min(high, cap), default)
    return None, low, high


def choose_resources(profile: Profile, options: dict[str, Any], caps: Caps) -> Profile:
    """``profile`` with the resources ``options`` ask for, each inside the profile's choices
    and the user's caps; SpawnException (400) naming what is allowed otherwise."""
    updates: dict[str, int | str | None] = {}
    for name in RESOURCE_KEYS:
        raw = options.get(name)
        if raw is None or raw == "":
            continue
        if getattr(profile.choices, name) is None:
            what = "a GPU model" if name == "gpu_model" else name
            raise SpawnException(f"The profile {profile.name!r} does not let you choose {what}.",
                                 reason="options")
        if name == "gpu_model":
            updates[name] = choose_model(profile, raw)
            continue
        try:
            value = _parse(name, raw)
        except ValueError as exc:
            raise SpawnException(f"{str(exc)[0].upper()}{str(exc)[1:]}.".replace("..", "."),
                                 reason="options") from None
        values, low, high = allowed(profile, name, caps)
        if values is not None and value not in values:
            listed = ", ".join(_show(name, v) for v in values)
            raise SpawnException(f"{name.capitalize()} {_show(name, value)} is not offered for "
                                 f"{profile.name!r}; choose one of: {listed}.", reason="options")
        if not low <= value <= high:
            raise SpawnException(f"{name.capitalize()} {_show(name, value)} is outside what you "
                                 f"may ask for {profile.name!r}: {_show(name, low)} to "
                                 f"{_show(name, high)}.", reason="options")
        updates[name] = value
    if updates:
        profile = profile.model_copy(update={
            "resources": profile.resources.model_copy(update=updates)})
    return capped_extend(profile, caps)


def capped_extend(profile: Profile, caps: Caps) -> Profile:
    """``profile`` whose ``extend.max_runtime`` (more time, moretime.py) keeps to the user's
    runtime cap as the runtime chosen at the start does: a user capped at 2 h does not
    reach 3 h by asking for more time (never below the runtime the server was given)."""
    if profile.extend is None or caps.runtime is None:
        return profile
    most = max(min(profile.extend.max_runtime, caps.runtime), profile.resources.runtime)
    if most == profile.extend.max_runtime:
        return profile
    return profile.model_copy(update={"extend": profile.extend.model_copy(
        update={"max_runtime": most})})


def models(profile: Profile) -> list[str]:
    """The GPU models a profile offers, "any" first when the profile names none."""
    offered = profile.choices.gpu_model.choices if profile.choices.gpu_model else []
    return ([] if profile.resources.gpu_model else [ANY_MODEL]) + list(offered)


def choose_model(profile: Profile, raw: object) -> str | None:
    """The GPU model ``raw`` names among the profile's (None: any); SpawnException else."""
    offered = models(profile)
    if not isinstance(raw, str) or raw not in offered:
        shown = raw if isinstance(raw, str) and len(raw) < 40 else "(invalid)"
        raise SpawnException(f"GPU model {shown!r} is not offered for {profile.name!r}; "
                             f"choose one of: {', '.join(offered)}.", reason="options")
    return None if raw == ANY_MODEL else raw


@dataclass(frozen=True)
class FormField:
    """One resource a profile lets this user choose, as the spawn form shows it."""

    name: str  # memory, cores, gpus, runtime
    label: str
    default: str  # as typed: 28GiB, 4, 1d
    values: list[tuple[str, str]] | None  # (as typed, as shown) when the profile lists them
    hint: str  # the range, read by screen readers with the field


def _typed(name: str, value: int) -> str:
    if name == "memory":
        return format_size(value)
    if name == "runtime":
        return f"{value // 3600}h" if value % 3600 == 0 else f"{max(1, value // 60)}m"
    return str(value)


LABELS = {"memory": "Memory", "cores": "CPU cores", "gpus": "GPUs", "gpu_model": "GPU model",
          "runtime": "Runtime"}


def form_fields(profile: Profile, caps: Caps) -> list[FormField]:
    fields = []
    if profile.dask.offer_at_start and profile.dask.most(caps):
        most = profile.dask.most(caps)
        fields.append(FormField(
            name=DASK_WORKERS, label="Dask workers started with the server", default="0",
            values=None, hint=f"0 to {most}: batch jobs of their own, in JupyterLab's Dask "
                              "sidebar, ended with the server"))
    for name in profile.choices.fields():
        if name == "gpu_model":
            offered = models(profile)
            fields.append(FormField(
                name=name, label=LABELS[name], default=profile.resources.gpu_model or ANY_MODEL,
                values=[(m, "Any model" if m == ANY_MODEL else m) for m in offered],
                hint="The GPU model the job asks the scheduler for."))
            continue
        values, low, high = allowed(profile, name, caps)
        fields.append(FormField(
            name=name, label=LABELS[name], default=_typed(name, getattr(profile.resources, name)),
            values=None if values is None else [(_typed(name, v), _show(name, v))
                                                for v in values],
            hint=f"{_show(name, low)} to {_show(name, high)}"))
    return fields
