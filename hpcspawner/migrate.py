"""``hpcspawner import jupyterhub_config.py``: a site's batchspawner + wrapspawner settings as
profiles.yaml (docs/migrating.md).

The configuration is loaded as the hub loads it (traitlets), then read for wrapspawner's
``ProfilesSpawner.profiles`` (display name, key, spawner class, settings) or the hub's own
spawner class; the settings of each are merged as traitlets merges them for that class: a
site's subclass's own defaults, then the configuration's sections of each class it derives
from, then the profile's. A SLURM profile's resources are what its job script asks SLURM for
(batchspawner's default script, or the site's ``batch_script`` rendered), options included.
Everything else a site wrote is carried over or named in a note, at its line of the
configuration, with what to write instead; the notes are printed whether or not a file is
written, and a note that concerns several profiles is one note naming them.
"""

from __future__ import annotations

import ast
import asyncio
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import jinja2
import yaml
from jupyterhub.spawner import Spawner
from traitlets import TraitType
from traitlets.traitlets import DefaultHandler
from traitlets.utils.importstring import import_item

from .backends import backend_classes
from .backends.slurm_options import (
    batchspawner_units,
    read_request,
    script_words,
    slurm_memory,
    slurm_seconds,
    unused_setting,
)
from .profiles import SLUG_RE, ProfileError, parse_profiles
from .units import format_size, parse_duration, parse_size, typed_duration

# batchspawner's classes: the backend each becomes, or the scheduler hpcspawner has none for
BACKEND_OF = {"SlurmSpawner": "slurm", "MultiSlurmSpawner": "slurm", "CondorSpawner": "htcondor"}
OTHER_SCHEDULERS = {"TorqueSpawner": "Torque/PBS", "PBSSpawner": "PBS", "MoabSpawner": "Moab",
                    "GridengineSpawner": "Grid Engine", "LsfSpawner": "LSF"}
BATCH_BASES = ["Spawner", "BatchSpawnerBase", "BatchSpawnerRegexStates"]  # config sections
LIBRARIES = ("batchspawner", "wrapspawner", "jupyterhub", "traitlets")  # (a class the
# configuration file defines itself is in "builtins")
SPAWNER_TRAITS = frozenset(Spawner.class_trait_names())
DEFAULT_MEMORY = 2 * 2**30  # a profile must say: batchspawner left it to the partition
DEFAULT_RUNTIME = 8 * 3600
DEFAULT_SCRIPT = "batchspawner's default SLURM script"
# what a batchspawner job's command line set, read where hpcspawner has a field for it
DEFAULT_URL_ARG = re.compile(r"^--(?:[A-Za-z]+\.)?default[_-]url(?:=(.*))?$")
SERVER_COMMANDS = ("jupyterhub-singleuser", "batchspawner-singleuser")
CULL_KEY = re.compile(r"(cull|idle|inactiv)", re.IGNORECASE)
# batchspawner settings with no place in a profile, and why (what to write instead)
NOT_CARRIED = {
    "req_prologue": "the launcher starts the server; put environment set-up in "
                    "c.Spawner.environment or a job template override (docs/profiles.md)",
    "req_epilogue": "the launcher ends what the server left; site clean-up belongs in a job "
                    "template override (docs/profiles.md)",
    "req_srun": "the launcher runs the server in the batch step itself",
    "req_keepvars": "hpcspawner exports the environment the server needs itself",
    "req_keepvars_extra": "hpcspawner exports the environment the server needs itself; add "
                          "variables with c.Spawner.environment",
    "req_host": "where to submit is the scheduler's own configuration on the hub host",
    "req_queue": "a Torque/PBS queue: hpcspawner has no PBS backend",
    "req_username": "jobs always run as the hub user they are for",
    "req_homedir": "jobs start in the user's home from the passwd database",
    "batch_submit_cmd": "the hub submits as the user through sudo rules (hpcspawner sudoers)",
    "batch_query_cmd": "the hub asks the scheduler itself, once per poll for all servers",
    "batch_cancel_cmd": "the hub cancels through hpcspawner-helper as the user",
    "exec_prefix": "the hub runs commands as the user through sudo rules (hpcspawner sudoers)",
    "batchspawner_singleuser_cmd": "the launcher reports the server's port itself",
    "daemon_resolver": "the hub routes to the node SLURM names",
    "mem_limit": "the server is told the profile's resources.memory (MEM_LIMIT)",
    "cpu_limit": "the server is told the profile's resources.cores (CPU_LIMIT)",
    "start_timeout": "hpcspawner waits per profile with pending_timeout (the queue) and "
                     "c.HPCSpawner.start_timeout (the server's start)",
    "environment": "profiles.yaml has no per-profile environment: c.Spawner.environment "
                   "applies to every profile (or a job template override)",
}
METHODS = ("_get_batch_script", "get_req_subvars", "submit_batch_script", "start",
           "cmd_formatted_for_batch", "get_env", "user_env")


