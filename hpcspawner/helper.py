"""`hpcspawner-helper`: the one program besides the scheduler's submit command that the hub's
account may run as a user (through sudo). It does four fixed things and refuses the rest:

    hpcspawner-helper write-token DIR NAME           the secrets on stdin -> DIR/NAME, mode 0600;
                                                     older hand-off files of the same server
                                                     are removed
    hpcspawner-helper remove-token DIR NAME          remove DIR/NAME
    hpcspawner-helper check-script PATH              PATH is a file in the home that the
                                                     user can read (a dashboard's script)
    hpcspawner-helper cancel BACKEND JOB_ID TAG [--bin-dir DIR]
                                                     cancel the job, if it is this user's and
                                                     carries exactly TAG (a hub's tag)

It runs AS THE USER (``sudo -u alice``), never as root: it can touch only what the user can,
and of that only its own: DIR must be a directory named ``.hpcspawner`` inside the user's
home (the only one it creates or makes 0700) and NAME a hand-off file name
(``SERVER-<16 hex>.token``, the only files it writes or removes); files are opened with
O_NOFOLLOW|O_EXCL inside a directory opened with O_NOFOLLOW. ``cancel`` asks the
scheduler itself (squeue with a per-query frame, condor_q -json) who owns the job and what its
tag is, so a record another user forged can never make the hub cancel a user's own batch job.
BACKEND is a built-in backend or one an installed package declares as an entry point
(``backends.backend_classes``): the helper is a fresh process and reads no hub configuration.
Scheduler commands come from sudo's PATH, or from ``--bin-dir``; either way the directory and
the command in it must be owned by root and writable by nobody else, and the helper runs the
very file it checked (opened once, executed through its descriptor: no path is looked up
again in between). Install it root-owned (it is, inside a root-owned venv) and name its
absolute path in sudoers (docs/install.md). It refuses to run from a Python that imports from
anywhere someone other than root can write (``trusted_path``): no user's code runs in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import pwd
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence

from .contract import (
    JOB_DIR_NAME,
    LOGS_DIR,
    REFUSED,
    TOKEN_FILE_FORM,
    TOKEN_FILE_RE,
    parse_tag,
)

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{8,4096}$")
ENVNAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_SECRETS = 65536
USAGE = __doc__.split("\n\n")[1] if __doc__ else ""


class Refused(Exception):
    """The request is not one the helper does; exit 2 with the sentence."""


def me() -> pwd.struct_passwd:
    if os.getuid() == 0:
        raise Refused("hpcspawner-helper runs as the user whose files and jobs it touches "
                      "(sudo -u USER), never as root")
    return pwd.getpwuid(os.getuid())


def checked_dir(directory: str, home: str) -> str:
    """DIR, absolute and normalised, a directory named JOB_DIR_NAME inside the user's home."""
    home = posixpath.normpath(home)
    if not directory.startswith("/") or posixpath.normpath(directory) != directory \
            or "/../" in f"{directory}/":
        raise Refused(f"{directory!r} is not an absolute, normalised path")
    if directory == home or not directory.startswith(home.rstrip("/") + "/"):
        raise Refused(f"{directory!r} is not inside the home directory {home}")
    if posixpath.basename(directory) != JOB_DIR_NAME:
        raise Refused(f"{directory!r} is not a directory named {JOB_DIR_NAME}: the helper "
                      "touches no other directory")
    return directory


def checked_name(name: str) -> str:
    if not TOKEN_FILE_RE.match(name):
        raise Refused(f"{name!r} is not a token file name ({TOKEN_FILE_FORM})")
    return name


def make_private_dirs(directory: str) -> None:
    """Create ``directory`` (JOB_DIR_NAME) and its logs/ mode 0700; what lies above must
    exist already, and every part must be a real directory (no symbolic link), the last
    two this user's."""
    parent = posixpath.dirname(directory)
    info = os.stat(parent)
    if not stat.S_ISDIR(info.st_mode):
        raise Refused(f"{parent} is not a directory")
    for path in (directory, posixpath.join(directory, LOGS_DIR)):
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        info = os.lstat(path)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise Refused(f"{path} is not a directory of this user")
    os.chmod(directory, 0o700)


