"""The package's seams: no module reaches into another's private names, no import cycle, and
every module imports on its own."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "hpcspawner"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def private_uses(tree: ast.AST) -> list[str]:
    """`other._name` (not self/cls) and `from .x import _name`: another's private names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            base = node.value
            if not (isinstance(base, ast.Name) and base.id in ("self", "cls")):
                found.append(f"line {node.lineno}: .{node.attr}")
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"line {node.lineno}: import {alias.name}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_module_uses_another_modules_private_names(path: Path) -> None:
    assert private_uses(ast.parse(path.read_text())) == []


def imports_of(path: Path, *, at_load_only: bool = False) -> set[str]:
    """hpcspawner modules ``path`` imports: every import statement, those inside functions
    included (a lazy import is still an import), but not those under TYPE_CHECKING (types
    only). ``at_load_only``: only those at the module's top level."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for child in node.body for n in ast.walk(child))
    nodes = tree.body if at_load_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("hpcspawner"):
                if node.module:  # (``from . import x`` imports x, not the package's code)
                    out.add(target)
                out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("hpcspawner"))
    known = {module_name(p) for p in MODULES}
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    graph = {module_name(p): imports_of(p) for p in MODULES}
    # a package's __init__ importing its own submodules is how packages export names
    return {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}


def test_no_import_cycle_inside_the_package() -> None:
    """No circle of imports, counting those inside functions (docs: DESIGN.md's layers)."""
    graph = import_graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep):], dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


# The package's layers, bottom first (DESIGN.md "Layers"): a module imports only from its own
# layer or those below it, at load or inside a function. A higher layer that a lower one must
# reach registers with it instead (the cards' server counts with metrics, the routes with
# JupyterHub through hub.install).
LAYERS: list[tuple[str, set[str]]] = [
    ("text, units, commands, rendering, the hub-job contract, the domain types", {
        "oneline", "units", "commands", "render", "compat", "serverlog", "metrics", "domain",
        "contract", "job_usage", "forwarder", "session_records"}),
    ("profiles and what is said of them; what runs inside the job", {
        "profile_types", "profile_schema", "profiles", "sentences", "launcher",
        "server_extension",
        "share.jupyter.jupyter_server_config"}),
    ("the scheduler backends", {"backends", "backends.base", "backends.errors",
                                "backends.slurm_words",
                                "backends.running", "backends.slurm", "backends.slurm_options",
                                "backends.htcondor", "backends.htcondor_ads"}),
    ("what a spawn is made of", {
        "apps", "job_builder", "tokenfile", "availability", "poller", "dask", "options",
        "migrate", "plan", "cancels"}),
    ("one spawn's job, what one hub process shares", {"job", "shared", "moretime"}),
    ("what the pages show of a job", {"cards"}),
    ("JupyterHub's adapter, its routes, the commands", {
        "spawner", "settings", "report", "sessions", "activity", "cli", "helper"}),
    ("the set-up in JupyterHub", {"hub"}),
    ("the package", {""}),
]


def layer_of(module: str) -> int:
    short = module.removeprefix("hpcspawner").removeprefix(".")
    for index, (_, names) in enumerate(LAYERS):
        if short in names:
            return index
    raise AssertionError(f"{module} is in no layer: place it in LAYERS (tests/test_structure.py)"
                         " and in DESIGN.md's layers")


def test_every_module_is_in_a_layer() -> None:
    for path in MODULES:
        layer_of(module_name(path))


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    upward = [f"{module} ({LAYERS[layer_of(module)][0]}) imports {dep} "
              f"({LAYERS[layer_of(dep)][0]})"
              for module, deps in sorted(import_graph().items()) for dep in sorted(deps)
              if layer_of(dep) > layer_of(module)]
    assert upward == [], "invert these (the higher one registers with the lower): " \
        + "; ".join(upward)


def fields_of(cls_name: str, path: Path) -> set[str]:
    """The instance fields ``cls_name`` sets on ``self`` in its own module."""
    tree = ast.parse(path.read_text())
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name]
    return {t.attr for n in ast.walk(cls) if isinstance(n, (ast.Assign, ast.AugAssign,
                                                              ast.AnnAssign))
            for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
            and t.value.id == "self"}


# objects whose fields only their own module assigns: (class, its module, the names other
# modules hold it under: a spawner's ``job``, and ``job`` where the module knows BatchJob)
OWNED = [("BatchJob", PACKAGE / "job.py", ("self.job", "spawner.job"))]


@pytest.mark.parametrize("owner", OWNED, ids=lambda o: o[0])
def test_only_its_own_module_assigns_the_fields_of(owner: tuple[str, Path, tuple[str, ...]],
                                                   ) -> None:
    cls_name, home, holders = owner
    fields = fields_of(cls_name, home)
    assert {"job_id", "address", "exited"} <= fields
    found = []
    for path in MODULES:
        if path == home:
            continue
        names = {*holders, *(("job",) if module_name(home) in imports_of(path) else ())}
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr in fields \
                        and ast.unparse(t.value) in names:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(t)}")
    assert found == [], f"ask the {cls_name} instead of assigning its fields: " \
        + ", ".join(found)


def test_every_module_imports_alone() -> None:
    names = [module_name(p) for p in MODULES]
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    for loaded in [m for m in sys.modules if m.startswith('hpcspawner')]:\n"
            "        del sys.modules[loaded]\n"
            "    importlib.import_module(name)\n")
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr


