"""``hpcspawner import jupyterhub_config.py``: a site's batchspawner + wrapspawner settings as
profiles.yaml (docs/migrating.md).

The configuration is loaded as the hub loads it (traitlets), then read for: wrapspawner's
``ProfilesSpawner.profiles`` (display name, key, spawner class, settings), batchspawner's
``req_*`` settings (on ``BatchSpawnerBase``, ``SlurmSpawner``, ``CondorSpawner`` or a profile),
and a user-options form (``options_form`` HTML whose fields are named ``req_*``). Each
setting is carried over with the meaning batchspawner's default job script gives it, or named
in the notes with the reason it is not.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import yaml

from ..profiles import ProfileError, parse_profiles
from ..units import format_size, parse_size
from .slurm import slurm_seconds

SLURM_CLASSES = {"SlurmSpawner"}
CONDOR_CLASSES = {"CondorSpawner"}
SPAWNER_SECTIONS = ("Spawner", "BatchSpawnerBase")  # read first; the class's own section after
DEFAULT_MEMORY = 2 * 2**30  # a profile must say: batchspawner left it to the partition
DEFAULT_RUNTIME = 8 * 3600
# what batchspawner's default SLURM script passes besides the resources (as extra_options)
SLURM_OPTIONS = {"req_reservation": "--reservation"}
# settings batchspawner has that its default SLURM script never uses: a site that passed
# them wrote its own batch_script (noted), and the line to add is said
SLURM_UNUSED = {"req_account": "--account", "req_qos": "--qos", "req_cluster": "--clusters",
                "req_ngpus": "--gpus"}
# batchspawner settings with no place in a profile, and why
NOT_CARRIED = {
    "req_prologue": "the launcher starts the server; put environment set-up in "
                    "c.Spawner.environment or a job template override (docs/install.md)",
    "req_epilogue": "the launcher ends what the server left; site clean-up belongs in a job "
                    "template override",
    "req_srun": "the launcher runs the server in the batch step itself",
    "req_keepvars": "hpcspawner exports the environment the server needs itself",
    "req_keepvars_extra": "hpcspawner exports the environment the server needs itself",
    "req_host": "where to submit is the scheduler's own configuration on the hub host",
    "req_queue": "a Torque/PBS queue: hpcspawner has no PBS backend",
    "req_username": "jobs always run as the hub user they are for",
    "req_homedir": "jobs start in the user's home from the passwd database",
    "batch_script": "hpcspawner writes its own job script (templates/slurm.sbatch.j2, "
                    "htcondor.sub.j2); a site's lines go in extra_options or a template "
                    "override (docs/profiles.md)",
    "batch_submit_cmd": "the hub submits as the user through sudo rules (hpcspawner sudoers)",
    "batch_query_cmd": "the hub asks the scheduler itself, once per poll for all servers",
    "batch_cancel_cmd": "the hub cancels through hpcspawner-helper as the user",
    "exec_prefix": "the hub runs commands as the user through sudo rules (hpcspawner sudoers)",
}


@dataclass
class Imported:
    profiles: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not carried over, and why

    def yaml(self) -> str:
        return yaml.safe_dump({"profiles": self.profiles}, sort_keys=False, width=100,
                              allow_unicode=True)


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


def class_name(value: Any) -> str:
    """A spawner class given as a class or as its dotted name: its last name."""
    name = getattr(value, "__name__", None) or str(value)
    return name.rsplit(".", 1)[-1]


def slug(text: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return (name if name[:1].isalpha() else f"p-{name}")[:40] or "profile"


def slurm_memory(text: str) -> int:
    """sbatch --mem: a number (MiB) or with K/M/G/T (binary, "4gb" as SLURM reads it)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a SLURM memory size (e.g. 4G, 4096)")
    exponent = "kmgt".index(match.group(2).lower()) if match.group(2) else 1
    return int(float(match.group(1)) * 1024 ** (exponent + 1))


