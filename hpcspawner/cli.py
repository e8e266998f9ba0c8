"""`hpcspawner check [PATH]`, `hpcspawner render --profile NAME --user NAME`, and
`hpcspawner sudoers` (the sudoers file for the hub's account). With ``--config
jupyterhub_config.py``, check and render read the site's settings as the hub does (profiles
path, templates, job Python and command, hub id, timeouts, the backends' settings), so what
render prints is what the hub submits."""

from __future__ import annotations

import argparse
import asyncio
import os
import posixpath
import re
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

from .apps import ScriptError, check_script_path, launch_for
from .backends import backend_classes
from .contract import DASK_DIR, START_TIMEOUT, WALLTIME_WARNING, job_tag, token_file_name
from .dask import plan_env, worker_plan
from .job_builder import JobBuilder
from .migrate import import_config
from .moretime import extend_check
from .profiles import Profile, ProfileError, load_profiles
from .render import RenderError


class SiteConfigError(Exception):
    """The site's jupyterhub_config.py cannot be read."""


def writable_by_others(path: str) -> str:
    """Why another account than root could change what ``path`` runs (the file, or one of
    its directories: not root's, or group/other-writable; a sticky directory such as /tmp
    is fine around a file of root's); "" when none can."""
    here = os.path.realpath(path)
    while True:
        try:
            st = os.stat(here)
        except OSError:
            return ""  # (not found: said by the loader)
        is_dir = stat.S_ISDIR(st.st_mode)
        if st.st_uid != 0:
            return f"{here} belongs to uid {st.st_uid}"
        if st.st_mode & 0o022 and not (is_dir and st.st_mode & stat.S_ISVTX):
            return f"{here} is writable by its group or by others ({stat.filemode(st.st_mode)})"
        parent = os.path.dirname(here)
        if parent == here:
            return ""
        here = parent


def site_config(path: str) -> Config:
    """The site's jupyterhub_config.py as the hub loads it (traitlets); empty without one.
    Loading it runs its Python as whoever runs hpcspawner: as root, a file another account
    can change is refused."""
    if not path:
        return Config()
    why = writable_by_others(path) if os.geteuid() == 0 else ""
    if why:
        raise SiteConfigError(
            f"{path}: refusing to run it as root, since another account could change it "
            f"({why}); loading a jupyterhub_config.py runs its Python as whoever runs "
            "hpcspawner. Run this as the hub's account, or make the file and its "
            "directories root's and not group- or other-writable.")
    where = os.path.dirname(os.path.abspath(path))
    try:
        return PyFileConfigLoader(os.path.basename(path), path=where).load_config()
    except ConfigFileNotFound:
        raise SiteConfigError(f"{path}: no such configuration file") from None
    except Exception as exc:  # the site's Python: any error it raises
        raise SiteConfigError(f"{path}: cannot be loaded ({type(exc).__name__}: {exc})") \
            from None


def site_setting(config: Config, path: str, name: str, given: object, default: object) -> object:
    """What the command line gives, else the site's HPCSpawner (or Spawner) setting, else the
    default. A relative path setting is relative to the configuration file."""
    if given is not None:
        return given
    for section in ("HPCSpawner", "Spawner"):
        if section in config and name in config[section]:
            value = config[section][name]
            if name.endswith("_path") and isinstance(value, str) and path and \
                    not os.path.isabs(value):
                value = os.path.join(os.path.dirname(os.path.abspath(path)), value)
            return value
    return default


def words(value: object) -> list[str]:
    """A list setting as strings (a single string: one word)."""
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def field_lines(path: str) -> dict[tuple[Any, ...], int]:
    """The line of each field of a YAML file, by its path (``("profiles", 2, "name")``)."""
    try:
        root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node | None, at: tuple[Any, ...]) -> None:
        if node is None:
            return
        lines[at] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*at, key.value)
                walk(value, here)
                lines[here] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*at, index))

    walk(root, ())
    return lines


