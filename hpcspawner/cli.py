"""`hpcspawner check [PATH]` and `hpcspawner render --profile NAME --user NAME`."""

from __future__ import annotations

import argparse
import posixpath
import sys
from collections.abc import Sequence

from .apps import app_command
from .profiles import ProfileError, load_profiles
from .render import RenderError, make_spec, render_job

TEMPLATES = {"slurm": ("slurm.sbatch.j2", "{server}-%j.log"),
             "htcondor": ("htcondor.sub.j2", "{server}-$(ClusterId).log")}


def check(path: str) -> int:
    try:
        profiles = load_profiles(path)
    except ProfileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    for p in profiles.profiles:
        mark = " (default)" if p is profiles.default else ""
        where = f"partition {p.partition}" if p.partition else p.backend
        print(f"{p.name}: {p.title} — {p.backend}, {where}{mark}")
    print(f"{path}: {len(profiles.profiles)} profiles OK")
    return 0


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
    template, log_name = TEMPLATES[profile.backend]
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
    cmd = args.cmd or [posixpath.join(posixpath.dirname(args.python), "jupyterhub-singleuser")]
    spec = make_spec(
        profile=profile, username=args.user, server_name=args.server, home=home,
        job_dir=job_dir, log_name=log_name.format(server=server), hub_id=args.hub_id,
        python=args.python, command=app_command(profile.app, cmd, [], args.python), env=env,
        job_name="jupyterhub", secret_file=posixpath.join(job_dir, f"{server}-XXXX.token"),
        fast_path=False if args.no_fast_path else None,
    )
    try:
        sys.stdout.write(render_job(template, spec, args.template_dir or []))
    except RenderError as exc:
        print(f"cannot render: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hpcspawner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate profiles.yaml")
    p_check.add_argument("path", nargs="?", default="profiles.yaml")
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
    p_render.add_argument("--template-dir", action="append")
    p_render.add_argument("--no-fast-path", action="store_true",
                          help="render an HTCondor fast-path profile as its regular-pool fallback")
    args = parser.parse_args(argv)
    if args.command == "check":
        return check(args.path)
    return render(args)


if __name__ == "__main__":
    sys.exit(main())
