"""How a backend runs its scheduler's commands: as the user (through the configured prefix,
sudo by default), as the hub, and hpcspawner-helper as the user; each in a bare environment,
with a time limit, counted in the hub's metrics; and whether a failed command may work if
tried again. The settings here are every backend's (``c.SlurmBackend.run_as_prefix``...)."""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from traitlets import Float, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..commands import (
    KEEP_ENV,
    CommandError,
    Result,
    bare_environment,
    expand_prefix,
    run_command,
)
from ..contract import REFUSED
from ..metrics import observe_command
from .errors import HelperRefused


def refusal(stderr: str) -> str | None:
    """The helper's refusal in its own words: from the line that starts with its marker to
    the end (the helper exits right after it); lines before it (e.g. sudo's) are not its."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(REFUSED):
            return "\n".join([line[len(REFUSED):], *lines[i + 1:]]).strip()
    return None


@dataclass
class _Outcome:
    ok: bool = True


@contextlib.contextmanager
def counted(argv: list[str], known: Collection[str]) -> Iterator[_Outcome]:
    """Count a scheduler command and its time in the hub's metrics (metrics.py): an error
    when it raised or (``outcome.ok = False``) answered with one."""
    outcome, started = _Outcome(), time.monotonic()
    try:
        yield outcome
    except BaseException:
        outcome.ok = False
        raise
    finally:
        observe_command(argv, known, time.monotonic() - started, outcome.ok)


class SchedulerCommands(LoggingConfigurable):
    """What every backend runs its commands with (a backend is one of these)."""

    _command_names: frozenset[str] | None = None
    # the hub's variables that say where this scheduler's configuration is (user_env_keep)
    config_env: tuple[str, ...] = ()
    # words of a scheduler that did not answer (a refusal names what is wrong instead): the
    # run's own time limit and the system's; each backend adds its scheduler's
    UNREACHABLE: tuple[str, ...] = ("no answer within", "Resource temporarily unavailable",
                                    "Connection refused")

    run_as_prefix = List(
        Unicode(),
        default_value=["sudo", "-n", "-u", "{username}", "--"],
        help="""Prefix that runs submit and cancel commands as the user. `{username}` is
        replaced. The default needs a sudoers rule for the hub's account (docs/install.md).""",
    ).tag(config=True)

    user_env_keep = List(
        Unicode(),
        help="""The hub's environment variables that commands run as the user (submit,
        cancel, hpcspawner-helper) get; nothing else of the hub's environment reaches them,
        nor a SLURM job, which starts from sbatch's environment. Default: PATH, the language
        and where the scheduler's configuration is (SLURM_CONF, CONDOR_CONFIG). Add e.g.
        `SBATCH_CLUSTERS` when the hub's environment carries it (sudo's env_reset may still
        drop it).""",
    ).tag(config=True)

    query_prefix = List(
        Unicode(),
        default_value=[],
        help="Prefix for status queries, which run as the hub's own account by default.",
    ).tag(config=True)

    helper = Unicode(
        help="""Absolute path of `hpcspawner-helper`, the one program besides the submit
        command that the hub runs as a user (token files, checked cancels; docs/install.md).
        Default: beside the hub's Python.""",
    ).tag(config=True)

    job_name = Unicode(
        "jupyterhub",
        help="""Name of every job this hub submits (SLURM job name, HTCondor batch_name);
        SLURM is asked for this name only, so the one query stays small on a busy cluster.""",
    ).tag(config=True)

    command_timeout = Float(
        60.0,
        help="""Seconds a scheduler command (submit, query) may take; then it and everything
        it started (sudo's child included) is ended and the attempt counts as failed (a
        query: the scheduler is not answering; a submit: the user is told).""",
    ).tag(config=True)

    helper_timeout = Float(
        60.0,
        help="""Seconds hpcspawner-helper (token files; a cancel, which asks the scheduler
        first) may take. Separate from command_timeout: a slow scheduler must not leave a
        token file behind.""",
    ).tag(config=True)

    @default("user_env_keep")
    def _user_env_keep_default(self) -> list[str]:
        return [*KEEP_ENV, *self.config_env]

    @default("helper")
    def _helper_default(self) -> str:
        return os.path.join(os.path.dirname(sys.executable), "hpcspawner-helper")

    def command_names(self) -> frozenset[str]:
        """The names of the commands this backend is configured with (its settings that are
        commands, and the helper): the metrics' bounded command labels."""
        if self._command_names is None:
            self._command_names = frozenset(
                posixpath.basename(value) for value in self.trait_values().values()
                if isinstance(value, str) and value and " " not in value)
        return self._command_names

    async def as_user(self, username: str, argv: list[str], *, input: str | None = None,
                      hint: str = "", timeout: float | None = None) -> Result:
        with counted(argv, self.command_names()):
            return await run_command(
                [*expand_prefix(self.run_as_prefix, username), *argv], input=input, hint=hint,
                env=bare_environment(self.user_env_keep),
                timeout=self.command_timeout if timeout is None else timeout)

    async def as_hub(self, argv: list[str], *, check: bool = True) -> Result:
        with counted(argv, self.command_names()) as result:
            answer = await run_command([*self.query_prefix, *argv],
                                       timeout=self.command_timeout, check=check)
            result.ok = answer.returncode == 0
            return answer

    def transient(self, exc: CommandError) -> bool:
        """Whether a failed command may work if tried again (the scheduler did not answer),
        rather than a refusal that only a change of configuration can fix."""
        if exc.returncode is None:
            return True
        return any(word in exc.stderr for word in self.UNREACHABLE)

    def tools_dir(self) -> str:
        """Where the scheduler's own commands are, when configured by absolute path ('' =
        sudo's PATH); the helper runs them from there only if root owns the directory."""
        return ""

    async def helper_as_user(self, username: str, args: list[str], *,
                             input: str | None = None) -> Result:
        """Run ``hpcspawner-helper ARGS`` as the user. Its refusals (exit 2) become a
        HelperRefused (a BackendError): asking again cannot help."""
        try:
            return await self.as_user(username, [self.helper, *args], input=input,
                                      hint="the hub may run hpcspawner-helper as the user "
                                      "(sudoers, docs/install.md)", timeout=self.helper_timeout)
        except CommandError as exc:
            why = refusal(exc.stderr) if exc.returncode == 2 else None
            if why is not None:
                raise HelperRefused(str(exc), why) from None
            raise
