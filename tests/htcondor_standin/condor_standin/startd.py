"""The execute side: a host with a partitionable slot and reserved notebook slots, and
the "starter" that runs a job as its owner (on a named node: in that node's network and UTS
namespaces, as scripts/cluster-up --nodes makes them).

Pool model (a simplification, see README): slot1@host is partitionable (8 CPUs, 64000 MB,
0 GPUs) and is carved into dynamic slots slot1_N@host; slot2@host ... slot<K+1>@host are the
static notebook slots of slot type 2 (1 CPU / 1536 MB), named, numbered and typed as the real
test pool names them (scripts/condor-pool), IsJupyterSlot true there and false elsewhere.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

from .classad import ClassAd, ListExpr, Literal
from .classad_parse import parse
from .constants import ARCH, CONDOR_VERSION, OPSYS, STARTD_PORT, sinful

PSLOT_CPUS = 8
PSLOT_MEMORY = 64000
PSLOT_GPUS = 0
PSLOT_DISK = 77383536
# the reserved notebook slots of docs/htcondor.md (the real test pool's layout, scripts/condor-pool)
JUPYTER_CPUS = 1
JUPYTER_MEMORY = 1536
JUPYTER_SLOT_TYPE = 2
# an expression in every slot's ad, as STARTD_ATTRS puts it there: `-af` and constraints
# evaluate it (true on the notebook slots), `-json` prints it as "\/Expr((SlotTypeID == 2))\/"
IS_JUPYTER_SLOT = parse("(SlotTypeID == 2)")
LAUNCH_TIMEOUT = 30.0   # seconds the launcher may take to copy inputs and exec


@dataclass
class Slot:
    name: str
    slot_id: int          # 1 for slot1 and its children, N for the notebook slot slotN
    sub_id: int           # N of slot1_N, 0 for the partitionable and the static slots
    cpus: int
    memory: int
    gpus: int
    disk: int
    jupyter: bool = False
    job: str | None = None          # "cluster.proc" while claimed
    owner: str | None = None
    # the claiming job's GlobalJobId and User (owner@UID_DOMAIN of its schedd), as a real
    # startd advertises them (GlobalJobId, RemoteUser) from the job it runs
    global_id: str = ""
    user: str = ""
    claim_seq: int = 0
    entered: int = field(default_factory=lambda: int(time.time()))


class Startd:
    def __init__(self, host: str, jupyter_slots: int, netns: str = "") -> None:
        self.host = host
        self.netns = netns  # the node's network namespace ("": this host's own)
        self.birth = int(time.time())
        self.claims = 0
        self.dynamic: dict[str, Slot] = {}
        self.reserved = [Slot(f"slot{n}@{host}", n, 0, JUPYTER_CPUS, JUPYTER_MEMORY, 0,
                              PSLOT_DISK // 8, jupyter=True) for n in range(2, jupyter_slots + 2)]
        self.pslot_entered = self.birth

    @property
    def address(self) -> str:
        return sinful(self.host, STARTD_PORT)

    def free_main(self) -> tuple[int, int, int]:
        used = list(self.dynamic.values())
        return (PSLOT_CPUS - sum(s.cpus for s in used), PSLOT_MEMORY - sum(s.memory for s in used),
                PSLOT_GPUS - sum(s.gpus for s in used))

    def claim_main(self, cpus: int, memory: int, gpus: int, disk: int, job: str,
                   owner: str) -> Slot | None:
        fc, fm, fg = self.free_main()
        if cpus > fc or memory > fm or gpus > fg:
            return None
        n = 1
        while f"slot1_{n}@{self.host}" in self.dynamic:
            n += 1
        self.claims += 1
        slot = Slot(f"slot1_{n}@{self.host}", 1, n, cpus, memory, gpus, disk, job=job,
                    owner=owner, claim_seq=self.claims)
        self.dynamic[slot.name] = slot
        self.pslot_entered = int(time.time())
        return slot

    def claim_jupyter(self, cpus: int, memory: int, gpus: int, job: str,
                      owner: str) -> Slot | None:
        for slot in self.reserved:
            if slot.job is None and cpus <= slot.cpus and memory <= slot.memory \
                    and gpus <= slot.gpus:
                self.claims += 1
                slot.job, slot.owner, slot.claim_seq = job, owner, self.claims
                slot.entered = int(time.time())
                return slot
        return None

    def release(self, name: str) -> None:
        if name in self.dynamic:
            del self.dynamic[name]
            self.pslot_entered = int(time.time())
            return
        for slot in self.reserved:
            if slot.name == name:
                slot.job = slot.owner = None
                slot.global_id = slot.user = ""
                slot.entered = int(time.time())

    def claim_id(self, slot: Slot) -> str:
        return f"{self.address}#{self.birth}#{slot.claim_seq}#..."

    def _common(self, ad: ClassAd, now: int) -> None:
        ad["MyType"] = "Machine"
        ad["TargetType"] = "Job"
        ad["Machine"] = self.host
        ad["Arch"] = ARCH
        ad["OpSys"] = OPSYS
        ad["OpSysAndVer"] = "Debian12"
        ad["CondorVersion"] = CONDOR_VERSION
        ad["FileSystemDomain"] = self.host
        ad["UidDomain"] = self.host
        ad["HasFileTransfer"] = True
        ad["StartdIpAddr"] = self.address
        ad["MyAddress"] = self.address
        ad["LoadAvg"] = 0.0
        ad["CondorLoadAvg"] = 0.0
        ad["TotalCpus"] = float(PSLOT_CPUS + JUPYTER_CPUS * len(self.reserved))
        ad["TotalMemory"] = PSLOT_MEMORY + JUPYTER_MEMORY * len(self.reserved)
        ad["DaemonStartTime"] = self.birth
        ad["LastHeardFrom"] = now

    def _slot_ad(self, slot: Slot, now: int, kind: str) -> ClassAd:
        ad = ClassAd()
        self._common(ad, now)
        ad["Name"] = slot.name
        ad["SlotID"] = slot.slot_id
        ad["SlotType"] = kind
        # a static slot's type is its SLOT_TYPE_<n> (2: the notebook slots); a dynamic one's
        # is minus its partitionable parent's type
        ad["SlotTypeID"] = JUPYTER_SLOT_TYPE if kind == "Static" else -slot.slot_id
        ad["Cpus"] = slot.cpus
        ad["Memory"] = slot.memory
        ad["Gpus"] = slot.gpus
        ad["Disk"] = slot.disk
        ad["TotalSlotCpus"] = slot.cpus
        ad["TotalSlotMemory"] = slot.memory
        ad["TotalSlotGpus"] = slot.gpus
        ad["TotalSlotDisk"] = slot.disk
        claimed = slot.job is not None
        ad["State"] = "Claimed" if claimed else "Unclaimed"
        ad["Activity"] = "Busy" if claimed else "Idle"
        ad["EnteredCurrentState"] = slot.entered
        ad["EnteredCurrentActivity"] = slot.entered
        if kind == "Dynamic":
            ad["DynamicSlot"] = True
            ad["DSlotID"] = slot.sub_id
        ad["IsJupyterSlot"] = IS_JUPYTER_SLOT
        if claimed:
            ad["JobId"] = slot.job or ""
            ad["RemoteOwner"] = ad["RemoteUser"] = slot.user or f"{slot.owner}@{self.host}"
            if slot.global_id:
                ad["GlobalJobId"] = slot.global_id
            ad["ClientMachine"] = self.host
            ad["PublicClaimId"] = self.claim_id(slot)
        return ad

    def slot_ads(self) -> list[ClassAd]:
        now = int(time.time())
        fc, fm, fg = self.free_main()
        p = ClassAd()
        self._common(p, now)
        p["Name"] = f"slot1@{self.host}"
        p["SlotID"] = 1
        p["SlotType"] = "Partitionable"
        p["SlotTypeID"] = 1
        p["PartitionableSlot"] = True
        p["IsJupyterSlot"] = IS_JUPYTER_SLOT
        p["Cpus"] = fc
        p["Memory"] = fm
        p["Gpus"] = fg
        p["Disk"] = PSLOT_DISK
        p["TotalSlotCpus"] = PSLOT_CPUS
        p["TotalSlotMemory"] = PSLOT_MEMORY
        p["TotalSlotGpus"] = PSLOT_GPUS
        p["TotalSlotDisk"] = PSLOT_DISK
        p["State"] = "Unclaimed"
        p["Activity"] = "Idle"
        p["EnteredCurrentState"] = self.birth
        p["EnteredCurrentActivity"] = self.pslot_entered
        children = sorted(self.dynamic.values(), key=lambda s: s.sub_id)
        p["NumDynamicSlots"] = len(children)
        p["PslotRollupInformation"] = True
        p["ChildCpus"] = ListExpr([Literal(s.cpus) for s in children])
        p["ChildMemory"] = ListExpr([Literal(s.memory) for s in children])
        p["ChildGpus"] = ListExpr([Literal(s.gpus) for s in children])
        p["ChildName"] = ListExpr([Literal(s.name) for s in children])
        p["ChildState"] = ListExpr([Literal("Claimed") for _ in children])
        p["ChildActivity"] = ListExpr([Literal("Busy") for _ in children])
        p["ChildRemoteUser"] = ListExpr([Literal(s.user or f"{s.owner}@{self.host}")
                                          for s in children])
        ads = [p] + [self._slot_ad(s, now, "Dynamic") for s in children]
        ads += [self._slot_ad(s, now, "Static") for s in self.reserved]
        return ads


# ---------------------------------------------------------------- starter

# Runs as the job owner (Popen user=/group=/extra_groups=, new session): copies the input
# files into the scratch directory, opens stdin/stdout/stderr, changes directory and execs
# the job.  Failures are reported on the status pipe; a successful exec closes it.
_LAUNCHER = r"""
import fcntl, json, os, shutil, sys
spec_fd, status_fd = int(sys.argv[1]), int(sys.argv[2])
with os.fdopen(spec_fd, "rb") as f:
    spec = json.loads(f.read())