def test_the_launcher_starts_the_server_before_loading_anything_heavy() -> None:
    """Every server's start waits for the launcher's imports: the package's __init__ and the
    launcher load neither `typing` nor `urllib.request` (~35 ms together); the launcher
    imports urllib while the server starts (launcher.main)."""
    code = ("import sys, hpcspawner.launcher\n"
            "print(' '.join(m for m in ('typing', 'urllib.request', 'jinja2', 'jupyterhub')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == ""


# What only a backend (hpcspawner/backends/) and its template may know of its scheduler.
SCHEDULER_COMMANDS = ("sbatch", "squeue", "scancel", "sacct", "sacctmgr", "sinfo", "scontrol",
                      "srun", "salloc", "condor_submit", "condor_q", "condor_rm", "condor_hold",
                      "condor_release", "condor_qedit", "condor_status", "condor_history",
                      "condor_reschedule")
SCHEDULER_SPELLINGS = ("#SBATCH", "--partition", "--time=", "--mem=", "--gpus", "request_cpus",
                       "request_memory", "RemoteHost", "ClusterId", "JobStatus",
                       "LastRejMatchReason", "ReqNodeNotAvail", "no match found", "PrivateData",
                       "NodeList", "IsJupyterSlot")
BACKEND_NAMES = ("slurm", "htcondor")
# profile_schema.py is the profile schema: it names each backend's option block (``htcondor:``) and
# their defaults (the reserved slots' attribute)
SCHEMA = PACKAGE / "profile_schema.py"


def code_strings(path: Path) -> list[tuple[int, str]]:
    """String constants that are code, not prose: no docstring, no ``help=`` text."""
    tree = ast.parse(path.read_text())
    prose: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            prose.add(id(body[0].value))
        if isinstance(node, ast.keyword) and node.arg in ("help", "description"):
            prose.update(id(n) for n in ast.walk(node.value))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in prose]


def outside_backends() -> list[Path]:
    return [p for p in MODULES if "backends" not in p.relative_to(PACKAGE).parts
            and p != SCHEMA]


def test_no_scheduler_command_or_spelling_outside_the_backends() -> None:
    found = []
    for path in outside_backends():
        for line, text in code_strings(path):
            found += [f"{path.relative_to(REPO)}:{line}: {word}" for word in SCHEDULER_COMMANDS
                      if re.search(rf"(?<![\w-]){word}(?![\w-])", text)]
            found += [f"{path.relative_to(REPO)}:{line}: {word}" for word in SCHEDULER_SPELLINGS
                      if word in text]
    assert found == [], "move these into the backend that knows them: " + ", ".join(found)


def test_nothing_outside_the_backends_branches_on_a_backends_name() -> None:
    found = []
    for path in outside_backends():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                names = [n.value for n in ast.walk(node)
                         if isinstance(n, ast.Constant) and n.value in BACKEND_NAMES]
                found += [f"{path.relative_to(REPO)}:{node.lineno}: == {n!r}" for n in names]
    assert found == [], "ask the backend instead: " + ", ".join(found)


def test_the_readmes_layout_names_every_module() -> None:
    """The README's layout is the map a new maintainer reads first: every module is on it."""
    layout = (REPO / "README.md").read_text().split("## Layout", 1)[1].split("\n## ", 1)[0]
    missing = [module_name(p) for p in MODULES if p.name != "__init__.py"
               and "share" not in p.parts
               and p.name not in layout]
    assert missing == [], "add these to the README's layout: " + ", ".join(missing)


def test_importing_any_module_changes_nothing_in_jupyterhub() -> None:
    """Routes, the metrics collector and the hub-start wrapper are installed by one explicit
    call (hub.install), which JupyterHub makes by asking the package for HPCSpawner."""
    names = [module_name(p) for p in MODULES]
    code = ("import importlib, sys\n"
            "from jupyterhub import apihandlers, handlers\n"
            "from jupyterhub.app import JupyterHub\n"
            "from prometheus_client import REGISTRY\n"
            "def seen():\n"
            "    return (len(apihandlers.default_handlers), len(handlers.default_handlers),\n"
            "            JupyterHub.init_spawners, len(REGISTRY._collector_to_names))\n"
            "before = seen()\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "assert seen() == before, 'an import changed JupyterHub'\n"
            "import hpcspawner\n"
            "hpcspawner.HPCSpawner\n"
            "after = seen()\n"
            "assert after[0] > before[0] and after[1] > before[1], 'no routes installed'\n"
            "assert after[2] is not before[2] and after[3] == before[3] + 1, after\n"
            "hpcspawner.HPCSpawner\n"
            "assert seen() == after, 'installed twice'\n")
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                         cwd=REPO, check=False)
    assert out.returncode == 0, out.stderr[-2000:]


# templates other than a backend's own job template may not branch on a backend's name either
BACKEND_TEMPLATES = ("slurm.sbatch.j2", "htcondor.sub.j2")


def test_no_page_template_branches_on_a_backends_name() -> None:
    found = []
    for path in sorted((REPO / "templates").rglob("*")):
        if path.is_file() and path.name not in BACKEND_TEMPLATES:
            for number, line in enumerate(path.read_text().splitlines(), 1):
                found += [f"{path.relative_to(REPO)}:{number}: {name}" for name in BACKEND_NAMES
                          if re.search(rf"""==\s*["']{name}["']""", line)]
    assert found == [], "ask the backend instead (Backend.place, ...): " + ", ".join(found)
