"""Figures in the docs come from the results they quote: a benchmark's committed results file
and the README's table say the same number (re-run, commit the results, update the text). The
real pool's results are rewritten only where a real pool runs (scripts/test, by hand), so a
test run never makes them disagree; the stand-in's are rewritten by every run of the suite."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("results", ["spawn_latency_htcondor_real"])
def test_the_readmes_fast_path_figure_is_its_results_p50(results: str) -> None:
    data = json.loads((REPO / "benchmarks" / "results" / f"{results}.json").read_text())
    [p50] = [v for k, v in data.items() if k.endswith("_p50") and k.startswith("hpcspawner")
             and isinstance(v, (int, float))]
    [row] = [line for line in (REPO / "README.md").read_text().splitlines()
             if f"benchmarks/results/{results}.json" in line]
    shown = re.search(r"\| ([0-9.]+) s / ", row)
    assert shown is not None and float(shown.group(1)) == round(p50, 2), row
    assert f"**{round(p50, 2)} s**" in (REPO / "docs" / "htcondor.md").read_text()


def schema_fields() -> list[tuple[str, str]]:
    """Every field of profiles.yaml, as (dotted path, default), from the schema itself."""
    import typing

    from pydantic import BaseModel

    from hpcspawner import profile_schema as schema

    def walk(model: type[BaseModel], prefix: str, out: list[tuple[str, str]]) -> None:
        for name, field in model.model_fields.items():
            path = prefix + name
            default = "required" if field.is_required() else repr(
                field.get_default(call_default_factory=True))
            out.append((path, default if len(default) < 40 else "see below"))
            for arg in (field.annotation, *typing.get_args(field.annotation)):
                for kind in (arg, *typing.get_args(arg)):
                    if isinstance(kind, type) and issubclass(kind, BaseModel):
                        walk(kind, path + ".", out)

    out: list[tuple[str, str]] = []
    walk(schema.Profile, "profiles[].", out)
    walk(schema.CustomApp, "apps.NAME.", out)
    walk(schema.Caps, "caps.default.", out)
    out += [("defaults", "{}"), ("caps.groups.NAME", "{}"), ("caps.users.NAME", "{}")]
    return list(dict.fromkeys(out))


def fields_table() -> str:
    rows = ["| field | default |", "|---|---|"]
    rows += [f"| `{path}` | `{default}` |" for path, default in schema_fields()]
    return "\n".join(rows) + "\n"


def test_docs_profiles_md_lists_every_field_of_the_schema() -> None:
    """docs/profiles.md's "Every field" table is made from the schema: regenerate it with
    HPCSPAWNER_WRITE_DOCS=1 when a field is added."""
    import os

    path = REPO / "docs" / "profiles.md"
    text = path.read_text()
    head, marker, rest = text.partition("## Every field\n")
    start = rest.index("| field | default |") if marker else -1
    if os.environ.get("HPCSPAWNER_WRITE_DOCS"):
        end = rest.index("\n\n", start) + 1 if start >= 0 else 0
        body = rest[:start] + fields_table() + rest[end:] if start >= 0 else (
            "\nEvery field of profiles.yaml, made from the schema (hpcspawner/profile_schema.py"
            "; `tests/test_docs.py` checks it):\n\n" + fields_table())
        path.write_text(head + "## Every field\n" + body if marker
                        else text.rstrip() + "\n\n## Every field\n" + body)
        text = path.read_text()
    assert fields_table() in text, ("docs/profiles.md's field table is not the schema's: "
                                    "HPCSPAWNER_WRITE_DOCS=1 pytest tests/test_docs.py")