def warning_line(lines: dict[tuple[Any, ...], int], index: int, warning: str) -> int | None:
    """The line of the field a backend's warning starts with (``extra_options[2] ...``), in
    the profile or the defaults it inherits; else the profile's own line."""
    match = re.match(r"([a-z_]+(?:\.[a-z_]+)*)(?:\[(\d+)\])?", warning)
    if match:
        keys: tuple[Any, ...] = tuple(match.group(1).split("."))
        if match.group(2) is not None:
            keys += (int(match.group(2)),)
        for cut in range(len(keys), 0, -1):
            for base in (("profiles", index), ("defaults",)):
                here = (*base, *keys[:cut])
                if here in lines:
                    return lines[here]
    return lines.get(("profiles", index))


def check(path: str, config: Config | None = None) -> int:
    """Validate the profiles; print one line each, and what each profile's scheduler can
    tell about it (``Backend.profile_warnings``: e.g. a fast path no reserved slot fits,
    SLURM ``extra_options`` that override a resource), at the line of the field a warning
    starts with."""
    try:
        profiles = load_profiles(path)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    classes, backends = backend_classes(), {}
    lines = field_lines(path)
    for index, p in enumerate(profiles.profiles):
        mark = " (default)" if p is profiles.default else ""
        where = f"partition {p.partition}" if p.partition else p.backend
        app = "" if p.app.name == "notebook" else f", app {p.app.name}" + (
            " (the user names the script)" if p.app.user_script else "")
        print(f"{p.name}: {p.title} — {p.backend}, {where}{app}{mark}")
        if p.backend not in backends:
            backends[p.backend] = classes[p.backend](config=config or Config())
        found = asyncio.run(backends[p.backend].profile_warnings(p))
        found += asyncio.run(extend_check(backends[p.backend]).warnings(p))
        for warning in found:
            line = warning_line(lines, index, warning)
            where = f"{path}:{line}" if line else path
            print(f"warning: {where}: profile '{p.name}': {warning}", file=sys.stderr)
    print(f"{path}: {len(profiles.profiles)} profiles OK")
    return 0


def render(args: argparse.Namespace) -> int:
    try:
        config = site_config(args.config)
    except SiteConfigError as exc:
        print(exc, file=sys.stderr)
        return 1

    def setting(name: str, given: object, default: object) -> object:
        return site_setting(config, args.config, name, given, default)

    beside = os.path.join(os.path.dirname(os.path.abspath(args.config)), "profiles.yaml") \
        if args.config else "profiles.yaml"
    python = str(setting("job_python", args.python, sys.executable))
    cmd = setting("cmd", args.cmd, [posixpath.join(posixpath.dirname(python),
                                                   "jupyterhub-singleuser")]
                  if args.config else ["jupyterhub-singleuser"])
    try:
        profiles = load_profiles(str(setting("profiles_path", args.profiles, beside) or beside))
    except ProfileError as exc:
        print(exc, file=sys.stderr)
        return 1
    profile = profiles.by_name.get(args.profile)
    if profile is None:
        print(f"unknown profile {args.profile!r}; choose one of: {', '.join(profiles.names())}",
              file=sys.stderr)
        return 1
    home = args.home or f"/home/{args.user}"
    job_dir = posixpath.join(home, ".hpcspawner")
    server = args.server or "default"
    prefix = f"{args.base_url.rstrip('/')}/user/{args.user}/" + (
        f"{args.server}/" if args.server else "")
    env = {
        "JUPYTERHUB_API_URL": args.hub_api_url,
        "JUPYTERHUB_BASE_URL": args.base_url,
        "JUPYTERHUB_USER": args.user,
        "JUPYTERHUB_SERVER_NAME": args.server,
        "JUPYTERHUB_SERVICE_PREFIX": prefix,
    }
    try:
        script_path = check_script_path(args.script, home) if args.script else ""
        launch = launch_for(profile, profiles.apps, python, script_path)
    except ScriptError as exc:
        print(exc, file=sys.stderr)
        return 1
    if launch.url:
        env["JUPYTERHUB_DEFAULT_URL"] = launch.url
    hub_id = str(setting("hub_id", args.hub_id, "hub"))
    env.update(plan_env(worker_plan(  # what the server's notebooks may start (docs/dask.md)
        profile, profiles, profiles.caps.for_user(args.user, []),
        lambda name: backend_classes()[name](config=config),
        job_tag(hub_id, args.user, args.server), posixpath.join(job_dir, DASK_DIR, server),
        [profile.resources])))
    builder = JobBuilder(
        username=args.user, server_name=args.server, home=home, job_dir=job_dir,
        hub_id=hub_id, python=python, cmd=words(cmd),
        env=env, launch=launch,
        template_dirs=tuple(words(setting("template_paths", args.template_dir, []))),
        start_timeout=int(str(setting("start_timeout", None, START_TIMEOUT))),
        walltime_warning=int(str(setting("walltime_warning", None, WALLTIME_WARNING))),
    )
    backend = backend_classes()[profile.backend](config=config)  # this site's
    try:
        _, script = builder.render(
            profile, backend, secret_file=posixpath.join(job_dir, token_file_name(server, "XXXX")),
            submission=args.submission,
            fast=backend.fast_path(profile) and not args.no_fast_path)
        sys.stdout.write(script)
    except RenderError as exc:
        print(f"cannot render: {exc}", file=sys.stderr)
        return 1
    return 0