# --- where the configuration says things ----------------------------------------------------

class SourceMap:
    """The lines of a jupyterhub_config.py: each ``c.Section.name = ...``, each class and its
    attributes, each wrapspawner profile by its key. Settings made elsewhere (load_subconfig,
    an imported module) are named without a line."""

    def __init__(self, path: str):
        self.name = Path(path).name if path else ""
        self.settings: dict[tuple[str, str], int] = {}
        self.classes: dict[tuple[str, str], int] = {}
        self.keys: dict[str, list[int]] = {}
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8")) if path else None
        except (OSError, SyntaxError, ValueError):
            tree = None
        for node in ast.walk(tree) if tree is not None else ():
            if isinstance(node, ast.ClassDef):
                self.classes[(node.name, "")] = node.lineno
                for item in node.body:
                    for name in _targets(item):
                        self.classes[(node.name, name)] = item.lineno
            if not isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                continue
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute):
                    key = (target.value.attr, target.attr)
                    self.settings[key] = max(self.settings.get(key, 0), node.lineno)
                    if target.attr == "profiles":
                        self._profile_keys(node.value)

    def _profile_keys(self, value: ast.AST | None) -> None:
        for node in ast.walk(value) if value is not None else ():
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 3 and \
                    isinstance(node.elts[1], ast.Constant) and isinstance(node.elts[1].value, str):
                self.keys.setdefault(node.elts[1].value, []).append(node.lineno)

    def at(self, line: int | None) -> str:
        return f"{self.name}:{line}" if self.name and line else self.name or "the configuration"

    def setting(self, section: str, name: str) -> str:
        return self.at(self.settings.get((section, name)) or self.classes.get((section, name)))

    def profile(self, key: str, occurrence: int) -> str:
        lines = sorted(self.keys.get(key, []))
        line = lines[occurrence] if occurrence < len(lines) else \
            self.settings.get(("ProfilesSpawner", "profiles")) or \
            self.settings.get(("WrapSpawner", "profiles"))
        return self.at(line)


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [node.name]
    targets = getattr(node, "targets", [getattr(node, "target", None)])
    return [t.id for t in targets if isinstance(t, ast.Name)]


@dataclass
class Note:
    subject: str  # the setting, key or profile
    text: str
    wheres: list[str] = field(default_factory=list)  # file:line, each place it is written
    profiles: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        places: dict[str, list[str]] = {}  # file: its lines
        for where in self.wheres:
            name, _, line = where.partition(":")
            places.setdefault(name, [])
            if line and line not in places[name]:
                places[name].append(line)
        head = "; ".join(f"{name}:{', '.join(lines)}" if lines else name
                         for name, lines in places.items())
        head += f": {self.subject}" if self.subject else ""
        names = ", ".join(self.profiles)
        if len(self.profiles) == 1:
            head += f" (profile {names})"
        elif self.profiles:
            head += f" ({len(self.profiles)} profiles: {names})"
        return f"{head}: {self.text}"


class Notes:
    """What was not carried over as it was, and why: one note per subject and sentence,
    naming every line it was written at and every profile it concerns."""

    def __init__(self) -> None:
        self._notes: dict[tuple[str, str], Note] = {}

    def add(self, where: str, subject: str, text: str, profile: str = "") -> None:
        note = self._notes.setdefault((subject, text), Note(subject, text))
        if where not in note.wheres:
            note.wheres.append(where)
        if profile and profile not in note.profiles:
            note.profiles.append(profile)

    def __iter__(self) -> Iterator[Note]:
        return iter(self._notes.values())

    def __len__(self) -> int:
        return len(self._notes)


@dataclass
class Imported:
    profiles: list[dict[str, Any]] = field(default_factory=list)
    defaults: dict[str, Any] = field(default_factory=dict)
    notes: Notes = field(default_factory=Notes)
    failure: str = ""  # why nothing can be written ('' when the profiles are good)

    def yaml(self) -> str:
        data = {"defaults": self.defaults} if self.defaults else {}
        return yaml.safe_dump({**data, "profiles": self.profiles}, sort_keys=False, width=100,
                              allow_unicode=True)


