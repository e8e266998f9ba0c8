"""sbatch options as units of one option and its value, and which units are a profile's
resources (the SLURM backend's knowledge; ``hpcspawner import`` and ``hpcspawner check`` use it).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..profiles import Profile
from ..units import format_duration, format_size

# what an #SBATCH directive's value may hold (no space, quote or newline)
DIRECTIVE_RE = re.compile(r"^[A-Za-z0-9_.,:@+%=/-]+$")

# sbatch options as units of one option and its value, and which units are a profile's
# resources.
#
# Sites write sbatch options as shell words (batchspawner's ``req_options = "-c 2 --mem=24G"``,
# the ``#SBATCH`` lines of their own ``batch_script``). A profile's ``extra_options`` holds one
# unit per entry, written ``--name=value``: each entry is one ``#SBATCH`` line of the job script.
# Options that say what a profile's ``resources`` and ``partition`` say (``-c``, ``--mem``,
# ``--gres=gpu``, ``--gpus``, ``--time``, ``-p``, ...) belong there, not in ``extra_options``:
# the form, the caps, the availability, extend and the server's ``CPU_LIMIT``/``MEM_LIMIT`` read
# the profile, while sbatch takes the last of two values. ``hpcspawner import`` reads a site's
# options with :func:`read_request`; ``hpcspawner check`` warns about ``extra_options`` that are
# not one unit, or that repeat or override a resource (:func:`extra_option_warnings`).

# sbatch's short options (SLURM 22.05 `sbatch --help`): those that take a value, by long name
SHORT = {"a": "array", "A": "account", "b": "begin", "c": "cpus-per-task", "C": "constraint",
         "d": "dependency", "D": "chdir", "e": "error", "F": "nodefile", "G": "gpus",
         "i": "input", "J": "job-name", "L": "licenses", "M": "clusters", "m": "distribution",
         "n": "ntasks", "N": "nodes", "o": "output", "p": "partition", "q": "qos",
         "S": "core-spec", "t": "time", "w": "nodelist", "x": "exclude"}
SHORT_FLAGS = {"H": "hold", "k": "no-kill", "O": "overcommit", "Q": "quiet",
               "s": "oversubscribe", "v": "verbose", "W": "wait", "h": "help", "V": "version"}
# long options without a value, or whose value can only follow '=' (getopt's optional ones)
NEEDS_VALUE = frozenset(SHORT.values()) | {"gres", "reservation"}
LONG_FLAGS = {"hold", "ignore-pbs", "no-kill", "no-requeue", "overcommit", "parsable", "quiet",
              "reboot", "requeue", "oversubscribe", "spread-job", "use-min-nodes", "verbose",
              "wait", "contiguous", "help", "usage", "version", "test-only", "exclusive",
              "export", "nice", "propagate", "get-user-env", "wrap"}

# hpcspawner's job template writes these itself; why a site's own is left out
OWN = {
    "job-name": "hpcspawner names every job c.SlurmBackend.job_name (its one squeue asks for "
                "that name)",
    "comment": "the job's comment is hpcspawner's tag, which ties the job to its server",
    "chdir": "jobs start in the user's home",
    "output": "hpcspawner writes the job's output to ~/.hpcspawner/logs/ (the spawn page "
              "names the file)",
    "error": "hpcspawner writes the job's output and errors to ~/.hpcspawner/logs/ (the spawn "
             "page names the file)",
    "export": "the job script sets the server's environment itself; for the user's login "
              "environment set c.SlurmBackend.login_environment = True (docs/slurm.md)",
    "get-user-env": "the job started from the user's login environment; hpcspawner starts it "
                    "from a clean one unless c.SlurmBackend.login_environment = True "
                    "(docs/slurm.md)",
    "requeue": "a server's job is never requeued (hpcspawner writes --no-requeue)",
    "no-requeue": "hpcspawner writes --no-requeue itself",
    "parsable": "an option of the sbatch command line, not of a job script",
    "test-only": "an option of the sbatch command line, not of a job script",
    "wrap": "an option of the sbatch command line, not of a job script",
}
# what batchspawner's default SlurmSpawner script writes besides the settings below (the
# others of its fixed lines are hpcspawner's own: output, job name, chdir, export)
BATCHSPAWNER_FIXED = "--get-user-env=L"
# batchspawner's default SlurmSpawner script: the #SBATCH option each setting becomes (a
# line is written when the setting is not empty), in the script's order; req_options last
BATCHSPAWNER_LINES = (("req_partition", "partition"), ("req_runtime", "time"),
                      ("req_memory", "mem"), ("req_gres", "gres"),
                      ("req_nprocs", "cpus-per-task"), ("req_reservation", "reservation"))
# batchspawner settings its default SLURM script never writes, and the option that would
BATCHSPAWNER_UNUSED = {"req_account": "account", "req_qos": "qos", "req_cluster": "clusters"}



@dataclass(frozen=True)
class Option:
    """One option and its value as sbatch reads them: ``-c 2``, ``-c2``, ``--mem 24G`` and
    ``--mem=24G`` are each one. ``name`` is sbatch's long name (``cpus-per-task``), or for a
    short option sbatch does not have, its dash and letter."""

    name: str
    value: str | None
    written: str  # as the site wrote it

    @property
    def text(self) -> str:
        """The unit as one #SBATCH value: ``--name=value``, ``--name`` or ``-X``."""
        if self.name.startswith("-"):
            return self.name
        return f"--{self.name}" + (f"={self.value}" if self.value is not None else "")

    @property
    def missing_value(self) -> bool:
        """An option that needs a value (one of sbatch's short ones, a resource) has none."""
        return self.value is None and (self.name in NEEDS_VALUE or self.name in RESOURCES)


