"""hpcspawner-helper: the only program besides the submit command that the hub's account may
run as a user. Each refusal is a test; the happy paths write and remove exactly one file."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

from hpcspawner import helper
from hpcspawner.backends import HelperRefused
from hpcspawner.backends.base import refusal
from hpcspawner.backends.slurm import SlurmBackend
from hpcspawner.backends.slurm_words import SQUEUE_FIELDS

TOKEN = "a1b2c3d4e5f6a7b8c9d0"
SECRETS = json.dumps({"token": TOKEN, "env": {"DB_PASSWORD": "s3cret"}})


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The helper's user is the test's own account, with ``tmp_path/home`` as its home."""
    home = tmp_path / "home"
    home.mkdir()
    real = pwd.getpwuid(os.getuid())
    fake = pwd.struct_passwd((real.pw_name, "x", real.pw_uid, real.pw_gid, "", str(home),
                              "/bin/sh"))
    monkeypatch.setattr(helper, "me", lambda: fake)
    return home


def test_write_token_makes_a_private_dir_logs_and_a_0600_file(home: Path) -> None:
    job_dir = home / ".hpcspawner"
    name = "default-0123456789abcdef.token"
    helper.write_token(str(job_dir), name, SECRETS)
    token_file = job_dir / name
    assert json.loads(token_file.read_text()) == json.loads(SECRETS)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(job_dir.stat().st_mode) == 0o700
    assert (job_dir / "logs").is_dir()
    with pytest.raises(FileExistsError):  # O_EXCL: never overwrites
        helper.write_token(str(job_dir), name, SECRETS)
    helper.remove_token(str(job_dir), name)
    assert not token_file.exists()
    helper.remove_token(str(job_dir), name)  # gone already: fine


def test_a_new_hand_off_file_removes_the_same_servers_older_ones_only(home: Path) -> None:
    """A hub killed between the scheduler taking a job and recording it leaves that job's file;
    the server's next submission removes it, and touches nothing else."""
    job_dir = home / ".hpcspawner"
    helper.write_token(str(job_dir), "default-00000000000000aa.token", SECRETS)
    helper.write_token(str(job_dir), "gpu-00000000000000bb.token", SECRETS)
    (job_dir / "notes.token").write_text("mine")
    (job_dir / "default-0000000000000cc.token").write_text("not a submission name")
    helper.write_token(str(job_dir), "default-00000000000000dd.token", SECRETS)
    assert sorted(p.name for p in job_dir.glob("*.token")) == [
        "default-00000000000000dd.token", "default-0000000000000cc.token",
        "gpu-00000000000000bb.token", "notes.token"]


@pytest.mark.parametrize(("directory", "name", "why"), [
    ("/etc", "x.token", "not inside the home"),
    ("{home}/../other", "x.token", "normalised"),
    ("relative/dir", "x.token", "absolute"),
    ("{home}", "x.token", "not inside the home"),
    ("{home}/.hpcspawner", "../../.ssh/authorized_keys", "not a token file name"),
    ("{home}/.hpcspawner", "id_rsa", "not a token file name"),
    ("{home}/.hpcspawner", ".x.token", "not a token file name"),
    ("{home}/.hpcspawner", "notes.token", "not a token file name"),
    ("{home}/public_html", "default-0123456789abcdef.token", "not a directory named"),
    ("{home}/.ssh", "default-0123456789abcdef.token", "not a directory named"),
])
def test_anything_but_a_token_file_in_the_home_is_refused(home: Path, directory: str,
                                                           name: str, why: str) -> None:
    with pytest.raises(helper.Refused, match=why):
        helper.write_token(directory.format(home=home), name, SECRETS)
    with pytest.raises(helper.Refused, match=why):
        helper.remove_token(directory.format(home=home), name)


def test_other_directories_and_files_in_the_home_keep_their_modes(home: Path) -> None:
    """The hub's account may run the helper as the user: it must not make the user's
    directories private, nor delete the user's own *.token files."""
    public = home / "public_html"
    public.mkdir(mode=0o755)
    public.chmod(0o755)
    (home / ".hpcspawner").mkdir()
    mine = home / ".hpcspawner" / "notes.token"
    mine.write_text("mine")
    with pytest.raises(helper.Refused):
        helper.write_token(str(public), "default-0123456789abcdef.token", SECRETS)
    assert stat.S_IMODE(public.stat().st_mode) == 0o755
    with pytest.raises(helper.Refused):
        helper.remove_token(str(home / ".hpcspawner"), "notes.token")
    assert mine.read_text() == "mine"
    assert helper.main(["write-token", str(home / "deep" / ".hpcspawner"),
                        "default-0123456789abcdef.token"]) == 1  # no parent: nothing made
    assert not (home / "deep").exists()


def test_links_are_never_followed(home: Path, tmp_path: Path) -> None:
    name = "a-0123456789abcdef.token"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / ".hpcspawner").symlink_to(elsewhere)
    with pytest.raises(helper.Refused, match="not a directory of this user"):
        helper.write_token(str(home / ".hpcspawner"), name, SECRETS)
    (home / ".hpcspawner").unlink()
    (home / ".hpcspawner").mkdir()
    target = tmp_path / "victim"
    (home / ".hpcspawner" / name).symlink_to(target)
    with pytest.raises(FileExistsError):
        helper.write_token(str(home / ".hpcspawner"), name, SECRETS)
    assert not target.exists()