# --- the spawner classes ---------------------------------------------------------------------

@dataclass
class SpawnerClass:
    """A spawner class as the configuration names it: the classes it derives from (the
    configuration's sections that apply, base first), the backend it becomes ('' none, with
    ``why``), and what a site's own subclass sets: defaults, computed defaults, methods."""

    shown: str
    chain: list[str]
    backend: str = ""
    why: str = ""
    defaults: dict[str, tuple[Any, str]] = field(default_factory=dict)  # name: (value, where)
    computed: dict[str, str] = field(default_factory=dict)  # name: where
    methods: dict[str, str] = field(default_factory=dict)  # name: where


def spawner_class(value: Any, source: SourceMap) -> SpawnerClass:
    shown = value.__name__ if isinstance(value, type) else str(value)
    cls, error = (value, "") if isinstance(value, type) else (None, "")
    if cls is None:
        try:  # a dotted name, or a name JupyterHub knows (its entry points: "simple")
            named = [e for e in entry_points(group="jupyterhub.spawners") if e.name == shown]
            cls = named[0].load() if named else import_item(shown) if "." in shown else None
        except Exception as exc:  # the site's module: any error it raises
            error = f"{type(exc).__name__}: {exc}"
    last = shown.rsplit(".", 1)[-1]
    if isinstance(cls, type):
        chain = [c.__name__ for c in reversed(cls.__mro__) if c is not object]
    else:
        known = last in BACKEND_OF or last in OTHER_SCHEDULERS
        chain = [*BATCH_BASES, last] if known else ["Spawner", last]
    out = SpawnerClass(shown, chain)
    batch = next((n for n in reversed(chain) if n in BACKEND_OF or n in OTHER_SCHEDULERS), "")
    if batch in BACKEND_OF:
        out.backend = BACKEND_OF[batch]
    elif batch:
        out.why = (f"{shown} runs {OTHER_SCHEDULERS[batch]} jobs: hpcspawner has no backend "
                   "for that scheduler")
    elif error:
        out.why = (f"{shown} cannot be imported here ({error}) and is no batchspawner class "
                   "by name: run hpcspawner import where the hub's packages are installed")
    else:
        out.why = (f"{shown} is no batchspawner SLURM or HTCondor spawner (nor a subclass of "
                   "one)" + (": it runs the server on the hub host, not as a batch job"
                             if "Local" in last or last in ("simple", "default") else ""))
    if isinstance(cls, type):
        _site_class_settings(cls, out, source)
    return out


def _site_class_settings(cls: type, out: SpawnerClass, source: SourceMap) -> None:
    """What the site's own classes between batchspawner's and ``cls`` set (base first)."""
    traits = set(getattr(cls, "class_trait_names", list)())
    for klass in reversed(cls.__mro__):
        if klass is object or klass.__module__.split(".")[0] in LIBRARIES:
            continue
        for name, value in vars(klass).items():
            where = source.setting(klass.__name__, name)
            if isinstance(value, DefaultHandler):
                out.computed[value.trait_name] = where
            elif isinstance(value, TraitType):
                if value.default_value is not None and str(value.default_value) != "":
                    out.defaults[name] = (value.default_value, where)
            elif name in traits and not callable(value):
                out.defaults[name] = (value, where)
            elif name in METHODS:
                out.methods[name] = where


# --- one profile -----------------------------------------------------------------------------

@dataclass
class Source:
    """One wrapspawner entry (or the hub's own spawner class)."""

    display: str
    key: str
    cls: SpawnerClass
    own: dict[str, Any]
    where: str


