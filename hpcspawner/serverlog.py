"""Log lines a site can ship (docs/metrics.md#logs): every line about a server ends with the
server's fields in one fixed form, so a ticket's "my notebook did not start at 10:42" is one
grep: ``... user=alice server="" job=4242 profile=small`` (key=value; a message with ``=``,
a quote or a line break in it is one JSON string), or the whole message as one JSON object
when the site sets ``c.HPCSpawner.log_format = "json"``."""

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


def message(text: str) -> str:
    """The message as written before the fields: as is when plain, else (an ``=``, a quote,
    a line break: a hold reason or a job comment a user wrote may say ``user=alice
    job=4242``) one JSON string with each ``=`` as ``\\u003d``, so that no text in it reads as
    a field, not even to ``grep user=alice``, and ``json.loads`` gives it back."""
    if not any(c in text for c in '="\\') and text.isprintable():
        return text
    return json.dumps(text).replace("=", "\\u003d")


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
            line = f"{message(text)} {keyvalue(fields)}"
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, line, **kwargs)