@pytest.mark.parametrize(("text", "why"), [
    ("", "not JSON"),
    (TOKEN, "not JSON"),
    ('{"token": "x; rm -rf ~"}', "not a token"),
    ('{"token": "' + TOKEN + '", "cmd": "id"}', "must be"),
    ('{"token": "' + TOKEN + '", "env": {"A B": "x"}}', "variable names"),
    ('{"token": "' + TOKEN + '", "env": {"A": 1}}', "variable names"),
    ('{"token": "' + TOKEN + '", "env": {"A": "' + "x" * 70000 + '"}}', "larger than"),
])
def test_the_secrets_must_be_a_token_and_an_environment(home: Path, text: str,
                                                        why: str) -> None:
    name = "a-0123456789abcdef.token"
    with pytest.raises(helper.Refused, match=why):
        helper.write_token(str(home / ".hpcspawner"), name, text)
    assert not (home / ".hpcspawner" / name).exists()


def fake_squeue(tmp_path: Path, user: str, comment: str, state: str = "RUNNING") -> Path:
    """A squeue that answers ``-o FORMAT`` for one job, filling in the fields asked for."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    bin_dir.chmod(0o755)
    values = {"i": "41", "T": state, "r": "None", "N": "vm", "u": user,
              "V": "2026-11-22T04:43:21", "S": "2026-11-22T04:43:22",
              "e": "2026-11-22T16:43:22", "k": comment}
    # %Nk as squeue prints it: cut at N characters and padded with spaces to N
    (bin_dir / "squeue").write_text(
        f"#!{sys.executable}\nimport re, sys\nfmt = sys.argv[sys.argv.index('-o') + 1]\n"
        f"values = {values!r}\n"
        "def field(m):\n    v = values[m.group(2)]\n"
        "    return v[:int(m.group(1))].ljust(int(m.group(1))) if m.group(1) else v\n"
        "print(re.sub(r'%(\\d*)([A-Za-z])', field, fmt))\n")
    (bin_dir / "scancel").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/scancel.args\n")
    for tool in ("squeue", "scancel"):
        (bin_dir / tool).chmod(0o755)
    assert SQUEUE_FIELDS.count("%") == len(values)
    return bin_dir


def test_cancel_asks_the_scheduler_and_cancels_only_the_users_tagged_job(
        home: Path, tmp_path: Path) -> None:
    user = helper.me().pw_name
    tag = f"hpcspawner:hub:{user}:"
    bin_dir = fake_squeue(tmp_path, user, tag)
    assert helper.cancel("slurm", "41", tag, str(bin_dir)) == "cancelled job 41"
    assert (tmp_path / "scancel.args").read_text().split() == ["41"]


@pytest.mark.parametrize(("owner", "comment"), [
    ("someone-else", "hpcspawner:hub:{user}:"),  # a record claiming the user's tag
    ("{user}", "my own analysis job"),  # the user's batch job that is not the hub's
    ("{user}", "hpcspawner:otherhub:{user}:"),  # another hub's job
])
def test_cancel_refuses_a_job_that_is_not_the_users_tagged_job(
        home: Path, tmp_path: Path, owner: str, comment: str) -> None:
    user = helper.me().pw_name
    bin_dir = fake_squeue(tmp_path, owner.format(user=user), comment.format(user=user))
    with pytest.raises(helper.Refused, match="is not"):
        helper.cancel("slurm", "41", f"hpcspawner:hub:{user}:", str(bin_dir))
    assert not (tmp_path / "scancel.args").exists()


def test_cancel_refuses_bad_arguments_and_unsafe_tool_directories(
        home: Path, tmp_path: Path) -> None:
    user = helper.me().pw_name
    tag = f"hpcspawner:hub:{user}:"
    with pytest.raises(helper.Refused, match="not a hub tag"):
        helper.cancel("slurm", "41", "hpcspawner:hub:root2:", "")
    with pytest.raises(helper.Refused, match="not a SLURM job id"):
        helper.cancel("slurm", "41;id", tag, "")
    with pytest.raises(helper.Refused, match="unknown backend"):
        helper.cancel("sh", "41", tag, "")
    bin_dir = fake_squeue(tmp_path, user, tag)
    bin_dir.chmod(0o777)
    with pytest.raises(helper.Refused, match="owned by root and writable by nobody else"):
        helper.cancel("slurm", "41", tag, str(bin_dir))


def test_the_file_checked_is_the_file_run_even_if_its_directory_is_swapped(
        tmp_path: Path) -> None:
    """A bin_dir reached through a link that is swapped between the check and the exec still
    runs the checked file: it is executed through its descriptor."""
    good, evil = tmp_path / "good", tmp_path / "evil"
    for d, word in ((good, "checked"), (evil, "swapped")):
        d.mkdir()
        d.chmod(0o755)
        (d / "scancel").write_text(f"#!/bin/sh\necho {word} \"$0\" \"$@\"\n")
        (d / "scancel").chmod(0o755)
    link = tmp_path / "bin"
    link.symlink_to(good)
    fd = helper.tool("scancel", str(link))
    link.unlink()
    link.symlink_to(evil)
    out = helper.run("scancel", fd, ["41"])
    assert out.stdout.split()[0] == "checked" and out.stdout.split()[-1] == "41"
    # a command that is itself a link (/usr/local/bin/condor_rm -> /opt/htcondor/bin/...)
    links = tmp_path / "links"
    links.mkdir()
    links.chmod(0o755)
    (links / "scancel").symlink_to(good / "scancel")
    assert helper.run("scancel", helper.tool("scancel", str(links)), []).stdout.startswith(
        "checked")
    with pytest.raises(OSError):
        os.fstat(fd)  # closed after the run


def test_the_helper_never_runs_as_root_and_prints_its_usage(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert helper.main(["sh", "-c", "id"]) == 2
    assert "refused" in capsys.readouterr().err
    if os.getuid() == 0:
        assert helper.main(["remove-token", "/root/.hpcspawner", "a.token"]) == 2
        assert "never as root" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="places only root can change: as root")
def test_the_helper_runs_only_from_places_root_alone_can_change(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Its code and its backends (and the packages whose entry points name them) come from
    sys.path: every entry and what lies above it must be root's, and only root (or, above it,
    a sticky directory such as /tmp) may add or swap a file there."""
    helper.trusted_path(sys.path)  # this venv, the system's Python, the checkout
    mine = tmp_path / "root-only"
    mine.mkdir(mode=0o755)
    helper.trusted_path([str(mine), str(mine / "absent" / "deeper")])
    alice = pwd.getpwnam("alice") if "alice" in {p.pw_name for p in pwd.getpwall()} else None
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o775)
    (tmp_path / "link").symlink_to("/tmp")
    refused = {"/tmp": "/tmp", "/tmp/absent/x": "/tmp", str(shared): str(shared),
               str(shared / "x"): str(shared), str(tmp_path / "link"): "/tmp"}
    if alice is not None:
        theirs = tmp_path / "theirs"
        (theirs / "site-packages").mkdir(parents=True, mode=0o755)
        os.chown(theirs, alice.pw_uid, alice.pw_gid)
        refused[str(theirs / "site-packages")] = str(theirs)
    for entry, culprit in refused.items():
        with pytest.raises(helper.Refused) as caught:
            helper.trusted_path([str(mine), entry])
        assert str(caught.value) == (
            f"this Python imports from {entry}, which {culprit} lets someone other than root "
            "change: run hpcspawner-helper from a root-owned venv (docs/security.md)")
    # before any subcommand: nothing else is looked at
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(shared)])
        assert helper.main(["remove-token", "/nowhere/.hpcspawner", "a.token"]) == 2
    assert f"this Python imports from {shared}" in capsys.readouterr().err