class Builder:
    """Builds the profiles of a configuration, one entry at a time, saying what it left."""

    def __init__(self, config: Any, source: SourceMap, notes: Notes):
        self.config, self.source, self.notes = config, source, notes
        self.names: set[str] = set()
        self.here = source.at(None)  # where the entry being built is written

    def merged(self, entry: Source) -> tuple[dict[str, Any], dict[str, str]]:
        """The entry's settings as traitlets merges them, and where each is written."""
        settings: dict[str, Any] = {}
        where: dict[str, str] = {}
        for name, (value, at) in entry.cls.defaults.items():
            settings[name], where[name] = value, f"{at}: {entry.cls.shown}.{name}"
        for section in entry.cls.chain:
            for name, value in _section(self.config, section).items():
                if section == "Spawner" and name in SPAWNER_TRAITS and not CULL_KEY.search(name):
                    continue  # still the hub's setting: HPCSpawner is a Spawner too
                settings[name] = value
                where[name] = f"{self.source.setting(section, name)}: c.{section}.{name}"
        for name, value in entry.own.items():
            settings[name], where[name] = value, f"{entry.where}: {name}"
        return settings, where

    def note(self, at: str, text: str, profile: str) -> None:
        where, _, subject = at.partition(": ")
        self.notes.add(where, subject, text, profile)

    def name_for(self, key: str, where: str) -> str:
        name = key if SLUG_RE.match(key) else slug(key)
        base, n = name, 2
        while name in self.names:
            name, n = f"{base[:60]}-{n}", n + 1
        if name != key:
            self.notes.add(where, f"key {key!r}", f"renamed {name!r} (a profile name is "
                           "lower-case letters, digits, - and _, and unique): spawn URLs and "
                           f"REST bodies say profile={name}", name)
        self.names.add(name)
        return name

    def build(self, entry: Source) -> list[dict[str, Any]]:
        self.here = entry.where
        settings, where = self.merged(entry)
        form = settings.pop("options_form", "")
        settings.pop("options_from_form", None)
        out = []
        for display, key, values, choices in form_variants(entry, settings, form, self.notes):
            name = self.name_for(key, entry.where)
            profile: dict[str, Any] = {"name": name, "display_name": display,
                                       "backend": entry.cls.backend}
            for method, at in entry.cls.methods.items():
                self.note(f"{at}: {entry.cls.shown}.{method}()", "what it changes in the job "
                          "is not read: compare `hpcspawner render` with a job of the old hub",
                          name)
            for trait, at in entry.cls.computed.items():
                self.note(f"{at}: {entry.cls.shown}.{trait}", "a computed default is not "
                          "read: set the value in profiles.yaml", name)
            kept = self.server_settings(values, where, profile)
            getattr(self, READERS[entry.cls.backend])(kept, where, profile)
            picked = profile_choices(choices, MEMORY_OF[entry.cls.backend], self.notes,
                                     entry.where, name)
            if picked:
                profile["choices"] = picked
            out.append(profile)
        return out

    def server_settings(self, settings: dict[str, Any], where: dict[str, str],
                        profile: dict[str, Any]) -> dict[str, Any]:
        """Carry what a profile says of its server (landing URL, idle culling); note the
        other non-batchspawner settings; return the batchspawner ones."""
        name, kept = profile["name"], {}
        for key, value in settings.items():
            at = where.get(key, f"{self.source.at(None)}: {key}")
            if key.startswith("req_") or key == "batch_script":
                kept[key] = value
            elif key == "default_url" and value:
                self.landing(str(value), at, profile)
            elif key in ("cmd", "args") and value:
                self.command(key, value, at, profile)
            elif CULL_KEY.search(key) and _seconds(value):
                profile["idle_timeout"] = duration(_seconds(value) or 0)
                self.note(at, f"carried over as idle_timeout: {profile['idle_timeout']} "
                          "(hpcspawner stops a server idle this long)", name)
            elif key in NOT_CARRIED:
                if value not in ("", None, {}, []):
                    self.note(at, f"not carried over: {NOT_CARRIED[key]}", name)
            elif key in SPAWNER_TRAITS:
                self.note(at, "not carried over: it applied to the old spawner class only; "
                          f"c.Spawner.{key} applies to hpcspawner's too", name)
            elif key.startswith("state_"):
                self.note(at, "not carried over: hpcspawner reads the scheduler's job states "
                          "itself", name)
            else:
                self.note(at, "not carried over: no profile field matches it", name)
        return kept

    def landing(self, url: str, at: str, profile: dict[str, Any]) -> None:
        if re.fullmatch(r"/[A-Za-z0-9_.~/%+=&?-]*", url):
            profile["app"] = {"name": "notebook", "url": url}
        else:
            self.note(at, f"{url!r} is not a path below the server: not carried over (write "
                      "app: {name: notebook, url: /PATH})", profile["name"])

    def command(self, key: str, value: Any, at: str, profile: dict[str, Any]) -> None:
        words = value.split() if isinstance(value, str) else [str(w) for w in value]
        rest, i = [], 0
        if key == "cmd" and words and Path(words[0]).name in SERVER_COMMANDS:
            i = 1
        while i < len(words):
            match = DEFAULT_URL_ARG.match(words[i])
            if match and (match.group(1) or i + 1 < len(words)):
                url = match.group(1) if match.group(1) is not None else words[i + 1]
                i += 1 if match.group(1) is not None else 2
                self.landing(url, at, profile)
                continue
            rest.append(words[i])
            i += 1
        if rest:
            self.note(at, f"{' '.join(rest)!r} not carried over: every hpcspawner profile runs "
                      "the server command c.Spawner.cmd with c.Spawner.args; another program "
                      "is an app (docs/apps.md), a landing page app: {name: notebook, url: ...}",
                      profile["name"])

    def unused(self, req: dict[str, str], where: dict[str, str], name: str) -> None:
        for key in sorted(req):
            at = where.get(key, key)
            if key in NOT_CARRIED:
                self.note(at, f"not carried over: {NOT_CARRIED[key]}", name)
            else:
                self.note(at, "not carried over: the job script never used it", name)

    def slurm(self, settings: dict[str, Any], where: dict[str, str],
              profile: dict[str, Any]) -> None:
        name = profile["name"]
        req = {k: str(v) for k, v in settings.items() if k.startswith("req_") and str(v) != ""}
        script = settings.get("batch_script")
        if script:
            units, used = self.site_script(str(script), req, where, name)
        else:
            units, used = batchspawner_units(req, DEFAULT_SCRIPT), set()
            used.update(k for k in req if k in ("req_partition", "req_runtime", "req_memory",
                                                 "req_gres", "req_nprocs", "req_reservation",
                                                 "req_options"))
            for key in sorted(set(req) - used):
                said = unused_setting(key, req[key])
                if said:
                    self.note(where.get(key, key), said, name)
                    used.add(key)
        request = read_request(units)
        for origin, sentence in request.said:
            self.note(where.get(origin, origin), sentence, name)
        self.unused({k: v for k, v in req.items() if k not in used}, where, name)
        if request.partition:
            profile["partition"] = request.partition
        memory = request.total_memory
        if memory is None:
            memory = DEFAULT_MEMORY
            self.note(f"{self.here}: memory", "the job asked for none (the "
                      f"partition's default applied); set to {format_size(memory)}: check it",
                      name)
        runtime = request.runtime
        if runtime is None:
            runtime = DEFAULT_RUNTIME
            self.note(f"{self.here}: runtime", "the job asked for no time limit (the "
                      f"partition's default applied); a profile needs one: set to "
                      f"{duration(runtime)}", name)
        resources: dict[str, Any] = {"cores": request.cores or 1, "memory": format_size(memory),
                                     "runtime": duration(runtime)}
        if request.gpus:
            resources["gpus"] = request.gpus
            if request.gpu_model:
                resources["gpu_model"] = request.gpu_model
        profile["resources"] = resources
        if request.extra:
            profile["extra_options"] = [unit for _, unit in request.extra]
        _tidy(profile)

    def site_script(self, script: str, req: dict[str, str], where: dict[str, str],
                    name: str) -> tuple[list[Any], set[str]]:
        """The units of a site's own batch_script, rendered as batchspawner renders it."""
        at = where.get("batch_script", "batch_script")
        subvars = {k[4:]: v for k, v in req.items()}
        try:
            text = render_script(script, subvars)
        except Exception as exc:  # the site's template: any error it raises
            self.note(at, f"cannot be rendered ({type(exc).__name__}: {exc}): its options are "
                      "not read; write the profile's resources by hand", name)
            return [], set(req)
        used = {k for k in req if re.search(rf"\b{re.escape(k[4:])}\b", script)}
        commands = [line.strip() for line in text.splitlines()[1:]
                    if line.strip() and not line.lstrip().startswith("#")
                    and SERVER_COMMANDS[0] not in line and not line.strip().startswith(
                        ("set ", "trap ", "echo ", "exit"))]
        if commands:
            self.note(at, f"its commands ({'; '.join(commands[:3])}"
                      + ("; ..." if len(commands) > 3 else "") + ") are not carried over: the "
                      "launcher starts the server; put set-up in c.Spawner.environment or a job "
                      "template override (docs/profiles.md)", name)
        self.note(at, "hpcspawner writes its own job script; this one's options were read into "
                  "the profile", name)
        return [(at_line(at, n), word, True) for n, word in script_words(text)], used

    def condor(self, settings: dict[str, Any], where: dict[str, str],
               profile: dict[str, Any]) -> None:
        name = profile["name"]
        req = {k: str(v) for k, v in settings.items() if k.startswith("req_") and str(v) != ""}
        if settings.get("batch_script"):
            self.note(where.get("batch_script", "batch_script"), "not read: hpcspawner writes "
                      "its own submit description (htcondor.sub.j2); site lines go in "
                      "extra_options or a template override", name)
        cores, memory = 1, None
        read: dict[str, Callable[[str], int]] = {"req_nprocs": int, "req_memory": condor_memory}
        for key in sorted(set(read) & set(req)):
            try:
                value = read[key](req.pop(key))
            except ValueError:
                self.note(where.get(key, key), f"{settings[key]!r} does not read as a number "
                          "(cores) or MiB: not carried over; set it in resources by hand", name)
                continue
            cores, memory = (value, memory) if key == "req_nprocs" else (cores, value)
        if memory is None:
            memory = DEFAULT_MEMORY
            self.note(f"{self.here}: memory", "no req_memory (the pool's default "
                      f"applied); set to {format_size(memory)}: check it", name)
        req.pop("req_runtime", None)
        self.note(f"{self.here}: runtime", "CondorSpawner's job had no runtime "
                  f"limit; a profile needs one: set to {duration(DEFAULT_RUNTIME)}", name)
        if req.pop("req_partition", ""):
            self.note(where.get("req_partition", "req_partition"), "has no meaning for "
                      "HTCondor; not carried over", name)
        extra = [line.strip() for line in req.pop("req_options", "").splitlines()
                 if line.strip()]
        self.unused(req, where, name)
        profile["resources"] = {"cores": cores, "memory": format_size(memory),
                                "runtime": duration(DEFAULT_RUNTIME)}
        if extra:
            profile["extra_options"] = extra
        _tidy(profile)


