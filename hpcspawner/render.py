"""Jinja2 templates (job scripts and the spawn form); admins override a template by file name.

A template is looked up in the directories given (the admin's ``template_paths``, then a site
backend's own ``template_dir``: job_builder.render_job), then among the package's own.

Generic quoting lives here (``shquote``, ``envname``); each scheduler's own quoting rules are
filters of its backend (``Backend.filters``), passed in when its template is rendered.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    select_autoescape,
)

_ENVNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RenderError(ValueError):
    """A value cannot be placed safely in a job script, or a template is broken."""


def package_templates() -> Path:
    """Templates shipped inside the wheel, or the checkout's top-level templates/."""
    here = Path(__file__).resolve().parent
    shipped = here / "templates"
    return shipped if shipped.is_dir() else here.parent / "templates"


def shquote(value: Any) -> str:
    """Quote for POSIX shells: the value stays one word, nothing in it is expanded."""
    return shlex.quote(str(value))


def envname(value: Any) -> str:
    """An environment variable name: letters, digits, underscore, not starting with a digit."""
    text = str(value)
    if not _ENVNAME_RE.match(text):
        raise RenderError(f"{text!r} is not an environment variable name")
    return text


@lru_cache(maxsize=16)
def environment(template_dirs: tuple[str, ...] = ()) -> Environment:
    loaders = [FileSystemLoader(list(template_dirs))] if template_dirs else []
    loaders.append(FileSystemLoader(str(package_templates())))
    env = Environment(
        loader=ChoiceLoader(loaders),
        undefined=StrictUndefined,
        # form.html.j2 is HTML: profile texts and scheduler reasons are escaped in it
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2"),
                                     default_for_string=False),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["shquote"] = shquote
    env.filters["envname"] = envname
    return env


def render_template(name: str, context: dict[str, Any], template_dirs: Sequence[str] = (),
                    filters: Mapping[str, Callable[[Any], str]] | None = None) -> str:
    """Render ``name`` (with a scheduler's ``filters``); a template mistake becomes a
    RenderError naming the template."""
    env = environment(tuple(template_dirs))
    if filters:
        env = env.overlay()
        env.filters.update(filters)
    try:
        return env.get_template(name).render(**context)
    except TemplateError as exc:
        where = f"{name}:{exc.lineno}" if isinstance(exc, TemplateSyntaxError) else name
        raise RenderError(f"template {where}: {exc.message or exc}") from None
