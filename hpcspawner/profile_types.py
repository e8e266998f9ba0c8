"""The value types of profiles.yaml, each with its check and the sentence that says what to
write: sizes (12GiB), durations (6h), one-line texts, GPU models, absolute paths, URL paths;
and the names and patterns the schema shares."""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from .units import parse_duration, parse_size

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
BUILTIN_APPS = ("notebook", "desktop", "streamlit")
URL_PATH_RE = re.compile(r"^/[A-Za-z0-9_.~/%+=&?-]*$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_.,:@+%=/-]+$")
GPU_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
ANY_MODEL = "any"  # the form's value for "any GPU model" when the profile names none


SAVED = "saved"  # validation context of Profile.restore: sizes and durations are numbers


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


class Strict(BaseModel):
    """A part of profiles.yaml: unknown fields are refused, values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