def _tidy(profile: dict[str, Any]) -> None:
    """profiles.yaml's order of fields."""
    order = ("name", "display_name", "backend", "partition", "resources", "extra_options",
             "idle_timeout", "app")
    items = sorted(profile.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                   else len(order))
    profile.clear()
    profile.update(items)


def at_line(at: str, line: int) -> str:
    """The note's place for line ``line`` of a script set at ``at`` (``file:N: subject``)."""
    where, _, subject = at.partition(": ")
    return f"{where}: {subject} line {line}"


def render_script(script: str, subvars: dict[str, str]) -> str:
    """A batch_script as batchspawner renders it: Jinja2 when it holds ``{{``/``{%``, else
    str.format; the values a hub would fill in at spawn time are placeholders."""
    values = {"cmd": SERVER_COMMANDS[0], "username": "USER", "homedir": "/home/USER",
              "keepvars": "PATH", "prologue": "", "epilogue": "", **subvars}
    if "{{" in script or "{%" in script:
        return jinja2.Template(script).render(**values)

    class Blank(dict[str, str]):
        def __missing__(self, key: str) -> str:
            return ""

    return script.format_map(Blank(values))


def _seconds(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value) if value > 0 else None
    text = str(value).strip()
    if text.isdigit():
        return int(text) or None
    try:
        return parse_duration(text)
    except ValueError:
        return None