Word = Option | str  # an option, or a word that is no option (a value without its option)


def split_words(words: Iterable[str]) -> list[Word]:
    """Shell words as sbatch's getopt reads them: each option with its value."""
    items = list(words)
    out: list[Word] = []
    i = 0
    while i < len(items):
        word = items[i]
        i += 1
        if word.startswith("--") and len(word) > 2:
            name, eq, value = word[2:].partition("=")
            if eq or name in LONG_FLAGS or i >= len(items) or items[i].startswith("-"):
                out.append(Option(name, value if eq else None, word))
            else:  # its value is the next word
                out.append(Option(name, items[i], f"{word} {items[i]}"))
                i += 1
        elif word.startswith("-") and len(word) > 1:
            for j, letter in enumerate(word[1:], start=2):
                if letter in SHORT:
                    given = word[j:] or (items[i] if i < len(items) else None)
                    if not word[j:] and given is not None:
                        i += 1
                    shown = word if word[j:] or given is None else f"{word} {given}"
                    out.append(Option(SHORT[letter], given, shown))
                    break
                out.append(Option(SHORT_FLAGS.get(letter, f"-{letter}"), None, f"-{letter}"))
        else:
            out.append(word)
    return out


def split_options(text: str) -> list[Word]:
    """An option string (``-c 2 --mem=24G``) as units; ValueError if it is not shell words."""
    return split_words(shlex.split(text))