def open_dir(directory: str) -> int:
    return os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)


def checked_secrets(text: str) -> str:
    """``{"token": TOKEN, "env": {NAME: value}}`` (the server's API token and the environment
    that must not be public), as JSON; anything else is refused."""
    if len(text) > MAX_SECRETS:
        raise Refused(f"the secrets on stdin are larger than {MAX_SECRETS} bytes")
    try:
        data = json.loads(text)
    except ValueError:
        raise Refused("the secrets on stdin are not JSON") from None
    if not isinstance(data, dict) or set(data) - {"token", "env"}:
        raise Refused('the secrets on stdin must be {"token": ..., "env": {...}}')
    token, env = data.get("token"), data.get("env", {})
    if not isinstance(token, str) or not TOKEN_RE.match(token):
        raise Refused("the token on stdin is empty or not a token")
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and ENVNAME_RE.match(k) and isinstance(v, str) and "\0" not in v
            for k, v in env.items()):
        raise Refused("the environment on stdin must map variable names to strings")
    return json.dumps({"token": token, "env": env})


def write_token(directory: str, name: str, text: str) -> None:
    user = me()
    directory, name = checked_dir(directory, user.pw_dir), checked_name(name)
    content = checked_secrets(text)
    make_private_dirs(directory)
    dfd = open_dir(directory)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=dfd)
        with os.fdopen(fd, "w") as out:
            out.write(content)
        remove_older_submissions(dfd, name)
    finally:
        os.close(dfd)


def remove_older_submissions(dfd: int, name: str) -> None:
    """A server has one job at a time and its launcher deletes the file it reads, so another
    hand-off file of the same server belongs to a submission that never ran (e.g. a hub killed
    between the scheduler taking the job and recording it): remove it."""
    mine = TOKEN_FILE_RE.match(name)
    if mine is None:
        return
    for entry in os.listdir(dfd):
        other = TOKEN_FILE_RE.match(entry)
        if entry != name and other is not None and other["server"] == mine["server"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry, dir_fd=dfd)


def remove_token(directory: str, name: str) -> None:
    user = me()
    directory, name = checked_dir(directory, user.pw_dir), checked_name(name)
    try:
        dfd = open_dir(directory)
    except FileNotFoundError:
        return
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass
    finally:
        os.close(dfd)


def check_script(path: str) -> None:
    """The sentence of each refusal is shown to the user on the spawn page."""
    user = me()
    home = posixpath.normpath(user.pw_dir)
    if not path.startswith("/") or posixpath.normpath(path) != path \
            or not path.startswith(home.rstrip("/") + "/"):
        raise Refused(f"The script {path} is not in your home directory ({home}).")
    real, real_home = os.path.realpath(path), os.path.realpath(home)
    if not real.startswith(real_home.rstrip("/") + "/"):
        raise Refused(f"The script {path} leads outside your home directory (to {real}); "
                      "name a file in your home.")
    try:
        info = os.stat(real)
    except FileNotFoundError:
        raise Refused(f"There is no file {path}; check the name.") from None
    except OSError as exc:
        raise Refused(f"The script {path} cannot be reached ({exc.strerror}).") from None
    if not stat.S_ISREG(info.st_mode):
        raise Refused(f"The script {path} is not a regular file.")
    if not os.access(real, os.R_OK):
        raise Refused(f"You cannot read the script {path}; check its permissions.")