def _section(config: Any, name: str) -> dict[str, Any]:
    return dict(config[name]) if name in config else {}


# --- the whole configuration -----------------------------------------------------------------

def import_config(config: Any, path: str = "") -> Imported:
    """profiles.yaml's profiles from a loaded jupyterhub_config.py (traitlets Config) at
    ``path``; ``failure`` says why none can be written, the notes are there either way."""
    source = SourceMap(path)
    out = Imported()
    builder = Builder(config, source, out.notes)
    entries = sources(config, source, out)
    if out.failure:
        return out
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.key in seen:
            out.notes.add(entry.where, f"key {entry.key!r}", f"used twice (first at "
                          f"{seen[entry.key]}): wrapspawner starts the first for both; this "
                          f"one ({entry.display!r}) is not carried over: give it a key of its "
                          "own")
            continue
        seen[entry.key] = entry.where
        if not entry.cls.backend:
            out.notes.add(entry.where, f"profile {entry.key!r} ({entry.display})",
                          f"not carried over: {entry.cls.why}" + would_be(entry, builder))
            continue
        out.profiles += builder.build(entry)
    culler(config, source, out)
    if not out.profiles:
        out.failure = (f"nothing to import: none of the {len(entries)} profile(s) runs on SLURM "
                       "or HTCondor (the notes say why each was left)")
        return out
    out.profiles[0]["default"] = True
    check_imported(out)
    return out


