"""The profile schema (profiles.yaml's fields, each checked with a sentence that says what to
write): resources, choices and caps, Dask and more-time settings, the HTCondor block and the
fast path, apps, and the profile itself. Which schedulers exist is told by the backends
(``know_schedulers``): the schema imports nothing above it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Generic, Protocol

from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)

from .profile_types import (
    BUILTIN_APPS,
    SAVED,
    SLUG_RE,
    TOKEN_RE,
    AbsPath,
    Duration,
    GpuModel,
    OneLine,
    Size,
    Strict,
    UrlPath,
    V,
)
from .units import format_duration, format_size, show_size


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


class Resources(Strict):
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


class RangeChoice(Strict, Generic[V]):
    """What a user may ask of one resource: ``{min: 16GiB, max: 64GiB}`` or ``{choices: [...]}``
    (memory a Size, cores and GPUs a count, runtime a Duration)."""

    min: V | None = None
    max: V | None = None
    choices: list[V] | None = None


class ModelChoice(Strict):
    """Which GPU model a user may ask for: ``{choices: [a100, h100]}``. Without a model in
    the profile's resources, "any" model is offered too (and is the default)."""

    choices: list[GpuModel] = Field(min_length=1)


class Choices(Strict):
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


class Caps(Strict):
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


class CapTable(Strict):
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


class DaskSettings(Strict):
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


class ExtendSettings(Strict):
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


class _Location(Strict):
    """Where HTCondor jobs go: a schedd (`-name`) and a pool (`-pool`); None = local."""

    schedd: OneLine | None = None
    pool: OneLine | None = None

    @field_validator("schedd", "pool")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not TOKEN_RE.match(value):
            raise ValueError(f"'{value}' is not a schedd or pool name (letters, digits, .:-_)")
        return value


class SlotSize(Strict):
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


class AppChoice(Strict):
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


class CustomApp(Strict):
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


class Profile(Strict):
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
