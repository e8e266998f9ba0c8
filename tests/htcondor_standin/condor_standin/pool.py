"""The stand-in's pool: schedd queue + two negotiators + startd/starter, in one process.

All state changes happen under `Pool.lock`; `tick()` is called every 0.1 s by the daemon.
"""

from __future__ import annotations

import os
import pwd
import signal
import threading
import time
from dataclasses import dataclass

from . import arglist, schedd, startd
from .classad import UNDEFINED, ClassAd, Expr, Literal, RecordExpr
from .classad_eval import evaluate
from .constants import AUTO_CLUSTER_ATTRS, SCHEDD_PORT, sinful
from .formats import format_time_short, long_ad
from .schedd import JobKey, key_text

HOLD_USER_REQUEST = 1
HOLD_JOB_POLICY = 3
HOLD_FAILED_TO_CREATE_PROCESS = 6
HOLD_UNABLE_TO_OPEN_OUTPUT = 7
HOLD_UNABLE_TO_OPEN_INPUT = 8
HOLD_TRANSFER_INPUT_ERROR = 13
HOLD_JOB_DURATION_EXCEEDED = 46


@dataclass
class Config:
    host: str
    state_dir: str
    schedd_names: list[str]
    pools: list[str]
    main_cycle: float = 20.0
    fast_cycle: float = 1.0
    jupyter_slots: int = 2
    periodic_interval: float = 5.0
    # the execute nodes, (name, network namespace); none: one startd on this host
    nodes: tuple[tuple[str, str], ...] = ()
    # PROTECTED_JOB_ATTRS as docs/htcondor.md sets it: once submitted, only a queue super
    # user may change these (HTCondor 25 protects none by default)
    protected_attrs: frozenset[str] = frozenset({"AllowedJobDuration", "ShadowBday"})
    super_users: frozenset[str] = frozenset({"root", "condor"})  # QUEUE_SUPER_USERS


@dataclass
class Negotiator:
    name: str
    cycle: float
    jupyter: bool
    last: float = 0.0
    requested: bool = False


def wants_jupyter_slot(ad: ClassAd) -> bool:
    req = ad.expr("Requirements")
    return req is not None and any(r.lower() == "isjupyterslot" for r in req.references())


