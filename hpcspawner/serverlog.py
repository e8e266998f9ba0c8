"""Log lines a site can ship (docs/metrics.md#logs): every line about a server ends with the
server's fields in one fixed form, so a ticket's "my notebook did not start at 10:42" is one
grep: ``... user=alice server="" job=4242 profile=small`` (key=value), or the whole message as
one JSON object when the site sets ``c.HPCSpawner.log_format = "json"``."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

FIELDS = ("user", "server", "job", "profile")
FORMATS = ("keyvalue", "json")
_PLAIN = re.compile(r"[A-Za-z0-9_.:@/+-]+")


def keyvalue(fields: Mapping[str, str]) -> str:
    """``user=alice server="" job=4242``: a value with anything but plain characters (or
    none) is a JSON string, so a line always splits back into its fields."""
    return " ".join(f"{k}={v if _PLAIN.fullmatch(v) else json.dumps(v)}"
                    for k, v in fields.items())


class ServerLog(logging.LoggerAdapter[Any]):
    """The hub's logger for one server: each message gets the server's fields, read when
    the line is written (the job id appears once it is known)."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any],
                 fields: Callable[[], Mapping[str, str]], style: str = "keyvalue") -> None:
        super().__init__(logger, {})
        self.fields = fields
        self.style = style

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        text = str(msg) % args if args else str(msg)
        fields = {k: str(v) for k, v in self.fields().items()}
        if self.style == "json":
            line = json.dumps({"message": text, **fields})
        else:
            line = f"{text} {keyvalue(fields)}"
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, line, **kwargs)
