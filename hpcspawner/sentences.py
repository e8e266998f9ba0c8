"""Sentences a user reads on the spawn page: plain words, the job id for support."""

from __future__ import annotations

import time

from .domain import JobInfo, JobState
from .profiles import Profile
from .units import format_duration


def explain(info: JobInfo) -> str:
    """The scheduler's reason, with what it means when the backend knows."""
    return f"{info.reason} ({info.meaning})" if info.meaning else info.reason


def submitted(job_id: str, profile: Profile, where: str = "") -> str:
    """``where`` is the backend's word for where the job went ('partition jupyter')."""
    return f"Submitted job {job_id}{' to ' + where if where else ''} ({profile.title})"


def fallback(job_id: str, timeout: int) -> str:
    return (f"No reserved notebook slot was free within {format_duration(timeout)}; job "
            f"{job_id} was removed and your server moves to the regular pool, which can take "
            "longer")


def state_progress(info: JobInfo, waited: float) -> tuple[int, str]:
    since = format_duration(int(waited))
    if info.state is JobState.PENDING:
        reason = f": {explain(info)}" if info.reason else ""
        return 20, f"Waiting in queue{reason} (since {since})"
    if info.state is JobState.RUNNING:
        node = f" on node {info.host}" if info.host else ""
        return 60, f"Running{node}, starting Jupyter"
    if info.state is JobState.HELD:
        return 30, f"Job {info.job_id} is held: {info.reason}"
    if info.state is JobState.UNKNOWN:
        return 20, f"The scheduler is not answering; still waiting (job {info.job_id})"
    return 70, f"Job {info.job_id} is {info.state.value}"


def listening(host: str, port: int) -> str:
    return f"Server ready on {host}:{port}"


def submit_failed(profile: Profile) -> str:
    """The scheduler did not answer: trying again later can work."""
    return (f"The batch system did not accept the job for '{profile.title}'. Try again in a "
            "minute; if it keeps failing, tell the hub's administrators.")


def submit_refused(profile: Profile) -> str:
    """The scheduler answered no: the site's configuration must change (the log has why)."""
    return (f"The batch system refused the job for '{profile.title}': the site's "
            "configuration of this profile does not work, and trying again will not help. "
            "Please tell the hub's administrators (the hub's log has the scheduler's words); "
            "choose another profile meanwhile.")


def handoff_failed() -> str:
    return ("The hub could not prepare your job's files in your home directory "
            "(~/.hpcspawner). Please tell the hub's administrators.")


def see_log(log_file: str) -> str:
    return f"Its output is in {log_file}. " if log_file else ""


def ended_while_starting(job_id: str, info: JobInfo, log_file: str = "") -> str:
    return (f"Your job ended before the server started: {info.reason or 'it left the queue'}. "
            f"{see_log(log_file)}Job id for support: {job_id}.")


def pending_timeout(job_id: str, info: JobInfo, timeout: int) -> str:
    reason = explain(info) if info.reason else "no reason given"
    return (f"The job waited longer than {format_duration(timeout)} in the queue and was "
            f"cancelled. The scheduler said: {reason}. Try a smaller profile or later. "
            f"Job id for support: {job_id}.")


def held(job_id: str, info: JobInfo, log_file: str = "") -> str:
    return (f"The job was put on hold and removed: {info.reason or 'no reason given'}. "
            f"{see_log(log_file)}Job id for support: {job_id}.")


def ended(job_id: str, info: JobInfo) -> str:
    return f"Your last server stopped: {info.reason or 'the job ended'} (job {job_id})."


def left_its_node(job_id: str, info: JobInfo) -> str:
    """The routed job no longer runs where the hub routes to (held, requeued, suspended,
    restarted or moved): its server was stopped and its address taken down."""
    if info.state is JobState.RUNNING:
        what = f"it started again on {info.host or 'another node'}"
    else:
        what = f"it became {info.state.value}"
        what += f" ({explain(info)})" if info.reason else ""
    return (f"Your last server was stopped: its job {job_id} no longer ran where the hub "
            f"reached it ({what}). Start it again to go on.")


def exited(job_id: str) -> str:
    return (f"Your server exited (job {job_id}); its address was taken down at once. Start "
            "it again to go on.")


def idle_stopped(profile: Profile, idle: int) -> str:
    limit = format_duration(profile.idle_timeout or 0)
    return (f"Your last server was stopped after {format_duration(idle)} without activity: "
            f"'{profile.title}' stops idle servers after {limit}. Start a new one when you "
            "need it.")


def clock(epoch: float) -> str:
    """2026-12-01 14:03 UTC (the hub's pages say UTC: users sit in many time zones)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def _left(seconds: float) -> str:
    minutes = max(1, int(seconds // 60))
    return format_duration(minutes * 60)


def runs_until(ends: float, left: float) -> str:
    if left <= 0:
        return f"Its time limit ended at {clock(ends)}."
    return f"Runs until {clock(ends)} ({_left(left)} left)."


def walltime_warning(server_name: str, title: str, ends: float, left: float,
                     extendable: bool = False) -> str:
    which = f"Your server {server_name!r}" if server_name else "Your server"
    what = f" ({title})" if title else ""
    more = ("extend it from its card on the hub's home page" if extendable
            else "start it again")
    return (f"{which}{what} stops at {clock(ends)}, in {_left(left)}, when its job's time "
            f"limit ends. Save your work; {more} for more time.")


def expected_start(epoch: float, now: float) -> str:
    """The scheduler's estimate, said as one (it moves as other jobs end)."""
    return (f"The scheduler expects it could start around {clock(epoch)} (in "
            f"{_left(epoch - now)}).")
