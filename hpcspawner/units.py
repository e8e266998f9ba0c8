"""Sizes (``12GiB``) and durations (``6h``, ``1d12h``, ``02:30:00``) as admins write them."""

from __future__ import annotations

import re

_SIZE_UNITS = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
_SIZE_RE = re.compile(r"^(?P<num>[0-9]+(?:\.[0-9]+)?)(?P<unit>KiB|MiB|GiB|TiB)$")
_DURATION_PART_RE = re.compile(r"([0-9]+)([dhms])")
_DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_CLOCK_RE = re.compile(r"^(?:(?P<d>[0-9]+)-)?(?P<h>[0-9]+):(?P<m>[0-5][0-9]):(?P<s>[0-5][0-9])$")


def parse_size(text: str) -> int:
    """Return the number of bytes in ``text`` (``12GiB``, ``512MiB``).

    Raises ValueError with a sentence that says what to write instead.
    """
    value = str(text).strip()
    match = _SIZE_RE.match(value)
    if not match:
        digits = re.sub(r"[^0-9.]", "", value) or "12"
        raise ValueError(
            f"'{text}' is not a size; write {digits}GiB (a number and KiB, MiB, GiB or TiB, "
            "no space)"
        )
    number = float(match.group("num"))
    size = int(number * _SIZE_UNITS[match.group("unit")])
    if size <= 0:
        raise ValueError(f"'{text}' is not a size above zero")
    return size


def parse_duration(text: str | int) -> int:
    """Return seconds for ``6h``, ``1d12h``, ``90m``, ``45s``, ``02:30:00`` or ``1-00:00:00``."""
    if isinstance(text, bool):
        raise ValueError(f"'{text}' is not a duration")
    if isinstance(text, int):
        raise ValueError(f"'{text}' has no unit; write e.g. {text}s, {text}m or {text}h")
    value = str(text).strip()
    clock = _CLOCK_RE.match(value)
    if clock:
        days = int(clock.group("d") or 0)
        return days * 86400 + int(clock.group("h")) * 3600 + int(clock.group("m")) * 60 + int(
            clock.group("s")
        )
    parts = _DURATION_PART_RE.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(
            f"'{text}' is not a duration; write e.g. 6h, 30m, 1d12h or 06:00:00"
        )
    units = [u for _, u in parts]
    if len(set(units)) != len(units):
        raise ValueError(f"'{text}' repeats a unit; write e.g. 1d12h")
    seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"'{text}' is not a duration above zero")
    return seconds


def format_size(size: int) -> str:
    """Largest whole IEC unit: 12884901888 -> '12GiB'."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = _SIZE_UNITS[unit]
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def show_size(size: int) -> str:
    """For people to read: 17179869184 -> '16 GiB' (format_size is what one types)."""
    text = format_size(size)
    return f"{text[:-3]} {text[-3:]}" if text.endswith("iB") else f"{text[:-1]} B"


def split_duration(seconds: int) -> tuple[int, int, int, int]:
    """(days, hours, minutes, seconds) of whole seconds: every written form of a duration (for
    people, for profiles.yaml, SLURM's D-HH:MM:SS) is made from this one split."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return days, hours, minutes, secs


def typed_duration(seconds: int) -> str:
    """What one types in profiles.yaml: 43200 -> '12h', 5400 -> '1h30m', 129600 -> '1d12h'."""
    parts = zip(split_duration(seconds), "dhms", strict=True)
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def format_duration(seconds: int) -> str:
    """Human form for the form and messages: 43200 -> '12 h', 5400 -> '1 h 30 min'."""
    days, hours, minutes, secs = split_duration(seconds)
    out = []
    if days:
        out.append(f"{days} d")
    if hours:
        out.append(f"{hours} h")
    if minutes:
        out.append(f"{minutes} min")
    if secs:
        out.append(f"{secs} s")
    return " ".join(out) or "0 s"


def mebibytes(size: int) -> int:
    """Bytes -> MiB rounded up (SLURM ``--mem=...M`` and HTCondor ``request_memory``)."""
    return -(-size // 1024**2)