def script_words(script: str) -> list[tuple[int, Word]]:
    """The units of a job script's ``#SBATCH`` lines, with their line numbers: sbatch reads
    them up to the first line that is neither blank nor a comment."""
    out: list[tuple[int, Word]] = []
    for number, line in enumerate(script.splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        if not text.startswith("#"):
            break
        if re.match(r"#SBATCH(\s|$)", text):
            try:
                words = shlex.split(text[len("#SBATCH"):], comments=True)
            except ValueError:
                words = [text[len("#SBATCH"):].strip()]
            out += [(number, word) for word in split_words(words)]
    return out


def slurm_seconds(text: str) -> int | None:
    """A SLURM time (``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``, ``MM``) in seconds; None for
    UNLIMITED, INFINITE or what does not read."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if match is None:
        return None
    days, first, second, third = (int(g) if g else 0 for g in match.groups())
    if match.group(4) is not None:
        hours, minutes, secs = first, second, third
    elif match.group(1) is not None:  # D-HH or D-HH:MM
        hours, minutes, secs = first, second, 0
    elif match.group(3) is not None:  # MM:SS
        hours, minutes, secs = 0, first, second
    else:  # MM
        hours, minutes, secs = 0, first, 0
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def slurm_memory(text: str) -> int:
    """sbatch --mem in bytes: a number (MiB) or with K/M/G/T (binary; "4gb" as SLURM reads
    it). ValueError otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a SLURM memory size (e.g. 4G, 4096)")
    exponent = "kmgt".index(match.group(2).lower()) if match.group(2) else 1
    return int(float(match.group(1)) * 1024 ** (exponent + 1))


def gpu_request(value: str) -> tuple[tuple[str | None, int] | None, str]:
    """A --gres (or --gpus) value: (the GPUs it asks, as (model, count), or None; what else
    it asks, '' for nothing). ``gpu:a100:2,tmpfs:10G`` -> ((a100, 2), "tmpfs:10G")."""
    gpus: tuple[str | None, int] | None = None
    rest = []
    for item in value.split(","):
        kind, *more = item.split(":")
        if kind == "gpu" and "" in more:
            raise ValueError(f"'{item}' names no GPU count or type")
        if kind != "gpu" or gpus is not None or len(more) > 2 or \
                (len(more) == 2 and not more[1].isdigit()):
            rest.append(item)
        elif not more:
            gpus = (None, 1)
        elif len(more) == 1:
            gpus = (None, int(more[0])) if more[0].isdigit() else (more[0], 1)
        else:
            gpus = (more[0], int(more[1]))
    return gpus, ",".join(rest)


def gpus_value(value: str) -> tuple[str | None, int]:
    """--gpus=N or --gpus=MODEL:N."""
    model, _, count = value.rpartition(":")
    return (model or None), int(count)


@dataclass
class Request:
    """What option units ask SLURM for, as a profile says it (None: not asked), the units that
    stay ``extra_options`` and, by origin, a sentence for each unit that became a resource
    out of its usual place, overrode another or was left out."""

    partition: str | None = None
    cpus: int | None = None  # per task
    tasks: int | None = None
    memory: int | None = None
    memory_per_cpu: int | None = None
    memory_per_gpu: int | None = None
    runtime: int | None = None
    gpus: int | None = None
    gpu_model: str | None = None
    extra: list[tuple[str, str]] = field(default_factory=list)  # (origin, unit)
    said: list[tuple[str, str]] = field(default_factory=list)  # (origin, sentence)
    set_by: dict[str, tuple[str, str]] = field(default_factory=dict)  # kind: (origin, written)

    @property
    def cores(self) -> int | None:
        if self.cpus is None and self.tasks is None:
            return None
        return (self.cpus or 1) * (self.tasks or 1)

    @property
    def total_memory(self) -> int | None:
        if self.memory is not None:
            return self.memory
        if self.memory_per_cpu is not None:
            return self.memory_per_cpu * (self.cores or 1)
        if self.memory_per_gpu is not None:
            return self.memory_per_gpu * max(self.gpus or 0, 1)
        return None


def read_request(units: Iterable[tuple[str, Word, bool]]) -> Request:
    """Read ``(origin, unit, quiet)`` in sbatch's order (the last of two values wins):
    resources into the Request, the rest into ``extra``; a unit hpcspawner's script writes
    itself, or that cannot be read, is left out with the reason. ``quiet``: the unit is where
    its resource is normally said (batchspawner's ``req_nprocs`` as ``--cpus-per-task``, a
    line of a site's script), so only an override of it is said."""
    request = Request()
    for origin, unit, quiet in units:
        if isinstance(unit, str):
            request.said.append((origin, f"'{unit}' left out: it is no sbatch option (a value "
                                 "without its option?)"))
            continue
        try:
            _read(request, origin, unit, quiet)
        except ValueError as exc:
            request.said.append((origin, f"'{unit.written}' left out: {exc}"))
    return request


def _read(request: Request, origin: str, unit: Option, quiet: bool) -> None:
    name, value = unit.name, unit.value
    if unit.missing_value or (value == "" and name not in LONG_FLAGS):
        raise ValueError("it has no value")
    if name in OWN:
        request.said.append((origin, f"'{unit.written}' left out: {OWN[name]}"))
        return
    if name == "nodes":
        if value not in ("1", "1-1"):
            raise ValueError("a server's job runs on one node (hpcspawner writes --nodes=1)")
        return
    if name == "gres" and value is not None:
        gpus, rest = gpu_request(value)
        if gpus is not None:
            _resource(request, origin, unit, quiet, "gpus", gpus)
        if rest:
            _extra(request, origin, Option("gres", rest, unit.written))
        return
    setter = RESOURCE_OPTIONS.get(name)
    if setter is None or value is None:
        _extra(request, origin, unit)
        return
    kind, read = setter
    _resource(request, origin, unit, quiet, kind, read(value))


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"'{value}' is not a whole number above zero")
    return int(value)


def _memory(value: str) -> int:
    size = slurm_memory(value)
    if size <= 0:
        raise ValueError("--mem=0 asks for all of a node's memory; a profile names a size: "
                         "set resources.memory")
    return size