def _number(ad: ClassAd, attr: str, default: int) -> int | None:
    if ad.expr(attr) is None:
        return default
    v = ad.eval(attr)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return int(-(-v // 1))


class Pool:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.queue = schedd.Queue(config.state_dir)
        self.startds = [startd.Startd(name, config.jupyter_slots, netns)
                        for name, netns in config.nodes or ((config.host, ""),)]
        self.running: dict[JobKey, startd.RunningProc] = {}
        self.dying: list[startd.RunningProc] = []
        self.shadow_durations: dict[JobKey, object] = {}
        now = time.time()
        self.negotiators = [Negotiator(config.host, config.main_cycle, False, now),
                            Negotiator(f"jupyter@{config.host}", config.fast_cycle, True, now)]
        self.last_periodic = now
        self.execute_dir = os.path.join(config.state_dir, "execute")
        self._recover()

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def schedd_address(self) -> str:
        return sinful(self.host, SCHEDD_PORT)

    def startd_of(self, slot_name: str) -> startd.Startd:
        host = slot_name.rsplit("@", 1)[1]
        return next(s for s in self.startds if s.host == host)

    def slot_ads(self) -> list[ClassAd]:
        return [ad for s in self.startds for ad in s.slot_ads()]

    def _claim(self, jupyter: bool, cpus: int, memory: int, gpus: int, disk: int, job: str,
               owner: str) -> startd.Slot | None:
        """The first node with room (the nodes in their configured order)."""
        for node in self.startds:
            slot = (node.claim_jupyter(cpus, memory, gpus, job, owner) if jupyter else
                    node.claim_main(cpus, memory, gpus, disk, job, owner))
            if slot is not None:
                return slot
        return None

    def _recover(self) -> None:
        """After a restart: jobs that were running lost their process; requeue them."""
        now = int(time.time())
        for _, ad in self.queue.sorted_jobs():
            if ad.get("JobStatus") == 2:
                schedd.stop_running(ad, now)
                schedd.set_status(ad, 1, now)
        for pid in self.queue.pids.values():
            startd.signal_group(pid, signal.SIGKILL)
        self.queue.pids.clear()
        self.queue.save()

    # ------------------------------------------------------------ names

    def accepts_schedd(self, name: str) -> bool:
        return name.lower() in (n.lower() for n in self.config.schedd_names)

    def accepts_pool(self, pool: str) -> bool:
        wanted = pool.lower()
        known = set()
        for p in self.config.pools:
            p = p.lower()
            known.add(p)
            known.add(p.split(":")[0] if p.count(":") == 1 else p)
            if ":" not in p:
                known.add(p + ":9618")
        return wanted in known

    # ------------------------------------------------------------ ticking

    def reschedule(self) -> None:
        for neg in self.negotiators:
            neg.requested = True

    def tick(self) -> None:
        with self.lock:
            now = time.time()
            self._reap(now)
            for neg in self.negotiators:
                if now >= neg.last + neg.cycle:
                    neg.last = now
                    neg.requested = False
                    self._negotiate(neg, int(now))
            if now >= self.last_periodic + self.config.periodic_interval:
                self.last_periodic = now
                self._periodic(int(now))

    # ------------------------------------------------------------ negotiation

    def _negotiate(self, neg: Negotiator, now: int) -> None:
        changed = False
        for key, ad in list(self.queue.sorted_jobs()):
            if ad.get("JobStatus") != 1 or wants_jupyter_slot(ad) != neg.jupyter:
                continue
            changed = True
            ad["AutoClusterId"] = self.queue.autocluster_id(ad)
            ad["AutoClusterAttrs"] = AUTO_CLUSTER_ATTRS
            cpus = _number(ad, "RequestCpus", 1)
            memory = _number(ad, "RequestMemory", 0)
            gpus = _number(ad, "RequestGPUs", 0)
            disk = _number(ad, "RequestDisk", 0)
            slot = None
            if cpus is not None and memory is not None and gpus is not None and disk is not None:
                slot = self._claim(neg.jupyter, cpus, memory, gpus, disk, key_text(key),
                                   ad.get_str("Owner", ""))
            if slot is None:
                ad["LastRejMatchReason"] = "no match found"
                ad["LastRejMatchTime"] = now
                ad["LastRejMatchNegotiator"] = neg.name
                continue
            self._start(key, ad, slot, now, disk or 0)
        if changed:
            self.queue.save()

    def _start(self, key: JobKey, ad: ClassAd, slot: startd.Slot, now: int, disk: int) -> None:
        ad["NumJobMatches"] = ad.get_int("NumJobMatches", 0) + 1
        ad["LastMatchTime"] = now
        if "FirstJobMatchDate" not in ad:
            ad["FirstJobMatchDate"] = now
        if "InitialWaitDuration" not in ad:
            ad["InitialWaitDuration"] = now - ad.get_int("QDate", now)
        if "JobStartDate" not in ad:
            ad["JobStartDate"] = now
        ad["JobCurrentStartDate"] = now
        ad["JobCurrentStartExecutingDate"] = now
        ad["ShadowBday"] = now
        # the shadow's own copy of the job's runtime: a later condor_qedit reaches it only
        # with -forward (src/condor_shadow.V6.1/baseshadow.cpp, handleUpdateJobAd)
        self.shadow_durations[key] = ad.get("AllowedJobDuration")
        ad["LastJobLeaseRenewal"] = now
        ad["ActivationSetupDuration"] = 0
        ad["JobRunCount"] = ad.get_int("JobRunCount", 0) + 1
        ad["NumShadowStarts"] = ad.get_int("NumShadowStarts", 0) + 1
        ad["RemoteHost"] = slot.name
        slot.global_id, slot.user = ad.get_str("GlobalJobId", ""), ad.get_str("User", "")
        ad["RemoteSlotID"] = slot.slot_id
        ad["CurrentHosts"] = 1
        node = self.startd_of(slot.name)
        ad["StartdIpAddr"] = node.address
        ad["StartdPrincipal"] = "execute-side@matchsession/127.0.0.1"
        ad["PublicClaimId"] = node.claim_id(slot)
        ad["CpusProvisioned"] = slot.cpus
        ad["MemoryProvisioned"] = slot.memory
        ad["GPUsProvisioned"] = slot.gpus
        ad["DiskProvisioned"] = disk if not slot.jupyter else slot.disk
        ad["MachineAttrCpus0"] = slot.cpus
        ad["MachineAttrSlotWeight0"] = slot.cpus
        ad["JobCurrentReconnectAttempt"] = UNDEFINED
        ad["TransferInputFileCounts"] = RecordExpr([("CEDAR", Literal(1))])
        ad["TransferInputStats"] = RecordExpr([])
        ad["TransferOutputStats"] = RecordExpr([])
        schedd.set_status(ad, 2, now)
        failure = self._launch(key, ad, slot)
        if failure is not None:
            reason, code, subcode = failure
            node.release(slot.name)
            schedd.hold(ad, reason, code, subcode, now)

    def _launch(self, key: JobKey, ad: ClassAd, slot: startd.Slot) -> tuple[str, int, int] | None:
        owner = ad.get_str("Owner", "")
        try:
            user = pwd.getpwnam(owner)
        except KeyError:
            return (f"Error from {slot.name}: Failed to find user '{owner}'", 6, 0)
        iwd = str(ad.get("Iwd", user.pw_dir))
        scratch = startd.make_scratch(self.execute_dir)
        transfer = ad.get_str("ShouldTransferFiles", "").upper() == "YES"
        exe = ad.get_str("Cmd", "")
        raw_args = ad.get("Arguments")
        if isinstance(raw_args, str):
            args = arglist.split_args(raw_args)
        else:
            args = ad.get_str("Args", "").split()
        env = {"HOME": user.pw_dir, "USER": owner, "LOGNAME": owner, "PATH": "/usr/bin:/bin",
               "_CONDOR_SCRATCH_DIR": scratch, "TMPDIR": scratch, "TEMP": scratch, "TMP": scratch,
               "_CONDOR_SLOT": slot.name.split("@")[0], "BATCH_SYSTEM": "HTCondor",
               "_CONDOR_JOB_IWD": iwd, "_CONDOR_JOB_AD": os.path.join(scratch, ".job.ad"),
               "_CONDOR_MACHINE_AD": os.path.join(scratch, ".machine.ad"),
               "OMP_NUM_THREADS": str(slot.cpus)}
        env.update(arglist.environment_from_v2_raw(ad.get_str("Environment", "")))
        self._write_ads(ad, slot, scratch, user)
        os.chown(scratch, user.pw_uid, user.pw_gid)   # only now: root wrote into it above
        inputs = []
        if transfer:
            inputs = [os.path.join(iwd, f) for f in ad.get_str("TransferInput", "").split(",")
                      if f.strip()]

        def resolve(path: str) -> str:
            return path if os.path.isabs(path) else os.path.join(iwd, path)

        result = startd.launch(exe, args, env, scratch if transfer else iwd,
                               resolve(ad.get_str("In", "/dev/null")),
                               resolve(ad.get_str("Out", "/dev/null")),
                               resolve(ad.get_str("Err", "/dev/null")), inputs, scratch, user,
                               self.startd_of(slot.name))
        if isinstance(result, startd.LaunchFailure):
            startd.remove_scratch(scratch)
            return self._failure_reason(result, slot, exe, args)
        self.queue.pids[key_text(key)] = result.pid
        self.running[key] = startd.RunningProc(result, slot.name, scratch)
        return None

    def _write_ads(self, ad: ClassAd, slot: startd.Slot, scratch: str,
                   user: pwd.struct_passwd) -> None:
        """.job.ad and .machine.ad in the (still root-owned) scratch directory."""
        machine = next((s for s in self.startd_of(slot.name).slot_ads()
                        if s.get("Name") == slot.name), None)
        for name, content in ((".job.ad", long_ad(ad)),
                              (".machine.ad", long_ad(machine) if machine else "\n")):
            fd = os.open(os.path.join(scratch, name),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(content)
                os.fchown(f.fileno(), user.pw_uid, user.pw_gid)

    def _failure_reason(self, f: startd.LaunchFailure, slot: startd.Slot, exe: str,
                        args: list[str]) -> tuple[str, int, int]:
        prefix = f"Error from {slot.name}: "
        if f.stage == "transfer":
            return (prefix + f"SHADOW at 127.0.0.1 failed to send file(s) to "
                    f"{self.startd_of(slot.name).address}: error reading from {f.path}: "
                    f"(errno {f.errno}) "
                    f"{f.strerror}; STARTER failed to receive file(s) from {self.schedd_address}",
                    HOLD_TRANSFER_INPUT_ERROR, f.errno)
        if f.stage in ("stdin", "stdout", "stderr"):
            phrase = {"stdin": "standard input", "stdout": "standard output",
                      "stderr": "standard error"}[f.stage]
            code = HOLD_UNABLE_TO_OPEN_INPUT if f.stage == "stdin" else HOLD_UNABLE_TO_OPEN_OUTPUT
            return (prefix + f"Failed to open '{f.path}' as {phrase}: {f.strerror} "
                    f"(errno {f.errno})", code, f.errno)
        with_args = f" with arguments {arglist.join_args(args)}" if args else ""
        detail = f"(errno={f.errno}: '{f.strerror}')"
        if f.stage == "chdir":
            detail = f'Cannot access initial working directory "{f.path}" ' + detail
        return (prefix + f"Failed to execute '{exe}'{with_args}: {detail}",
                HOLD_FAILED_TO_CREATE_PROCESS, f.errno)

    # ------------------------------------------------------------ process bookkeeping

    def _reap(self, now: float) -> None:
        for proc in list(self.dying):
            if proc.popen.poll() is not None:
                startd.signal_group(proc.popen.pid, signal.SIGKILL)
                startd.remove_scratch(proc.scratch)
                self.dying.remove(proc)
                if proc.removed is not None and proc.removed in self.queue.jobs:
                    self.queue.remove_to_history(proc.removed)
                    self.queue.save()
            elif proc.kill_at is not None and now >= proc.kill_at:
                startd.signal_group(proc.popen.pid, signal.SIGKILL)
                proc.kill_at = None
        for key, proc in list(self.running.items()):
            rc = proc.popen.poll()
            if rc is None:
                continue
            del self.running[key]
            self.queue.pids.pop(key_text(key), None)
            startd.signal_group(proc.popen.pid, signal.SIGKILL)
            startd.remove_scratch(proc.scratch)
            self.startd_of(proc.slot).release(proc.slot)
            ad = self.queue.jobs.get(key)
            if ad is None:
                continue
            t = int(now)
            schedd.stop_running(ad, t)
            if rc >= 0:
                ad["ExitCode"] = rc
                ad["ExitStatus"] = rc
                ad["ExitBySignal"] = False
            else:
                ad["ExitBySignal"] = True
                ad["ExitSignal"] = -rc
            ad["CompletionDate"] = t
            ad["NumJobCompletions"] = ad.get_int("NumJobCompletions", 0) + 1
            schedd.set_status(ad, 4, t)
            self.queue.remove_to_history(key)
            self.queue.save()

    def _stop_process(self, key: JobKey) -> startd.RunningProc | None:
        self.queue.pids.pop(key_text(key), None)
        proc = self.running.pop(key, None)
        if proc is None:
            return None
        self.startd_of(proc.slot).release(proc.slot)
        startd.terminate(proc)
        self.dying.append(proc)
        return proc

    # ------------------------------------------------------------ actions

    def hold_job(self, key: JobKey, reason: str, code: int, subcode: int) -> None:
        ad = self.queue.jobs[key]
        now = int(time.time())
        self._stop_process(key)
        schedd.hold(ad, reason, code, subcode, now)
        self.queue.save()

    def remove_job(self, key: JobKey, reason: str) -> None:
        ad = self.queue.jobs[key]
        now = int(time.time())
        proc = self._stop_process(key)
        schedd.mark_removed(ad, reason, now)
        # As a real schedd: in condor_q (JobStatus 3) until its processes have exited. A job
        # that goes at once on SIGTERM (a `sleep`) is in the history a moment later.
        deadline = time.monotonic() + 0.3
        while proc is not None and proc.popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc is None or proc.popen.poll() is not None:
            self.queue.remove_to_history(key)
        else:
            proc.removed = key
        self.queue.save()

    def release_job(self, key: JobKey) -> None:
        ad = self.queue.jobs[key]
        schedd.set_status(ad, 1, int(time.time()))
        self.queue.save()

    # ------------------------------------------------------------ periodic policy

    def _periodic(self, now: int) -> None:
        for key, ad in list(self.queue.sorted_jobs()):
            status = ad.get("JobStatus")
            duration = self.shadow_durations.get(key, ad.get("AllowedJobDuration"))
            birth = ad.get("ShadowBday")
            if status == 2 and isinstance(duration, int) and isinstance(birth, int) \
                    and now - birth >= duration:
                self.hold_job(key, "The job exceeded allowed job duration of "
                              f"{format_time_short(duration)}", HOLD_JOB_DURATION_EXCEEDED, 0)
                status = 5
            if status in (1, 2) and self._fires(ad, "PeriodicHold"):
                self.hold_job(key, self._policy_reason(ad, "PeriodicHold"), HOLD_JOB_POLICY, 0)
                status = 5
            if status == 5 and self._fires(ad, "PeriodicRelease"):
                self.release_job(key)
                status = 1
            if status != 3 and self._fires(ad, "PeriodicRemove"):
                self.remove_job(key, self._policy_reason(ad, "PeriodicRemove"))

    @staticmethod
    def _fires(ad: ClassAd, attr: str) -> bool:
        expr: Expr | None = ad.expr(attr)
        if expr is None:
            return False
        return evaluate(expr, ad) is True

    @staticmethod
    def _policy_reason(ad: ClassAd, attr: str) -> str:
        return (f"The job attribute {attr} expression '{schedd.expr_text(ad, attr)}' "
                "evaluated to TRUE")

    # ------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Kill running jobs; a restarted daemon puts them back to Idle (see README)."""
        with self.lock:
            for proc in list(self.running.values()) + self.dying:
                startd.signal_group(proc.popen.pid, signal.SIGKILL)
            self.queue.save()

