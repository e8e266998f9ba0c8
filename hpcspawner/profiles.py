"""profiles.yaml: schema, loading with file:line errors, hot reload that keeps the last good file.

A profile is one entry of the dropdown ("Medium — 2 cores, 20 GiB, 6 h"). The file holds a
``defaults:`` block merged under every profile, a ``profiles:`` list and, optionally, the
site's own ``apps:`` (docs/apps.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Generic, Protocol, TypeVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .units import format_duration, format_size, parse_duration, parse_size, show_size

log = logging.getLogger("hpcspawner.profiles")

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
BUILTIN_APPS = ("notebook", "desktop", "streamlit")
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9_.~/%+=&?-]*$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_.,:@+%=/-]+$")
GPU_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
ANY_MODEL = "any"  # the form's value for "any GPU model" when the profile names none


SAVED = "saved"  # validation context of Profile.restore: sizes and durations are numbers


class SchedulerFacts(Protocol):
    """What the schema asks of a scheduler backend (a Backend class)."""

    name: str
    can_extend: bool


# Which schedulers exist, by the names profiles use: the backends package tells the schema
# when it loads (``know_schedulers``), so the schema imports nothing above it.
_SCHEDULERS: list[Callable[[], Mapping[str, SchedulerFacts]]] = []


def know_schedulers(catalogue: Callable[[], Mapping[str, SchedulerFacts]]) -> None:
    """Profiles name the schedulers ``catalogue()`` lists (asked at each validation: a
    backend registered later counts)."""
    _SCHEDULERS[:] = [catalogue]


def schedulers() -> Mapping[str, SchedulerFacts]:
    if not _SCHEDULERS:
        raise RuntimeError("no scheduler backend is known: import hpcspawner.backends before "
                           "reading profiles")
    return _SCHEDULERS[0]()


def _saved_number(value: Any, info: ValidationInfo) -> bool:
    return type(value) is int and isinstance(info.context, dict) and bool(info.context.get(SAVED))


def _size(value: Any, info: ValidationInfo) -> int:
    if _saved_number(value, info):
        return int(value)
    if isinstance(value, (bool, int, float)):
        raise ValueError(f"'{value}' has no unit; write e.g. {value}GiB")
    return parse_size(str(value))


def _duration(value: Any, info: ValidationInfo) -> int:
    if _saved_number(value, info):
        return int(value)
    return parse_duration(value)


def _one_line(value: Any) -> Any:
    if isinstance(value, str) and ("\n" in value or "\r" in value or "\0" in value):
        raise ValueError("must be a single line (no newline)")
    return value


def _gpu_model(value: Any) -> Any:
    if isinstance(value, str) and (not GPU_MODEL_RE.match(value) or value == ANY_MODEL):
        raise ValueError(f"'{value}' is not a GPU model name; use the name the scheduler "
                         "knows (a SLURM gres type such as a100): letters, digits, _.-")
    return value


Size = Annotated[int, BeforeValidator(_size)]
Duration = Annotated[int, BeforeValidator(_duration)]
OneLine = Annotated[str, BeforeValidator(_one_line)]
GpuModel = Annotated[str, BeforeValidator(_gpu_model)]


V = TypeVar("V")  # the value type of a RangeChoice


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resources(_Strict):
    cores: PositiveInt = 1
    memory: Size = Field(description="memory with a unit, e.g. 12GiB")
    runtime: Duration = Field(description="wall time, e.g. 6h or 1d12h")
    gpus: NonNegativeInt = 0
    gpu_model: GpuModel | None = None  # SLURM gres type / HTCondor DeviceName; None: any

    def summary(self) -> str:
        cores = f"{self.cores} core" + ("s" if self.cores != 1 else "")
        memory = show_size(self.memory)
        parts = [cores, memory, format_duration(self.runtime)]
        if self.gpus:
            model = f" {self.gpu_model}" if self.gpu_model else ""
            parts.insert(1, f"{self.gpus}{model} GPU" + ("s" if self.gpus != 1 else ""))
        return ", ".join(parts)


class RangeChoice(_Strict, Generic[V]):
    """What a user may ask of one resource: ``{min: 16GiB, max: 64GiB}`` or ``{choices: [...]}``
    (memory a Size, cores and GPUs a count, runtime a Duration)."""

    min: V | None = None
    max: V | None = None
    choices: list[V] | None = None


class ModelChoice(_Strict):
    """Which GPU model a user may ask for: ``{choices: [a100, h100]}``. Without a model in
    the profile's resources, "any" model is offered too (and is the default)."""

    choices: list[GpuModel] = Field(min_length=1)