def _time(value: str) -> int:
    seconds = slurm_seconds(value)
    if not seconds:
        raise ValueError(f"'{value}' is not a time limit a profile can hold (e.g. 12:00:00, "
                         "1-00:00:00): set resources.runtime")
    return seconds


def _partition(value: str) -> str:
    if not DIRECTIVE_RE.match(value):
        raise ValueError(f"'{value}' is not a partition name")
    return value


def _gpus_option(value: str) -> tuple[str | None, int]:
    try:
        return gpus_value(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a GPU count (N or MODEL:N)") from None


RESOURCE_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "partition": ("partition", _partition), "cpus-per-task": ("cpus", _positive),
    "ntasks": ("tasks", _positive), "ntasks-per-node": ("tasks", _positive),
    "mem": ("memory", _memory), "mem-per-cpu": ("memory_per_cpu", _memory),
    "mem-per-gpu": ("memory_per_gpu", _memory), "time": ("runtime", _time),
    "gpus": ("gpus", _gpus_option), "gpus-per-node": ("gpus", _gpus_option),
    "gpus-per-task": ("gpus", _gpus_option),
}
# the options that are a profile's resources or partition (--gres: when it asks for GPUs)
RESOURCES = frozenset(RESOURCE_OPTIONS)
# the profile field each of the Request's own fields makes (for the sentences)
FIELD_OF = {"partition": "partition", "cpus": "resources.cores", "tasks": "resources.cores",
            "memory": "resources.memory", "memory_per_cpu": "resources.memory",
            "memory_per_gpu": "resources.memory", "runtime": "resources.runtime",
            "gpus": "resources.gpus"}


def _resource(request: Request, origin: str, unit: Option, quiet: bool, kind: str,
              value: Any) -> None:
    target = FIELD_OF[kind]
    group = "memory" if kind.startswith("memory") else kind  # (one of the three counts)
    before = request.set_by.get(group)
    if kind == "gpus":
        model, count = value
        request.gpus, request.gpu_model = count, model
    else:
        if kind.startswith("memory"):  # one of --mem, --mem-per-cpu, --mem-per-gpu counts
            request.memory = request.memory_per_cpu = request.memory_per_gpu = None
        setattr(request, kind, value)
    request.set_by[group] = (origin, unit.written)
    if before is not None and (before[0] != origin or not quiet):
        request.said.append((origin, f"'{unit.written}' overrides '{before[1]}' "
                             f"({before[0]}): sbatch takes the last; it is {target}"))
    elif not quiet:
        request.said.append((origin, f"'{unit.written}' is {target}"))


def _extra(request: Request, origin: str, unit: Option) -> None:
    if not DIRECTIVE_RE.match(unit.text):
        raise ValueError("it cannot be one #SBATCH value of hpcspawner's job script (letters, "
                         "digits and _.,:@+%=/- only); a job template override can carry it "
                         "(docs/profiles.md)")
    request.extra.append((origin, unit.text))


def batchspawner_units(settings: Mapping[str, str], script: str) -> list[tuple[str, Word, bool]]:
    """The units batchspawner's default SlurmSpawner script writes for these ``req_*``
    settings, in its order, each with the setting it came from (``script`` names the script
    for its fixed lines)."""
    units: list[tuple[str, Word, bool]] = [
        (script, word, False) for word in split_words([BATCHSPAWNER_FIXED])]
    for setting, name in BATCHSPAWNER_LINES:
        value = str(settings.get(setting, "") or "")
        if value:
            units.append((setting, Option(name, value, f"--{name}={value}"), True))
    options = str(settings.get("req_options", "") or "")
    try:
        units += [("req_options", word, False) for word in split_options(options)]
    except ValueError as exc:
        units.append(("req_options", f"{options} ({exc})", False))
    return units


def unused_setting(setting: str, value: str) -> str:
    """What to write for a batchspawner setting its default SLURM script never passed
    ('' when it is not one of those)."""
    if setting == "req_ngpus":
        return (f"batchspawner's default SLURM script never passed it (the jobs had no GPU); "
                f"to give the profile GPUs, set resources.gpus: {value}")
    if setting in BATCHSPAWNER_UNUSED:
        option = f"--{BATCHSPAWNER_UNUSED[setting]}={value}"
        return ("batchspawner's default SLURM script never passed it; to pass it, add "
                f"extra_options: [\"{option}\"]")
    return ""


