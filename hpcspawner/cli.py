"""`hpcspawner check [PATH]`, `hpcspawner render --profile NAME --user NAME`, and
`hpcspawner sudoers` (the sudoers file for the hub's account)."""

from __future__ import annotations

import argparse
import posixpath
import subprocess
import sys
from collections.abc import Sequence

from . import registry
from .apps import ScriptError, check_script_path, launch_for
from .jobspec import JobBuilder
from .profiles import Profile, ProfileError, fast_path_misfit, load_profiles
from .render import RenderError


def check(path: str, condor_status: str = "condor_status") -> int:
    try:
        profiles = load_profiles(path)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    for p in profiles.profiles:
        mark = " (default)" if p is profiles.default else ""
        where = f"partition {p.partition}" if p.partition else p.backend
        app = "" if p.app.name == "notebook" else f", app {p.app.name}" + (
            " (the user names the script)" if p.app.user_script else "")
        print(f"{p.name}: {p.title} — {p.backend}, {where}{app}{mark}")
        for warning in fast_path_warnings(p, condor_status):
            print(f"warning: {path}: profile '{p.name}': {warning}", file=sys.stderr)
    print(f"{path}: {len(profiles.profiles)} profiles OK")
    return 0


def fast_path_warnings(profile: Profile, condor_status: str) -> list[str]:
    """A fast-path profile without ``fast_path.slot``: compare it with the reserved slots the
    pool advertises, when condor_status answers (nothing to say when it does not)."""
    fast = profile.htcondor.fast_path
    if not profile.fast_path_enabled or fast is None or fast.slot is not None:
        return []
    pool = fast.pool or profile.htcondor.pool
    argv = [condor_status, *(["-pool", pool] if pool else []), "-constraint",
            f"{fast.slot_attribute} =?= True", "-af", "Cpus", "Memory"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=True).stdout
        slots = [(int(c), int(m) * 2**20) for c, m in (line.split() for line in out.splitlines())]
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    if not slots:
        return [f"the pool advertises no slot with {fast.slot_attribute} = True: the fast path "
                "can never match (docs/htcondor.md)"]
    cores, memory = max(c for c, _ in slots), max(m for _, m in slots)
    problem = fast_path_misfit(profile, cores, memory)
    return [problem + f" (condor_status {' '.join(argv[1:])})"] if problem else []


def render(args: argparse.Namespace) -> int:
    try:
        profiles = load_profiles(args.profiles)
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
        launch = launch_for(profile, profiles.apps, args.python, script_path)
    except ScriptError as exc:
        print(exc, file=sys.stderr)
        return 1
    if launch.url:
        env["JUPYTERHUB_DEFAULT_URL"] = launch.url
    builder = JobBuilder(
        username=args.user, server_name=args.server, home=home, job_dir=job_dir,
        hub_id=args.hub_id, python=args.python, cmd=args.cmd or ["jupyterhub-singleuser"],
        env=env, template_dirs=tuple(args.template_dir or ()), launch=launch,
    )
    try:
        _, script = builder.render(
            profile, registry.backend(profile.backend),
            secret_file=posixpath.join(job_dir, f"{server}-XXXX.token"),
            submission=args.submission, fast=profile.fast_path_enabled and not args.no_fast_path)
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpcspawner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate profiles.yaml")
    p_check.add_argument("path", nargs="?", default="profiles.yaml")
    p_check.add_argument("--condor-status", default="condor_status",
                         help="asked for the reserved notebook slots of fast-path profiles")
    p_render = sub.add_parser("render", help="print the job script a spawn would submit")
    p_render.add_argument("--profiles", default="profiles.yaml")
    p_render.add_argument("--profile", required=True)
    p_render.add_argument("--user", required=True)
    p_render.add_argument("--server", default="", help="named server (default: none)")
    p_render.add_argument("--home", default="", help="the user's home (default /home/USER)")
    p_render.add_argument("--hub-id", default="hub")
    p_render.add_argument("--hub-api-url", default="http://127.0.0.1:8081/hub/api")
    p_render.add_argument("--base-url", default="/")
    p_render.add_argument("--python", default=sys.executable)
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
                        "repeat for each (default: /usr/bin/sbatch)")
    p_sudo.add_argument("--helper", action="append",
                        help="absolute path of hpcspawner-helper (default: beside this Python)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.path, args.condor_status)
    if args.command == "sudoers":
        args.submit = args.submit or ["/usr/bin/sbatch"]
        return sudoers(args)
    return render(args)


if __name__ == "__main__":
    sys.exit(main())