def condor_memory(text: str) -> int:
    """CondorSpawner's RequestMemory: MiB (a size with a unit is read as one, with a note)."""
    if re.fullmatch(r"\s*\d+\s*", text):
        return int(text) * 2**20
    return parse_size(text.replace(" ", ""))


def duration(seconds: int) -> str:
    """A runtime for profiles.yaml: 12h, 90m, 1d12h."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"),
                                           (secs, "s")) if n)
    return text or "0s"


def section(config: Any, name: str) -> dict[str, Any]:
    return dict(config[name]) if name in config else {}


def import_config(config: Any) -> Imported:
    """profiles.yaml's profiles from a loaded jupyterhub_config.py (traitlets Config)."""
    out = Imported()
    spawner = class_name(section(config, "JupyterHub").get("spawner_class", ""))
    base: dict[str, Any] = {}
    for name in SPAWNER_SECTIONS:
        base.update(section(config, name))
    listed = section(config, "ProfilesSpawner").get("profiles") or \
        section(config, "WrapSpawner").get("profiles")
    if listed:
        entries = [(str(p[0]), str(p[1]), class_name(p[2]), dict(p[3]) if len(p) > 3 else {})
                   for p in listed]
    elif spawner in SLURM_CLASSES | CONDOR_CLASSES:
        entries = [(f"{spawner} (imported)", "default", spawner, {})]
    else:
        raise ValueError("found neither wrapspawner's ProfilesSpawner.profiles nor "
                         "c.JupyterHub.spawner_class = SlurmSpawner/CondorSpawner: nothing "
                         "to import")
    for display, key, cls, own in entries:
        if cls not in SLURM_CLASSES | CONDOR_CLASSES:
            out.notes.append(f"profile {key!r} ({display}): {cls} is not a SLURM or HTCondor "
                             "batchspawner class; not carried over")
            continue
        settings = {**base, **section(config, cls), **own}
        form = settings.pop("options_form", "")
        for variant in form_variants(display, key, settings, form, out.notes):
            out.profiles.append(profile(*variant, cls in SLURM_CLASSES, out.notes))
    if out.profiles:
        out.profiles[0]["default"] = True
    try:
        parse_profiles(out.yaml())
    except ProfileError as exc:
        raise ValueError(f"the imported profiles do not pass hpcspawner check: {exc}") \
            from None
    return out