class Choices(_Strict):
    """The resources a profile lets its users set (docs/profiles.md#choices); the profile's
    ``resources`` are the defaults and must lie inside."""

    memory: RangeChoice[Size] | None = None
    cores: RangeChoice[NonNegativeInt] | None = None
    gpus: RangeChoice[NonNegativeInt] | None = None
    runtime: RangeChoice[Duration] | None = None
    gpu_model: ModelChoice | None = None

    def fields(self) -> list[str]:
        return [name for name in ("memory", "cores", "gpus", "gpu_model", "runtime")
                if getattr(self, name) is not None]


class Caps(_Strict):
    """The most a user may choose (``caps:`` in profiles.yaml): CC-IN2P3's per-user and
    per-group limits. A user's cap is the largest of their own, their groups' and the default."""

    memory: Size | None = None
    cores: PositiveInt | None = None
    gpus: NonNegativeInt | None = None
    runtime: Duration | None = None
    # the most of each that all of a user's servers (named servers too) hold at once
    total_memory: Size | None = None
    total_cores: PositiveInt | None = None
    total_gpus: NonNegativeInt | None = None
    # the most Dask worker jobs one server may run at once (hpcspawner.dask; docs/dask.md)
    dask_workers: NonNegativeInt | None = None


class CapTable(_Strict):
    default: Caps = Field(default_factory=Caps)
    groups: dict[str, Caps] = Field(default_factory=dict)
    users: dict[str, Caps] = Field(default_factory=dict)

    def for_user(self, user: str, groups: Iterable[str]) -> Caps:
        entries = [self.default, *(self.groups[g] for g in groups if g in self.groups)]
        if user in self.users:
            entries.append(self.users[user])
        merged: dict[str, int] = {}
        for entry in entries:
            for name, value in entry.model_dump(exclude_none=True).items():
                merged[name] = max(merged.get(name, value), value)
        return Caps.model_construct(None, **merged)  # values checked already


class DaskSettings(_Strict):
    """The Dask worker jobs a server of this profile may start from its notebooks
    (``dask:``; docs/dask.md). Workers use the backend, partition, extra options and runtime
    of ``worker_profile`` (default: the server's own profile), sized ``cores``/``memory``
    (default: that profile's)."""

    worker_profile: str | None = None
    max_workers: NonNegativeInt = 4  # 0: no Dask cluster from this profile
    cores: PositiveInt | None = None
    memory: Size | None = None
    # the spawn form asks how many workers to start with the server (CSCS's question)
    offer_at_start: bool = False

    def most(self, caps: Caps) -> int:
        """The most worker jobs one server of this profile may run for a user of ``caps``."""
        if caps.dask_workers is None:
            return self.max_workers
        return min(self.max_workers, caps.dask_workers)


class ExtendSettings(_Strict):
    """More time for a running server (``extend:``; docs/sessions.md): ``step`` at a time from
    the server's card (or the REST API), up to ``max_runtime`` in all."""

    step: Duration = 3600
    max_runtime: Duration

    @field_validator("step")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 60:
            raise ValueError("extend.step must be at least 1 minute (e.g. 1h)")
        return value


class _Location(_Strict):
    """Where HTCondor jobs go: a schedd (`-name`) and a pool (`-pool`); None = local."""

    schedd: OneLine | None = None
    pool: OneLine | None = None

    @field_validator("schedd", "pool")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not TOKEN_RE.match(value):
            raise ValueError(f"'{value}' is not a schedd or pool name (letters, digits, .:-_)")
        return value


class SlotSize(_Strict):
    """The size of the pool's reserved notebook slots (docs/htcondor.md)."""

    cores: PositiveInt = 1
    memory: Size


class FastPath(_Location):
    """HTCondor fast path: reserved notebook slots matched by a dedicated negotiator.

    ``schedd``/``pool`` name where fast-path jobs go, when not the profile's own. ``slot``:
    the reserved slots' size; a profile that asks more could never use them.
    """

    enabled: bool = True
    slot_attribute: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "IsJupyterSlot"
    timeout: Duration = 30
    fallback: bool = True
    slot: SlotSize | None = None


class HTCondorOptions(_Location):
    fast_path: FastPath | None = None