SUDOERS = """\
# /etc/sudoers.d/hpcspawner, made by `hpcspawner sudoers` (check it with: visudo -cf FILE)
# The hub's account {hub_user} may run exactly these commands, as a member of {group}, and
# nothing else: the schedulers' submit commands (the job script comes on stdin) and
# hpcspawner-helper (token files in the user's home, cancels checked with the scheduler).
# No shell, no rm, no install: see docs/security.md.
Cmnd_Alias HPCSPAWNER_CMDS = {commands}
Defaults!HPCSPAWNER_CMDS !requiretty
{hub_user} ALL=(%{group}) NOPASSWD: HPCSPAWNER_CMDS
"""


def sudoers_text(hub_user: str, group: str, submit: Sequence[str],
                 helpers: Sequence[str]) -> str:
    """The sudoers file the docs give; every command an absolute path."""
    commands = [*submit, *helpers]
    for command in commands:
        if not command.startswith("/") or any(c in command for c in " ,:=\\\n"):
            raise ValueError(f"{command!r}: sudoers needs an absolute path without , : = or "
                             "spaces")
    return SUDOERS.format(hub_user=hub_user, group=group, commands=", ".join(commands))


def sudoers(args: argparse.Namespace) -> int:
    helpers = args.helper or [posixpath.join(posixpath.dirname(sys.executable),
                                             "hpcspawner-helper")]
    try:
        sys.stdout.write(sudoers_text(args.hub_user, args.group, args.submit, helpers))
    except ValueError as exc:
        print(f"hpcspawner sudoers: {exc}", file=sys.stderr)
        return 1
    return 0