def form_variants(display: str, key: str, settings: dict[str, Any], form: Any,
                  notes: list[str]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """One (display, key, settings, choices) per profile the form makes: a partition select
    becomes one profile per partition; other selects and number inputs become choices."""
    if not isinstance(form, str) or not form.strip():
        if form:
            notes.append(f"profile {key!r}: options_form is not a plain HTML string (a "
                         "function?); not carried over: give the profile choices by hand")
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
    notes.append(f"profile {key!r}: the options form became choices of "
                 f"{', '.join(sorted(choices)) or 'nothing'}"
                 + (" and one profile per partition" if "req_partition" in fields.selects
                    else "") + " (the spawn page draws them; options_from_form is not needed)")
    partitions = fields.selects.get("req_partition") or []
    if not partitions:
        return [(display, key, settings, choices)]
    return [(f"{display} — {part}", f"{key}-{part}", {**settings, "req_partition": part},
             choices) for part in partitions]


def profile(display: str, key: str, settings: dict[str, Any], choices: dict[str, Any],
            slurm: bool, notes: list[str]) -> dict[str, Any]:
    name = slug(key)
    where = f"profile {name!r}"
    req = {k: str(v) for k, v in settings.items() if k.startswith("req_") and str(v) != ""}
    for k in sorted(set(settings) & set(NOT_CARRIED)):
        if settings[k] not in ("", None):
            notes.append(f"{where}: {k} not carried over: {NOT_CARRIED[k]}")
    out: dict[str, Any] = {"name": name, "display_name": display,
                           "backend": "slurm" if slurm else "htcondor"}
    cores = int(req.pop("req_nprocs", "1") or 1)
    if "req_memory" in req:
        text = req.pop("req_memory")
        memory = slurm_memory(text) if slurm else condor_memory(text)
    else:
        memory = DEFAULT_MEMORY
        notes.append(f"{where}: no req_memory (the {'partition' if slurm else 'pool'} "
                     f"default applied); set to {format_size(memory)}: check it")
    if "req_runtime" in req and slurm:
        runtime = slurm_seconds_or_fail(req.pop("req_runtime"))
    else:
        runtime = DEFAULT_RUNTIME
        why = ("CondorSpawner's job had no runtime limit" if not slurm else
               "no req_runtime (the partition's default time applied)")
        req.pop("req_runtime", None)
        notes.append(f"{where}: {why}; a profile needs one: set to {duration(runtime)}")
    resources: dict[str, Any] = {"cores": cores, "memory": format_size(memory),
                                 "runtime": duration(runtime)}
    extra: list[str] = []
    if slurm:
        if "req_partition" in req:
            out["partition"] = req.pop("req_partition")
        gres = req.pop("req_gres", "")
        match = re.fullmatch(r"gpu(?::([A-Za-z0-9_.-]+))?:(\d+)", gres)
        if match:
            resources["gpus"] = int(match.group(2))
            if match.group(1):
                resources["gpu_model"] = match.group(1)
        elif gres:
            extra.append(f"--gres={gres}")
        for setting, option in SLURM_UNUSED.items():
            if setting in req:
                notes.append(f"{where}: {setting} not carried over: batchspawner's default "
                             "SLURM script never passed it; if your batch_script did, add "
                             f"extra_options: [\"{option}={req.pop(setting)}\"]")
        for setting, option in SLURM_OPTIONS.items():
            if setting in req:
                extra.append(f"{option}={req.pop(setting)}")
        extra += shlex.split(req.pop("req_options", ""))
    else:
        extra += [line.strip() for line in req.pop("req_options", "").splitlines()
                  if line.strip()]
        if req.pop("req_partition", ""):
            notes.append(f"{where}: req_partition has no meaning for HTCondor; not carried")
    for k in sorted(req):
        if k not in NOT_CARRIED:
            notes.append(f"{where}: {k}={req[k]!r} not carried over: batchspawner's default "
                         "job script does not use it")
    out["resources"] = resources
    if extra:
        out["extra_options"] = extra
    picked = profile_choices(choices, slurm, notes, where)
    if picked:
        out["choices"] = picked
    return out


def profile_choices(form: dict[str, Any], slurm: bool, notes: list[str],
                    where: str) -> dict[str, Any]:
    """The form's req_* fields as a profile's choices (sizes and durations as profiles.yaml
    writes them)."""
    def memory(text: str) -> str:
        return format_size(slurm_memory(text) if slurm else condor_memory(text))

    read: dict[str, tuple[str, Callable[[str], Any]]] = {
        "req_memory": ("memory", memory),
        "req_runtime": ("runtime", lambda t: duration(slurm_seconds_or_fail(t))),
        "req_nprocs": ("cores", int), "req_ngpus": ("gpus", int)}
    out: dict[str, Any] = {}
    for setting, spec in sorted(form.items()):
        if setting not in read:
            notes.append(f"{where}: the form's {setting} not carried over: no profile choice "
                         "matches it")
            continue
        name, convert = read[setting]
        out[name] = ({"choices": [convert(v) for v in spec["choices"]]} if "choices" in spec
                     else {k: convert(v) for k, v in spec.items()})
    return out


def slurm_seconds_or_fail(text: str) -> int:
    seconds = slurm_seconds(text)
    if not seconds:
        raise ValueError(f"{text!r} is not a SLURM time limit (e.g. 12:00:00, 1-00:00:00)")
    return seconds