def sources(config: Any, source: SourceMap, out: Imported) -> list[Source]:
    hub = _section(config, "JupyterHub")
    listed = _section(config, "ProfilesSpawner").get("profiles") or \
        _section(config, "WrapSpawner").get("profiles")
    if listed:
        count: dict[str, int] = {}
        entries = []
        for item in listed:
            if not isinstance(item, (tuple, list)) or len(item) < 3 or \
                    not isinstance(item[3] if len(item) > 3 else {}, dict):
                out.notes.add(source.setting("ProfilesSpawner", "profiles"), "an entry",
                              f"{item!r} is no (display, key, class, settings) entry: not "
                              "carried over")
                continue
            display, key, cls = str(item[0]), str(item[1]), item[2]
            own = dict(item[3]) if len(item) > 3 else {}
            where = source.profile(key, count.get(key, 0))
            count[key] = count.get(key, 0) + 1
            entries.append(Source(display, key, spawner_class(cls, source), own, where))
        return entries
    value = hub.get("spawner_class", "")
    found = spawner_class(value, source) if value else None
    where = source.setting("JupyterHub", "spawner_class")
    if found is None or not found.backend:
        said = f"c.JupyterHub.spawner_class is {found.shown!r} ({where}): {found.why}" \
            if found else "c.JupyterHub.spawner_class is not set"
        out.failure = (f"found no wrapspawner ProfilesSpawner.profiles and {said}: nothing "
                       "to import")
        return []
    return [Source(f"{found.shown} (imported)", "default", found, {}, where)]


def would_be(entry: Source, builder: Builder) -> str:
    """For a profile of another batch scheduler: what it asked, as a profile would say it."""
    settings, _ = builder.merged(entry)
    try:
        cores = int(settings.get("req_nprocs") or 1)
        memory = format_size(slurm_memory(str(settings["req_memory"])))
        runtime = duration(slurm_seconds(str(settings["req_runtime"])) or 0)
    except (KeyError, ValueError):
        return ""
    queue = settings.get("req_queue") or settings.get("req_partition")
    return (f"; on SLURM or HTCondor it would be resources: {{cores: {cores}, memory: "
            f"{memory}, runtime: {runtime}}}" + (f", partition: {queue} (its queue)"
                                                  if queue else ""))


def culler(config: Any, source: SourceMap, out: Imported) -> None:
    """JupyterHub's idle-culler service: its --timeout as every profile's idle_timeout."""
    for service in _section(config, "JupyterHub").get("services") or []:
        command = [str(w) for w in (service.get("command") or [])] \
            if isinstance(service, dict) else []
        if not any("cull" in w for w in command):
            continue
        text = " ".join(command)
        match = re.search(r"--timeout[= ](\d+)", text)
        if match and out.profiles:
            out.defaults["idle_timeout"] = duration(int(match.group(1)))
            out.notes.add(source.setting("JupyterHub", "services"), "c.JupyterHub.services "
                          f"{service.get('name', '')!r}", f"--timeout={match.group(1)} carried "
                          f"over as idle_timeout: {out.defaults['idle_timeout']} for every "
                          "profile (defaults); hpcspawner stops idle servers itself, so the "
                          "service may go")


def check_imported(out: Imported) -> None:
    """The written file must pass `hpcspawner check`, warnings included."""
    try:
        profiles = parse_profiles(out.yaml())
    except ProfileError as exc:
        out.failure = ("the imported profiles do not pass hpcspawner check (please report "
                       "this): " + "; ".join(exc.problems))
        return
    classes = backend_classes()
    for p in profiles.profiles:
        for warning in asyncio.run(classes[p.backend]().profile_warnings(p)):
            out.failure = f"profile {p.name!r} would draw a warning from check: {warning}"


# --- batchspawner's options form ---------------------------------------------------------------

