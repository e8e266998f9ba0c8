"""Text that other people wrote (job tags, hold reasons, owners' names), made fit for one line
of the hub's log: quoted, control characters escaped (a newline in a hold reason cannot
forge a log line), and cut at a length."""

from __future__ import annotations


def shown(value: object, limit: int = 200) -> str:
    """``value`` as one quoted log word: ``'a\\nb'``; cut after ``limit`` characters."""
    text = str(value)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


_BREAKS = {i: f"\\x{i:02x}" for i in (*range(32), 127, 0x85)} | {0x2028: "\\u2028",
                                                                  0x2029: "\\u2029"}


def one_line(value: object, limit: int = 1000) -> str:
    """``value`` with every control character and line separator escaped (``\\x0a``), cut
    after ``limit`` characters: a sentence another user wrote (a hold reason) shown to a user
    or written in a log cannot start a line of its own."""
    text = str(value)
    cut = text[:limit].translate(_BREAKS)
    return cut + ("..." if len(text) > limit else "")