def import_profiles(path: str, output: str) -> int:
    """``hpcspawner import``: profiles.yaml to ``output``; the notes (what was not carried
    over as it was, and why) to stderr, whether or not a file is written."""
    try:
        imported = import_config(site_config(path), path)
    except SiteConfigError as exc:
        print(f"hpcspawner import: {exc}", file=sys.stderr)
        return 1
    for note in imported.notes:
        print(f"note: {note}", file=sys.stderr)
    if imported.failure:
        print(f"hpcspawner import: {imported.failure}; nothing written"
              + (f" ({len(imported.notes)} note(s) above)" if len(imported.notes) else ""),
              file=sys.stderr)
        return 1
    text = (f"# imported by `hpcspawner import {os.path.basename(path)}`; check it with "
            "`hpcspawner check`\n" + imported.yaml())
    if output == "-":
        sys.stdout.write(text)
    else:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"hpcspawner import: {len(imported.profiles)} profile(s)"
          + (f" written to {output}" if output != "-" else "")
          + f"; {len(imported.notes)} note(s) above", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpcspawner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate profiles.yaml")
    p_check.add_argument("path", nargs="?", default=None,
                         help="profiles.yaml (default: the config's, else ./profiles.yaml)")
    p_check.add_argument("--config", default="",
                         help="the site's jupyterhub_config.py: its settings apply (its "
                         "Python runs as you; refused as root when another account can "
                         "write it)")
    p_check.add_argument("--condor-status", default=None,
                         help="asked for the reserved notebook slots of fast-path profiles "
                         "(default: the config's HTCondorBackend.condor_status)")
    p_render = sub.add_parser("render", help="print the job script a spawn would submit")
    p_render.add_argument("--config", default="",
                          help="the site's jupyterhub_config.py: its settings apply (its "
                         "Python runs as you; refused as root when another account can "
                         "write it)")
    p_render.add_argument("--profiles", default=None,
                          help="profiles.yaml (default: the config's, else beside it)")
    p_render.add_argument("--profile", required=True)
    p_render.add_argument("--user", required=True)
    p_render.add_argument("--server", default="", help="named server (default: none)")
    p_render.add_argument("--home", default="", help="the user's home (default /home/USER)")
    p_render.add_argument("--hub-id", default=None, help="default: the config's, else hub")
    p_render.add_argument("--hub-api-url", default="http://127.0.0.1:8081/hub/api")
    p_render.add_argument("--base-url", default="/")
    p_render.add_argument("--python", default=None,
                          help="the job's Python (default: the config's job_python, else this "
                          "Python)")
    p_render.add_argument("--cmd", nargs="+", default=None)
    p_render.add_argument("--submission", default="SUBMISSION",
                          help="the submission nonce to show (a spawn makes a random one)")
    p_render.add_argument("--template-dir", action="append")
    p_render.add_argument("--script", default="",
                          help="a dashboard profile's script, as the user names it")
    p_render.add_argument("--no-fast-path", action="store_true",
                          help="render an HTCondor fast-path profile as its regular-pool fallback")
    p_sudo = sub.add_parser("sudoers", help="print the sudoers file the hub's account needs")
    p_sudo.add_argument("--hub-user", default="jupyterhub", help="the hub's Unix account")
    p_sudo.add_argument("--group", default="jupyterusers",
                        help="the Unix group of the hub's users (sudo runs commands as them)")
    p_sudo.add_argument("--submit", action="append", default=None,
                        help="absolute path of a submit command (sbatch, condor_submit); "
                        "repeat for each (default: the default backend's, /usr/bin/sbatch)")
    p_sudo.add_argument("--helper", action="append",
                        help="absolute path of hpcspawner-helper (default: beside this Python)")
    p_import = sub.add_parser("import", help="write profiles.yaml from a batchspawner + "
                              "wrapspawner jupyterhub_config.py (docs/migrating.md)")
    p_import.add_argument("config", help="the site's jupyterhub_config.py (its Python runs as "
                          "you; refused as root when another account can write it)")
    p_import.add_argument("-o", "--output", default="-",
                          help="where to write profiles.yaml (default: standard output)")
    args = parser.parse_args(argv)
    if args.command == "import":
        return import_profiles(args.config, args.output)
    if args.command == "check":
        try:
            config = site_config(args.config)
        except SiteConfigError as exc:
            print(exc, file=sys.stderr)
            return 1
        if args.condor_status:
            config.HTCondorBackend.condor_status = args.condor_status
        return check(str(site_setting(config, args.config, "profiles_path", args.path,
                                      "profiles.yaml")), config)
    if args.command == "sudoers":
        # the default profile backend's submit command
        default = backend_classes()[str(Profile.model_fields["backend"].default)]
        args.submit = args.submit or [default.submit_path]
        return sudoers(args)
    return render(args)


if __name__ == "__main__":
    sys.exit(main())