def fail(stage, err, path):
    os.write(status_fd, json.dumps({"stage": stage, "errno": err.errno or 0,
             "strerror": err.strerror or str(err), "path": path}).encode())
    os._exit(127)
os.umask(0o022)
for src in spec["inputs"]:
    try:
        shutil.copy(src, os.path.join(spec["scratch"], os.path.basename(src.rstrip("/"))))
    except OSError as e:
        fail("transfer", e, src)
fds = []
out_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
for stage, path, flags in (("stdin", spec["in"], os.O_RDONLY), ("stdout", spec["out"], out_flags),
                           ("stderr", spec["err"], out_flags)):
    try:
        fds.append(os.open(path, flags, 0o666))
    except OSError as e:
        fail(stage, e, path)
try:
    os.chdir(spec["cwd"])
except OSError as e:
    fail("chdir", e, spec["cwd"])
for i, fd in enumerate(fds):
    os.dup2(fd, i)
    if fd > 2:
        os.close(fd)
fcntl.fcntl(status_fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
try:
    os.execve(spec["exe"], [spec["exe"]] + spec["args"], spec["env"])
except OSError as e:
    fail("exec", e, spec["exe"])
"""


@dataclass
class LaunchFailure:
    stage: str
    errno: int
    strerror: str
    path: str


@dataclass
class RunningProc:
    popen: subprocess.Popen[bytes]
    slot: str
    scratch: str
    kill_at: float | None = None   # SIGKILL deadline after a SIGTERM
    removed: tuple[int, int] | None = None  # its job, removed: to the history once it exits


def make_scratch(execute_dir: str) -> str:
    """A new root-owned 0700 execute/dir_N; the caller hands it to the user."""
    os.makedirs(execute_dir, mode=0o755, exist_ok=True)
    n = 1
    while True:
        path = os.path.join(execute_dir, f"dir_{n}")
        try:
            os.mkdir(path, 0o700)
            break
        except FileExistsError:
            n += 1
    return path


def launch(exe: str, args: list[str], env: dict[str, str], cwd: str, stdin: str, stdout: str,
           stderr: str, inputs: list[str], scratch: str, user: pwd.struct_passwd,
           node: Startd | None = None) -> subprocess.Popen[bytes] | LaunchFailure:
    spec_r, spec_w = os.pipe()
    status_r, status_w = os.pipe()
    spec = {"exe": exe, "args": args, "env": env, "cwd": cwd, "in": stdin, "out": stdout,
            "err": stderr, "inputs": inputs, "scratch": scratch}
    argv = ["/usr/bin/python3", "-I", "-S", "-c", _LAUNCHER, str(spec_r), str(status_w)]
    try:
        groups = os.getgrouplist(user.pw_name, user.pw_gid)
        if node is not None and node.netns:
            # into the node's namespaces as root, then the owner's ids (each step execs: the
            # PID is the job's)
            popen = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{node.netns}", "--", "unshare", "--uts", "--",
                 "/bin/sh", "-c", 'hostname "$0" && exec "$@"', node.host,
                 "setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                 f"--groups={','.join(map(str, groups))}", "--", *argv],
                pass_fds=(spec_r, status_w), start_new_session=True, cwd="/",
                env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            popen = subprocess.Popen(
                argv, pass_fds=(spec_r, status_w), user=user.pw_uid, group=user.pw_gid,
                extra_groups=groups, start_new_session=True, cwd="/", env={},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.close(spec_r)
        os.close(status_w)
    with os.fdopen(spec_w, "wb") as f:
        f.write(json.dumps(spec).encode())
    with os.fdopen(status_r, "rb") as f:
        ready, _, _ = select.select([f], [], [], LAUNCH_TIMEOUT)
        if not ready:   # e.g. copying a FIFO: give up rather than block the daemon
            signal_group(popen.pid, signal.SIGKILL)
            popen.wait()
            return LaunchFailure("transfer", errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT),
                                 " ".join(inputs))
        report = f.read()
    if report:
        popen.wait()
        info = json.loads(report)
        return LaunchFailure(info["stage"], info["errno"], info["strerror"], info["path"])
    return popen


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass


def remove_scratch(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


def terminate(proc: RunningProc, grace: float = 5.0) -> None:
    """SIGTERM the job's process group now; the caller SIGKILLs it at proc.kill_at."""
    signal_group(proc.popen.pid, signal.SIGTERM)
    proc.kill_at = time.time() + grace