class FormFields(HTMLParser):
    """The ``req_*`` fields of an options form: a select's option values, a number input's
    min/max/value."""

    def __init__(self) -> None:
        super().__init__()
        self.selects: dict[str, list[str]] = {}
        self.selected: dict[str, str] = {}  # a select's option marked selected
        self.numbers: dict[str, dict[str, str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        name = a.get("name", "")
        if tag == "select" and name.startswith("req_"):
            self._select = name
            self.selects[name] = []
        elif tag == "option" and self._select is not None and "value" in a:
            self.selects[self._select].append(a["value"])
            if "selected" in a:
                self.selected[self._select] = a["value"]
        elif tag == "input" and name.startswith("req_") and a.get("type") == "number":
            self.numbers[name] = a

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def form_variants(entry: Source, settings: dict[str, Any], form: Any, notes: Notes,
                  ) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """One (display, key, settings, choices) per profile the form makes: a partition select
    becomes one profile per partition; other selects and number inputs become choices."""
    display, key = entry.display, entry.key
    if not isinstance(form, str) or not form.strip():
        if form:
            notes.add(entry.where, "options_form", "not a plain HTML string (a function?); "
                      "not carried over: give the profile choices by hand", key)
        return [(display, key, settings, {})]
    fields = FormFields()
    fields.feed(form)
    choices: dict[str, Any] = {}
    for name, values in fields.selects.items():
        if name != "req_partition" and values:
            choices[name] = {"choices": values}
            # what the form offered first (or marked selected) is the profile's default
            settings = {**settings, name: fields.selected.get(name, values[0])}
    for name, attrs in fields.numbers.items():
        if attrs.get("min") or attrs.get("max"):
            choices[name] = {k: attrs[k] for k in ("min", "max") if attrs.get(k)}
        if attrs.get("value"):
            settings = {**settings, name: attrs["value"]}
    notes.add(entry.where, "options_form", "became choices of "
              f"{', '.join(sorted(choices)) or 'nothing'}"
              + (" and one profile per partition" if "req_partition" in fields.selects else "")
              + " (the spawn page draws them; options_from_form is not needed)", key)
    partitions = fields.selects.get("req_partition") or []
    if not partitions:
        return [(display, key, settings, choices)]
    return [(f"{display} — {part}", f"{key}-{part}", {**settings, "req_partition": part},
             choices) for part in partitions]


def profile_choices(form: dict[str, Any], size: Callable[[str], int], notes: Notes,
                    where: str, name: str) -> dict[str, Any]:
    """The form's req_* fields as a profile's choices (sizes, read by ``size``, and durations
    as profiles.yaml writes them)."""
    def memory(text: str) -> str:
        return format_size(size(text))

    def runtime(text: str) -> str:
        seconds = slurm_seconds(text)
        if not seconds:
            raise ValueError(f"{text!r} is not a time limit (e.g. 12:00:00, 1-00:00:00)")
        return duration(seconds)

    read: dict[str, tuple[str, Callable[[str], Any]]] = {
        "req_memory": ("memory", memory), "req_runtime": ("runtime", runtime),
        "req_nprocs": ("cores", int), "req_ngpus": ("gpus", int)}
    out: dict[str, Any] = {}
    for setting, spec in sorted(form.items()):
        if setting not in read:
            notes.add(where, f"options_form {setting}", "not carried over: no profile choice "
                      "matches it", name)
            continue
        field_name, convert = read[setting]
        try:
            out[field_name] = ({"choices": [convert(v) for v in spec["choices"]]}
                               if "choices" in spec else
                               {k: convert(v) for k, v in spec.items()})
        except ValueError as exc:
            notes.add(where, f"options_form {setting}", f"not carried over: {exc}", name)
    return out


# --- words --------------------------------------------------------------------------------------

def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:63]
    return name or "profile"


def condor_memory(text: str) -> int:
    """CondorSpawner's RequestMemory: MiB (a size with a unit is read as one)."""
    if re.fullmatch(r"\s*\d+\s*", text):
        return int(text) * 2**20
    return parse_size(text.replace(" ", ""))


# how each backend's profiles are read from batchspawner's settings (Builder's methods), and
# how its batchspawner class reads a memory size
READERS = {"slurm": "slurm", "htcondor": "condor"}
MEMORY_OF: dict[str, Callable[[str], int]] = {"slurm": slurm_memory, "htcondor": condor_memory}


def duration(seconds: int) -> str:
    """A runtime for profiles.yaml: 12h, 90m, 1d12h."""
    return typed_duration(seconds)


def lines(notes: Iterable[Note]) -> list[str]:
    return [str(note) for note in notes]