def tool(name: str, bin_dir: str) -> int:
    """A scheduler command, opened: from ``bin_dir``, else from sudo's PATH; the directory
    and the file must be root's and writable by nobody else. The descriptor is what run()
    executes, so the file checked is the file run (a directory swapped meanwhile changes
    nothing)."""
    if not bin_dir:
        found = shutil.which(name)
        if found is None:
            raise Refused(f"{name} is not on the PATH sudo gives (secure_path)")
        bin_dir, name = posixpath.split(found)
    # the file a link leads to (/usr/local/bin/condor_rm -> /opt/htcondor/bin/condor_rm, or a
    # swapped bin_dir): it and its directory are what is checked, opened and run
    bin_dir, name = posixpath.split(os.path.realpath(posixpath.join(bin_dir, name)))
    dfd = os.open(bin_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        root_only(os.fstat(dfd), bin_dir)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    finally:
        os.close(dfd)
    info = os.fstat(fd)
    try:
        root_only(info, posixpath.join(bin_dir, name))
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{posixpath.join(bin_dir, name)} is not a regular file")
    except Refused:
        os.close(fd)
        raise
    return fd


def root_only(info: os.stat_result, path: str) -> None:
    if info.st_uid != 0 or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Refused(f"{path} must be owned by root and writable by nobody else")


def run(name: str, fd: int, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Execute the opened command ``fd`` (argv[0] ``name``), through /proc/self/fd: the
    kernel runs the file the descriptor holds, whatever its path now leads to."""
    try:
        return subprocess.run([name, *args], executable=f"/proc/self/fd/{fd}", pass_fds=(fd,),
                              capture_output=True, text=True, timeout=60, check=False)
    finally:
        os.close(fd)


def cancel(backend: str, job_id: str, tag: str, bin_dir: str = "") -> str:
    """Cancel ``job_id`` if the scheduler says it is this user's and carries ``tag``: the
    backend asks its scheduler and cancels (``Backend.checked_cancel``); the helper checks the
    tag names this user and runs only root's commands, by descriptor."""
    from .backends import ENTRY_POINT_GROUP, BackendLoadError, CancelRefused, backend_classes

    user = me().pw_name
    parsed = parse_tag(tag)
    if parsed is None or parsed[1] != user:
        raise Refused(f"{tag!r} is not a hub tag for {user}")
    try:
        classes = backend_classes()
    except BackendLoadError as exc:
        raise Refused(str(exc)) from None
    if backend not in classes:
        raise Refused(f"unknown backend {backend!r}; say {' or '.join(sorted(classes))} (a "
                      f"site's own backend is found through its package's entry point in "
                      f"{ENTRY_POINT_GROUP}, in {sys.prefix}: docs/install.md)")

    def scheduler(name: str, args: list[str]) -> subprocess.CompletedProcess[str]:
        return run(name, tool(name, bin_dir), args)

    try:
        return classes[backend].checked_cancel(job_id, tag, user, scheduler)
    except CancelRefused as exc:
        raise Refused(str(exc)) from None


def trusted_path(path: Sequence[str]) -> None:
    """Every place this Python imports from (``sys.path``: the code of the helper and of every
    backend, and the packages whose entry points name backends) is root's, and no one else can
    change it or put a file in it; the directories above it are root's too, each writable by
    no one else or sticky (/tmp). So no user's code runs in the helper (docs/security.md)."""
    for entry in path:
        real = os.path.realpath(entry or os.getcwd())
        while not os.path.lexists(real):  # absent: who may create it is who may write above
            real = posixpath.dirname(real)
        above = False
        while True:
            try:
                info = os.stat(real)
            except OSError as exc:
                raise Refused(f"this Python imports from {entry}: {exc.strerror} for "
                              f"{real}") from None
            writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            if info.st_uid != 0 or (writable and not (above and info.st_mode & stat.S_ISVTX)):
                raise Refused(f"this Python imports from {entry}, which {real} lets someone "
                              "other than root change: run hpcspawner-helper from a "
                              "root-owned venv (docs/security.md)")
            if real == "/":
                break
            real, above = posixpath.dirname(real), True


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        trusted_path(sys.path)
        if len(args) == 3 and args[0] == "write-token":
            write_token(args[1], args[2], sys.stdin.read(MAX_SECRETS + 1))
        elif len(args) == 3 and args[0] == "remove-token":
            remove_token(args[1], args[2])
        elif len(args) == 2 and args[0] == "check-script":
            check_script(args[1])
        elif len(args) in (4, 6) and args[0] == "cancel":
            bin_dir = args[5] if len(args) == 6 and args[4] == "--bin-dir" else ""
            if len(args) == 6 and not bin_dir:
                raise Refused("the only option of cancel is --bin-dir DIR")
            print(cancel(args[1], args[2], args[3], bin_dir))
        else:
            raise Refused("usage:\n" + USAGE)
    except Refused as exc:
        print(f"{REFUSED}{exc}", file=sys.stderr)
        return 2
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"hpcspawner-helper: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
