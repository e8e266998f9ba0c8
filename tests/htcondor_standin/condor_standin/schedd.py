"""The job queue and history, kept as JSON under the state directory."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator

from .classad import ClassAd

JobKey = tuple[int, int]

# attributes a job loses when it stops running (RemoteHost moves to LastRemoteHost)
_RUN_ATTRS = ("RemoteHost", "RemoteSlotID", "StartdIpAddr", "StartdPrincipal", "PublicClaimId",
              "ShadowBday", "JobCurrentReconnectAttempt")


def key_text(key: JobKey) -> str:
    return f"{key[0]}.{key[1]}"


class Queue:
    """Jobs in the queue (ordered by id), the history file and the next cluster id."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        self.state_file = os.path.join(state_dir, "queue.json")
        self.history_file = os.path.join(state_dir, "history.jsonl")
        self.jobs: dict[JobKey, ClassAd] = {}
        self.next_cluster = 1
        self.autoclusters: dict[str, int] = {}
        self.pids: dict[str, int] = {}   # "cluster.proc" -> pid of a running job
        self._load()

    # ------------------------------------------------------------ persistence

    def _load(self) -> None:
        try:
            with open(self.state_file, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return
        self.next_cluster = int(data.get("next_cluster", 1))
        self.autoclusters = dict(data.get("autoclusters", {}))
        self.pids = {k: int(v) for k, v in data.get("pids", {}).items()}
        for raw in data.get("jobs", []):
            ad = ClassAd.from_dict(raw)
            self.jobs[(ad.get_int("ClusterId"), ad.get_int("ProcId"))] = ad

    def save(self) -> None:
        data = {"next_cluster": self.next_cluster, "autoclusters": self.autoclusters,
                "pids": self.pids,
                "jobs": [ad.to_dict() for _, ad in sorted(self.jobs.items())]}
        fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".queue.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.state_file)

    def append_history(self, ad: ClassAd) -> None:
        new = not os.path.exists(self.history_file)
        with open(self.history_file, "a", encoding="utf-8") as f:
            f.write(json.dumps(ad.to_dict()) + "\n")
        if new:
            os.chmod(self.history_file, 0o644)

    def history(self) -> list[ClassAd]:
        """Newest first."""
        return read_history(self.history_file)

    # ------------------------------------------------------------ queue

    def allocate_cluster(self) -> int:
        cluster = self.next_cluster
        self.next_cluster += 1
        return cluster

    def add(self, ad: ClassAd) -> None:
        self.jobs[(ad.get_int("ClusterId"), ad.get_int("ProcId"))] = ad

    def remove_to_history(self, key: JobKey) -> None:
        ad = self.jobs.pop(key)
        self.append_history(ad)

    def sorted_jobs(self) -> Iterator[tuple[JobKey, ClassAd]]:
        yield from sorted(self.jobs.items())

    def autocluster_id(self, ad: ClassAd) -> int:
        sig = "|".join(expr_text(ad, a) for a in (
            "RequestCpus", "RequestDisk", "RequestGPUs", "RequestMemory", "Rank", "Requirements",
            "FileSystemDomain", "TransferInputSizeMB"))
        if sig not in self.autoclusters:
            self.autoclusters[sig] = len(self.autoclusters) + 1
        return self.autoclusters[sig]


def read_history(path: str) -> list[ClassAd]:
    ads: list[ClassAd] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    ads.append(ClassAd.from_dict(json.loads(line)))
    except FileNotFoundError:
        pass
    ads.reverse()
    return ads


def stop_running(ad: ClassAd, now: int) -> None:
    """Bookkeeping when a running job leaves its slot (exit, hold, removal)."""
    host = ad.get("RemoteHost")
    if isinstance(host, str):
        ad["LastRemoteHost"] = host
    start = ad.get("JobCurrentStartDate")
    if isinstance(start, int):
        wall = ad.get_float("RemoteWallClockTime", 0.0) + (now - start)
        ad["RemoteWallClockTime"] = wall
        ad["CumulativeSlotTime"] = wall
        ad["CommittedTime"] = int(wall)
        ad["CommittedSlotTime"] = int(wall)
    for name in _RUN_ATTRS:
        del ad[name]
    ad["CurrentHosts"] = 0


def set_status(ad: ClassAd, status: int, now: int) -> None:
    old = ad.get("JobStatus")
    if isinstance(old, int) and old != status:
        ad["LastJobStatus"] = old
    ad["JobStatus"] = status
    ad["EnteredCurrentStatus"] = now


def hold(ad: ClassAd, reason: str, code: int, subcode: int, now: int) -> None:
    if ad.get("JobStatus") == 2:
        stop_running(ad, now)
    set_status(ad, 5, now)
    ad["HoldReason"] = reason
    ad["HoldReasonCode"] = code
    ad["HoldReasonSubCode"] = subcode
    ad["NumHolds"] = ad.get_int("NumHolds", 0) + 1


def mark_removed(ad: ClassAd, reason: str, now: int) -> None:
    if ad.get("JobStatus") == 2:
        stop_running(ad, now)
    set_status(ad, 3, now)
    ad["RemoveReason"] = reason


def expr_text(ad: ClassAd, attr: str) -> str:
    e = ad.expr(attr)
    return e.unparse(old=True) if e is not None else ""