def _abs_path(value: Any) -> Any:
    if isinstance(value, str) and (not value.startswith("/") or "/../" in value + "/"
                                   or any(c.isspace() or c in "\0'\"$`;&|<>" for c in value)):
        raise ValueError(f"'{value}' must be an absolute path without '..', spaces or quotes")
    return value


def _url_path(value: Any) -> Any:
    if isinstance(value, str) and value and not URL_PATH_RE.match(value):
        raise ValueError(f"'{value}' must be a path below the server that starts with '/' "
                         "(e.g. /vscode/)")
    return value


AbsPath = Annotated[str, BeforeValidator(_abs_path)]
UrlPath = Annotated[str, BeforeValidator(_url_path)]


class AppChoice(_Strict):
    """What a profile runs: ``app: desktop``, or ``app: {name: streamlit, script: ...}``.

    ``script`` (streamlit): the dashboard every user of the profile gets; without it, each user
    names a script in their home on the spawn form. ``xstartup`` (desktop): the site's session
    start-up (default: hpcspawner's, XFCE where installed, else a window manager and a
    terminal). ``url`` (notebook): where the user lands, e.g. ``/tree`` for the classic
    notebook interface (default: the server's own, ``c.Spawner.default_url``). ``timeout``:
    how long the app may take to answer once the server runs.
    """

    name: str = "notebook"
    script: AbsPath | None = None
    xstartup: AbsPath | None = None
    url: UrlPath | None = None
    timeout: Duration = 60

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.match(value):
            raise ValueError(f"'{value}' is not an app name; use one of "
                             f"{', '.join(BUILTIN_APPS)} or an app defined under 'apps:'")
        return value

    @model_validator(mode="after")
    def _fits_the_app(self) -> AppChoice:
        if self.script is not None and self.name != "streamlit":
            raise ValueError("'script' is for app 'streamlit' only")
        if self.script is not None and not self.script.endswith(".py"):
            raise ValueError(f"script '{self.script}' is not a Python file (.py)")
        if self.xstartup is not None and self.name != "desktop":
            raise ValueError("'xstartup' is for app 'desktop' only")
        if self.url is not None and self.name != "notebook":
            raise ValueError("'url' is for app 'notebook' only (a site's app has its own "
                             "under 'apps:')")
        return self

    @property
    def user_script(self) -> bool:
        """Whether the user names the script (a streamlit app without a fixed one)."""
        return self.name == "streamlit" and self.script is None


class CustomApp(_Strict):
    """A site-defined app (``apps:`` in profiles.yaml), run by jupyter-server-proxy inside
    the user's server: e.g. VS Code or RStudio (docs/apps.md)."""

    title: OneLine = ""
    command: list[OneLine] = Field(min_length=1)
    url: UrlPath = ""  # where the user lands; default /NAME/
    ready_path: UrlPath = ""  # answers (status < 400) once the app is up; default: url
    timeout: Duration = 60
    absolute_url: bool = False

    @field_validator("command")
    @classmethod
    def _listens(cls, value: list[str]) -> list[str]:
        if any("{port}" in w for w in value):
            raise ValueError(
                "{port} is refused: the app would listen on a TCP port of the node, which "
                "any user of the node can take first or beside it, and jupyter-server-proxy "
                "would send the user's requests, login cookie included, to whoever answers "
                "there; make the app listen on {unix_socket} (code-server --socket, RStudio "
                "--www-socket, streamlit --server.address unix://...)")
        if not any("{unix_socket}" in w for w in value):
            raise ValueError("the command must contain {unix_socket}: where the app listens "
                             "(jupyter-server-proxy fills it in)")
        return value