def test_check_script_takes_a_file_in_the_home_and_says_why_not_otherwise(
        home: Path, tmp_path: Path) -> None:
    (home / "dash").mkdir()
    (home / "dash" / "app.py").write_text("print(1)\n")
    helper.check_script(str(home / "dash" / "app.py"))
    outside = tmp_path / "bob.py"
    outside.write_text("secret\n")
    (home / "link.py").symlink_to(outside)
    refusals = {
        str(outside): "is not in your home directory",
        str(home / "link.py"): "leads outside your home directory",
        str(home / "missing.py"): "There is no file",
        str(home / "dash"): "is not a regular file",
        f"{home}/dash/../dash/app.py": "is not in your home directory",
    }
    for path, words in refusals.items():
        with pytest.raises(helper.Refused, match=words):
            helper.check_script(path)


def test_a_refusal_reaches_the_hub_as_the_helpers_own_sentence(tmp_path: Path) -> None:
    """The hub shows the person the helper's sentence (HelperRefused.why), not the command
    line or the sudoers hint that its log gets."""
    wrapper = tmp_path / "hpcspawner-helper"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m hpcspawner.helper "$@"\n')
    wrapper.chmod(0o755)
    backend = SlurmBackend(run_as_prefix=[], helper=str(wrapper))
    with pytest.raises(HelperRefused) as caught:
        asyncio.run(backend.helper_as_user("anyone", ["check-script", "/etc/passwd"]))
    first = "hpcspawner-helper runs as" if os.getuid() == 0 else "The script /etc/passwd is not"
    assert caught.value.why.startswith(first)
    assert "sudoers" not in caught.value.why and "check-script" not in caught.value.why
    assert "sudoers" in str(caught.value)


def test_only_the_helpers_own_lines_are_its_refusal() -> None:
    said = f"{helper.REFUSED}The script x is not a regular file."
    assert refusal(f"sudo: unable to resolve host vm\n{said}\n") == (
        "The script x is not a regular file.")
    assert refusal(f"a line that quotes {helper.REFUSED}in the middle\n") is None
    assert refusal(f"{helper.REFUSED}usage:\n  write-token DIR NAME") == (
        "usage:\n  write-token DIR NAME")
