"""What a scheduler says of a job and of a node, in the hub's own words: the types every
layer shares (the backends write them, the poller, the job, the cards and the messages read
them). At the bottom of the package: it imports nothing of hpcspawner."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(str, enum.Enum):
    PENDING = "pending"  # queued, idle: waiting for resources or a match
    RUNNING = "running"  # allocated and executing on a node
    COMPLETING = "completing"  # ending; the node is cleaning up
    HELD = "held"  # HTCondor hold: will not run until released
    GONE = "gone"  # ended (cancelled, completed, failed, walltime): never comes back
    UNKNOWN = "unknown"  # the scheduler did not answer; never a reason to drop a server

    @property
    def alive(self) -> bool:
        return self in (JobState.PENDING, JobState.RUNNING, JobState.HELD, JobState.UNKNOWN)


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    state: JobState
    host: str = ""
    reason: str = ""  # pending reason, hold reason, or why it ended
    meaning: str = ""  # a pending reason in plain words (the backend knows its scheduler's)
    user: str = ""  # the job's owner, as the scheduler says
    tag: str = ""  # our tag (comment / ClassAd) — tells which hub and server own it
    since: float | None = None  # when the job entered this state (epoch), when known
    raw_state: str = ""  # the scheduler's own word (PENDING, CANCELLED, 5, ...)
    exit_code: int | None = None
    # the scheduler's own times (epoch), when it says: a queued job's expected start or a
    # running job's start, and when its time limit ends (moved by an extension or an admin)
    starts: float | None = None
    ends: float | None = None


@dataclass(frozen=True)
class Availability:
    """What one node (SLURM) or slot (HTCondor) could give a new job right now."""

    name: str  # node or slot
    groups: tuple[str, ...]  # its partitions (SLURM); "jupyter" or "pool" (HTCondor)
    free_cores: int
    total_cores: int
    free_memory: int = 0  # bytes
    free_gpus: int = 0
    usable: bool = True  # not down, drained or claimed