class Profile(_Strict):
    name: str
    display_name: OneLine = ""
    description: OneLine = ""
    backend: str = "slurm"  # a name of backends.backend_classes()
    resources: Resources
    partition: OneLine | None = None
    extra_options: list[OneLine] = Field(default_factory=list)
    pending_timeout: Duration | None = None
    hold_timeout: Duration = 60
    idle_timeout: Duration | None = None  # stop a server idle this long (its job ends)
    default: bool = False
    app: AppChoice = Field(default_factory=AppChoice)
    groups: list[str] = Field(default_factory=list)
    users: list[str] = Field(default_factory=list)
    htcondor: HTCondorOptions = Field(default_factory=HTCondorOptions)
    choices: Choices = Field(default_factory=Choices)
    dask: DaskSettings = Field(default_factory=DaskSettings)
    extend: ExtendSettings | None = None  # None: the time limit cannot be extended

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG_RE.match(value):
            raise ValueError(
                f"'{value}' is not a profile name; use lower-case letters, digits, - and _ "
                "(e.g. medium, gpu-a100)"
            )
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        names = sorted(schedulers())
        if value not in names:
            raise ValueError(f"'{value}' is not a scheduler backend; use one of: "
                             f"{', '.join(repr(n) for n in names)}")
        return value

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str | None) -> str | None:
        if value is not None and not TOKEN_RE.match(value):
            raise ValueError(f"'{value}' is not a partition name (letters, digits, -_.,)")
        return value

    @model_validator(mode="after")
    def _defaults_inside_the_choices(self) -> Profile:
        model = self.choices.gpu_model
        if model is not None:
            if self.resources.gpus == 0 and self.choices.gpus is None:
                raise ValueError("choices.gpu_model: the profile asks for no GPU; set "
                                 "resources.gpus (or a gpus choice)")
            if self.resources.gpu_model is not None and (
                    self.resources.gpu_model not in model.choices):
                raise ValueError("choices.gpu_model: the profile's own resources.gpu_model "
                                 "must be one of the choices (it is the default)")
        for name in self.choices.fields():
            if name == "gpu_model":
                continue
            choice = getattr(self.choices, name)
            value = getattr(self.resources, name)
            if choice.choices is not None and (choice.min is not None or choice.max is not None):
                raise ValueError(f"choices.{name}: give either choices or min/max, not both")
            if choice.choices is not None and value not in choice.choices:
                raise ValueError(f"choices.{name}: the profile's own resources.{name} must be "
                                 "one of the choices (it is the default)")
            low = choice.min if choice.min is not None else value
            high = choice.max if choice.max is not None else value
            if not low <= value <= high:
                raise ValueError(f"choices.{name}: the profile's own resources.{name} (the "
                                 "default) must lie between min and max")
        return self

    @model_validator(mode="after")
    def _extends_beyond_its_runtime(self) -> Profile:
        extend = self.extend
        if extend is None:
            return self
        if not schedulers()[self.backend].can_extend:
            raise ValueError(f"extend: servers on {self.backend} cannot be given more time by "
                             "hpcspawner yet (docs/sessions.md); leave extend out")
        if extend.max_runtime <= self.resources.runtime:
            raise ValueError("extend.max_runtime must be longer than resources.runtime (the "
                             "time a server gets at start); otherwise leave extend out")
        return self

    @model_validator(mode="after")
    def _fits_the_fast_path(self) -> Profile:
        fast = self.htcondor.fast_path
        if fast is not None and fast.enabled and fast.slot is not None:
            problem = fast_path_misfit(self, fast.slot.cores, fast.slot.memory)
            if problem:
                raise ValueError(problem + " (htcondor.fast_path.slot)")
        return self

    def saved(self) -> dict[str, Any]:
        """This profile as a job's state keeps it (``restore`` reads it back)."""
        return self.model_dump(mode="json")

    @classmethod
    def restore(cls, saved: Any) -> Profile:
        """A profile ``saved`` kept, checked again (sizes and durations as plain numbers)."""
        return cls.model_validate(saved, context={SAVED: True})

    @property
    def fast_path_enabled(self) -> bool:
        """Its ``htcondor.fast_path`` block is on (only the HTCondor backend reads it:
        Backend.fast_path)."""
        fast = self.htcondor.fast_path
        return fast is not None and fast.enabled

    @property
    def title(self) -> str:
        return self.display_name or f"{self.name.capitalize()} — {self.resources.summary()}"

    def visible_to(self, user: str, groups: Iterable[str]) -> bool:
        """Profiles with ``groups``/``users`` are offered only to those; others to all."""
        if not self.groups and not self.users:
            return True
        return user in self.users or bool(set(self.groups) & set(groups))


def fast_path_misfit(profile: Profile, cores: int, memory: int) -> str:
    """Why ``profile`` can never match a reserved slot of ``cores``/``memory`` ('' if it can)."""
    asks = profile.resources
    if asks.cores <= cores and asks.memory <= memory:
        return ""
    return (f"it asks {asks.cores} core(s) and {format_size(asks.memory)} but the reserved "
            f"notebook slots have {cores} and {format_size(memory)}: it could "
            "never start on the fast path (every spawn would wait for the fall-back); ask at "
            "most the slots' size or drop fast_path")


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
