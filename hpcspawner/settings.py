"""What a site sets for hpcspawner in jupyterhub_config.py (``c.HPCSpawner.NAME``): every
setting of the spawner with its help, default and check, apart from what the spawner does."""

from __future__ import annotations

import posixpath
import sys
from typing import Any

from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    default,
    validate,
)
from traitlets.config import LoggingConfigurable

from . import shared
from .contract import HUB_ID_RE, JOB_DIR_NAME, START_TIMEOUT, WALLTIME_WARNING
from .serverlog import FORMATS


class SpawnerSettings(LoggingConfigurable):
    """HPCSpawner's settings (``c.HPCSpawner.NAME``), their defaults and their checks; and
    the defaults of JupyterHub's Spawner settings that batch jobs need changed (HPCSpawner
    puts this class before Spawner)."""

    profiles_path = Unicode(
        "",
        help="""Path of profiles.yaml. Default: profiles.yaml beside jupyterhub_config.py.
        The file is re-read when it changes; a broken edit keeps the last good profiles.""",
    ).tag(config=True)

    template_paths = List(
        Unicode(),
        help="""Directories searched, in order, before the shipped templates. A file named
        like a shipped one (slurm.sbatch.j2, htcondor.sub.j2, form.html.j2) replaces it.""",
    ).tag(config=True)

    job_python = Unicode(
        help="""Python that runs the launcher inside the job (must have hpcspawner installed
        and be readable by every user: a venv under /opt, not under /root).
        Default: the hub's own Python.""",
    ).tag(config=True)

    availability_interval = Float(
        10.0,
        help="""Seconds the spawn page reuses the scheduler's answer on what can start now
        (one sinfo / condor_status per backend per interval, however many users look).""",
    ).tag(config=True)

    log_format = Enum(
        list(FORMATS), default_value="keyvalue",
        help="""How each hub log line about a server names it, at the line's end
        (docs/metrics.md#logs): "keyvalue" (user=alice server="" job=4242 profile=small)
        or "json" (the message and those fields as one JSON object).""",
    ).tag(config=True)

    walltime_warning = Integer(
        WALLTIME_WARNING,
        help="""Seconds before a server's time limit ends that its user is warned: on the
        hub's home page and in the server's log (the job's output).""",
    ).tag(config=True)

    hub_id = Unicode(
        help="""Name of this hub in its jobs' tags, so two hubs on one cluster never treat
        each other's jobs as orphans. Default: a random id made once and kept in
        hub_id_file, so it survives a rename of the host and a fail-over (keep the file with
        the hub's database). Jobs keep the tag they were submitted with: changing hub_id
        never loses a running server.""",
    ).tag(config=True)

    hub_id_file = Unicode(
        "hpcspawner_hub_id",
        help="""Where the default hub_id is kept (relative to the hub's working directory,
        like jupyterhub_cookie_secret).""",
    ).tag(config=True)

    job_dir = Unicode(
        "{home}/.hpcspawner",
        help="""Directory (on the shared home) for job logs and the token hand-off file;
        `{home}` and `{username}` are replaced. It must lie in the home and be named
        `.hpcspawner` (the one directory hpcspawner-helper creates and writes); created mode
        0700 as the user, its parent must exist.""",
    ).tag(config=True)

    fast_poll_interval = Float(
        1.0, help="Seconds between scheduler queries while any server is starting."
    ).tag(config=True)
    slow_poll_interval = Float(
        30.0, help="Seconds between scheduler queries when all servers run."
    ).tag(config=True)
    poll_jitter = Float(0.1, help="Random fraction added to or taken from each interval.").tag(
        config=True)
    orphan_grace = Float(
        30.0,
        help="""A job with this hub's tag that no server owns for this long is cancelled
        (only jobs of users this hub knows).""",
    ).tag(config=True)
    gone_after_queries = Integer(
        3,
        help="""A job the scheduler stops listing is declared ended (and its server stopped)
        only after this many good queries in a row lack it, over at least
        gone_after_seconds, unless accounting (sacct, condor_history) says it ended.""",
    ).tag(config=True)
    gone_after_seconds = Float(
        60.0, help="See gone_after_queries: the least time over which a job must be missing.",
    ).tag(config=True)

    extra_env = Dict(
        Unicode(), help="Extra environment variables for the job (not secrets)."
    ).tag(config=True)

    public_env = List(
        Unicode(),
        ["JUPYTERHUB_*", "LANG", "LC_*", "TZ"],
        help="""Environment variables (shell patterns) that may be written in the job script
        or the HTCondor job ad, which other users of the cluster can read (scontrol show job,
        condor_q -l). Everything else the server's environment holds (c.Spawner.environment,
        env_keep) travels in the 0600 token file; the API token never goes anywhere else.""",
    ).tag(config=True)

    check_reported_host = Bool(
        True,
        help="""Refuse a launcher's report whose host name is not the node the scheduler runs
        the job on. (The hub always routes to the scheduler's node, never to the reported
        host.) Turn off where the name a node reports for itself differs from SLURM's
        NodeName or the HTCondor slot's host.""",
    ).tag(config=True)

    progress_every = Integer(10, help="Seconds between repeated 'waiting in queue' messages.").tag(
        config=True)

    # Batch jobs queue: the defaults of the base class are for local processes.
    @default("start_timeout")
    def _start_timeout_default(self) -> int:
        return START_TIMEOUT

    @default("http_timeout")
    def _http_timeout_default(self) -> int:
        return 120

    @default("poll_interval")
    def _poll_interval_default(self) -> int:
        return 30

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        return ["JUPYTERHUB_SINGLEUSER_APP", "LANG", "LC_ALL"]

    @default("cmd")
    def _cmd_default(self) -> list[str]:
        return [posixpath.join(posixpath.dirname(self.job_python), "jupyterhub-singleuser")]

    @default("job_python")
    def _job_python_default(self) -> str:
        return sys.executable

    @default("hub_id")
    def _hub_id_default(self) -> str:
        return shared.hub_id(self.hub_id_file, self.log)

    @validate("hub_id")
    def _check_hub_id(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if not HUB_ID_RE.fullmatch(value):
            raise TraitError(f"hub_id {value!r}: use letters, digits, '.', '_' or '-' (it "
                             "is part of every job's tag)")
        return value

    @validate("job_dir")
    def _check_job_dir(self, proposal: Any) -> str:
        value = str(proposal["value"]).rstrip("/")
        if posixpath.basename(value) != JOB_DIR_NAME or not value.startswith("{home}/"):
            raise TraitError(f"job_dir {value!r}: it must be a directory named {JOB_DIR_NAME} "
                             "in the home, e.g. '{home}/.hpcspawner' or "
                             "'{home}/.cache/.hpcspawner' (hpcspawner-helper touches no other)")
        return value

    @default("apply_user_options")
    def _apply_user_options_default(self) -> Any:
        # user_options are validated and applied in start() (resolve_profile), for the form,
        # the REST API and URL spawns alike; this only tells JupyterHub they are handled.
        return lambda spawner, options: None