def extra_option_warnings(profile: Profile) -> list[str]:
    """Each ``extra_options`` entry that is not one sbatch option with its value, cannot be
    an #SBATCH value, or repeats or overrides what the profile's resources or partition say
    or what hpcspawner's script writes itself. Each sentence starts with the entry's field."""
    out: list[str] = []
    entries = list(profile.extra_options)
    skip = -1
    for index, entry in enumerate(entries):
        if index == skip:
            continue
        where = f"extra_options[{index}] '{entry}'"
        try:
            words = split_options(entry)
        except ValueError as exc:
            out.append(f"{where}: not shell words ({exc})")
            continue
        options = [w for w in words if isinstance(w, Option)]
        if len(words) != 1 or not options:
            what = ("is no sbatch option" if not options else
                    f"holds {len(words)} options or words")
            out.append(f"{where} {what}: each entry is one option with its value, e.g. "
                       "--cpus-per-task=2 (hpcspawner writes one #SBATCH line per entry)")
            continue
        option = options[0]
        after = entries[index + 1] if index + 1 < len(entries) else ""
        if option.missing_value and after and not after.startswith("-"):
            option = Option(option.name, after, f"{entry} {after}")
            skip = index + 1
            out.append(f"{where} has no value: with extra_options[{index + 1}] '{after}' it is "
                       f"one option, {option.text}: write that as one entry")
        elif option.missing_value:
            out.append(f"{where} has no value: write the option and its value as one entry, "
                       f"e.g. --{option.name}=VALUE")
        elif not DIRECTIVE_RE.match(entry):
            out.append(f"{where} cannot be one #SBATCH value of the job script (letters, "
                       f"digits and _.,:@+%=/- only): write {option.text}"
                       if DIRECTIVE_RE.match(option.text) else
                       f"{where} cannot be one #SBATCH value of the job script (letters, "
                       "digits and _.,:@+%=/- only); a job template override can carry it")
        out += [f"{where} {text}" for text in _against_profile(option, profile)]
    return out


def _against_profile(option: Option, profile: Profile) -> list[str]:
    """What ``option`` repeats or overrides of the profile or of hpcspawner's own lines."""
    if option.name in OWN:
        return [f"overrides what hpcspawner's job script writes itself: {OWN[option.name]}; "
                "drop it"]
    if option.name == "nodes" and option.value not in ("1", "1-1"):
        return ["overrides --nodes=1: a server's job runs on one node; drop it"]
    try:
        request = read_request([("", option, True)])
    except ValueError:
        return []
    res = profile.resources
    found = []
    asked = {"partition": (request.partition, profile.partition),
             "resources.cores": (request.cores, res.cores),
             "resources.memory": (request.total_memory, res.memory),
             "resources.runtime": (request.runtime, res.runtime),
             "resources.gpus": ((request.gpus, request.gpu_model) if request.gpus is not None
                                else None, (res.gpus, res.gpu_model))}
    for target, (theirs, ours) in asked.items():
        if theirs is None:
            continue
        if theirs == ours:
            found.append(f"repeats {target}: drop it")
        else:
            readers = ("the spawn page's availability and extend read the profile's "
                       "partition" if target == "partition" else "the form, the caps and "
                       "the server's CPU_LIMIT and MEM_LIMIT read the profile's resources")
            found.append(f"overrides {target} ({_show(target, ours)}) with "
                         f"{_show(target, theirs)}: sbatch takes the last, but {readers}: set "
                         f"{target}: {_write(target, theirs)} and drop the option")
    return found


def _show(target: str, value: Any) -> str:
    if value is None:
        return "none"
    if target == "resources.memory":
        return format_size(int(value))
    if target == "resources.runtime":
        return format_duration(int(value))
    if target == "resources.gpus":
        count, model = value
        return f"{count}" + (f" {model}" if model else "")
    return str(value)


def _write(target: str, value: Any) -> str:
    """How profiles.yaml writes ``value`` for ``target``."""
    if target == "resources.runtime":
        seconds = int(value)
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        return "".join(f"{n}{u}" for n, u in ((days, "d"), (hours, "h"), (minutes, "m"),
                                               (secs, "s")) if n) or "0s"
    if target == "resources.gpus":
        count, model = value
        return f"{count}" + (f" (and resources.gpu_model: {model})" if model else "")
    return _show(target, value)
