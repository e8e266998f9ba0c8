"""HTCondor's words, read and written: quoting for the submit description (the filters of
htcondor.sub.j2), job ids and locations, the JSON ads of condor_q and condor_history read into
the hub's JobInfo (bounded, typed), the slot ads the hub routes by, and condor_status's
availability. The HTCondor backend (htcondor.py) runs the commands."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ..oneline import one_line, shown
from ..render import RenderError, envname
from .base import (
    Availability,
    JobInfo,
    JobState,
)

log = logging.getLogger("hpcspawner.htcondor")

# -- quoting for the submit description (filters of htcondor.sub.j2) ---------------------------
LOG_MACRO = "$(ClusterId)"  # the one macro a value may hold: ours, in log paths (log_name)
# what condor_submit would expand: $(X), $ENV(X), $RANDOM_CHOICE(...), $$(X), and a $ right
# before our $(ClusterId) (which would make $$(ClusterId)); a $ before anything else ($HOME,
# "$@" of a site's sh -c command) is left alone by condor_submit and reaches the job as is
_MACRO_RE = re.compile(r"\$(?:[A-Za-z_]*\(|\$|\0)")


def classad_string(value: Any) -> str:
    """A ClassAd string literal: double quotes, backslash and quote escaped, one line, no
    macro (condor_submit expands ``$(X)``, ``$ENV(X)``, ``$$(X)`` in +Attr values too)."""
    text = str(value)
    if any(c in text for c in "\n\r\0") or _MACRO_RE.search(text):
        raise RenderError(f"{text!r} cannot go in a ClassAd (line break or $(...) macro, "
                          "which condor_submit would expand)")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def submit_value(value: Any) -> str:
    """A value for an HTCondor submit-description line: one line, no macro (``$(X)``,
    ``$ENV(X)``, ``$$(X)``) that condor_submit would expand but our ``$(ClusterId)`` (and no
    ``$`` right before it, which would make ``$$(ClusterId)``)."""
    text = str(value)
    plain = text.replace(LOG_MACRO, "\0")
    if any(c in text for c in "\n\r\0") or _MACRO_RE.search(plain):
        raise RenderError(f"{text!r} cannot go in a submit description (line break or "
                          "$(...) macro, which condor_submit would expand)")
    return text


def _condor_word(value: Any) -> str:
    """One word of HTCondor's new argument/environment syntax: " doubled; a word with
    spaces or ' (or an empty one) in single quotes, with ' doubled inside."""
    text = submit_value(value).replace('"', '""')
    if not text or any(c in text for c in " \t'"):
        text = "'" + text.replace("'", "''") + "'"
    return text


def condor_args(words: Sequence[Any]) -> str:
    """HTCondor's new argument syntax: the words, double-quoted as a whole."""
    return '"' + " ".join(_condor_word(word) for word in words) + '"'


def condor_env(env: dict[str, str]) -> str:
    """HTCondor's new environment syntax: "NAME=value NAME='value with spaces'"."""
    pairs = (f"{envname(name)}={_condor_word(value)}" for name, value in sorted(env.items()))
    return '"' + " ".join(pairs) + '"'


# -- job ids and locations ---------------------------------------------------------------------
def job_id(cluster: int | str, schedd: str | None = None, pool: str | None = None) -> str:
    if not schedd and not pool:
        return str(cluster)
    return f"{cluster}@{schedd or ''}@{pool or ''}"


def split_job_id(value: str) -> tuple[str, str | None, str | None]:
    cluster, _, rest = value.partition("@")
    schedd, _, pool = rest.partition("@")
    return cluster, schedd or None, pool or None


def location_args(schedd: str | None, pool: str | None) -> list[str]:
    args = []
    if schedd:
        args += ["-name", schedd]
    if pool:
        args += ["-pool", pool]
    return args


def parse_json_ads(text: str) -> list[dict[str, object]]:
    """``condor_q -json`` / ``condor_history -json`` / ``condor_status -json``: a JSON list
    (nothing at all when empty), printed one ad at a time between a ``{`` and a ``}`` alone on
    their lines (JSON strings hold no raw line break). Each ad is read on its own: one that
    cannot be read (nested thousands deep, cut short) is logged and skipped, never a reason to
    lose the others."""
    text = text.strip()
    if not text:
        return []
    if not (text.startswith("[") and text.endswith("]")):
        raise ValueError("the -json output is not a list")
    ads: list[dict[str, object]] = []
    record: list[str] = []
    lines = text[1:-1].split("\n")
    if "{" not in lines:  # not laid out one ad per block: read it whole
        try:
            whole = json.loads(text)
        except RecursionError:
            raise ValueError("the -json output is nested too deeply") from None
        return [ad for ad in whole if isinstance(ad, dict)]
    for line in lines:
        if line == "{":
            record = [line]
        elif record:
            record.append(line)
            if line == "}":
                _add_ad(ads, "\n".join(record))
                record = []
    return ads


def _add_ad(ads: list[dict[str, object]], text: str) -> None:
    try:
        ad = json.loads(text)
    except (ValueError, RecursionError) as exc:
        log.warning("ignoring an unreadable ad (%d bytes): %s", len(text), shown(exc, 100))
        return
    if isinstance(ad, dict):
        ads.append(ad)


Identity = tuple[str, str]  # a job's (GlobalJobId, User): its schedd, id and full owner


def identities(ads: list[dict[str, object]], schedd: str | None = None,
               pool: str | None = None) -> dict[str, Identity]:
    """Each job's full identity from its ad, both set by the schedd: ``User``
    (owner@UID_DOMAIN, in SYSTEM_IMMUTABLE_JOB_ATTRS) and ``GlobalJobId``
    (schedd#cluster.proc#qdate; its owner may condor_qedit it, so its cluster must be the
    job's immutable ``ClusterId``, its schedd the one asked when named, and a slot must also
    be claimed by that ``User``). A job without both has none."""
    out = {}
    for ad in ads:
        global_id, user, cluster = ad.get("GlobalJobId"), ad.get("User"), ad.get("ClusterId")
        if isinstance(global_id, str) and isinstance(user, str) and isinstance(cluster, int) \
                and not isinstance(cluster, bool) and "@" in user:
            parts = global_id.split("#")
            if len(parts) != 3 or parts[1] != f"{cluster}.0" or (schedd and parts[0] != schedd):
                continue
            out[job_id(str(cluster), schedd, pool)] = (global_id[:1024], user[:512])
    return out


def slot_hosts(ads: list[dict[str, object]], infos: Collection[JobInfo],
               known: Mapping[str, Identity]) -> dict[str, str]:
    """The host of each job from the startds' slot ads: ``Machine`` of the one slot whose
    ``GlobalJobId`` is the job's (the same schedd, cluster and submission, not only a job id
    that another schedd also gives out) and whose ``RemoteUser`` is the job's full ``User``
    (alice@other.domain flocked in is not alice); none where no slot or several claim it, or
    where the job's identity (``known``, from its ad) is not known. ``RemoteOwner`` (the
    claim's owner) must be the same user: an ``AccountingGroup`` the owner writes changes
    ``RemoteUser`` (the submitter) but not who owns the claim."""
    found: dict[tuple[str, str], set[str]] = {}
    for ad in ads:
        user = str(ad.get("RemoteUser", ""))
        if str(ad.get("RemoteOwner", user)) != user:
            continue
        key = (str(ad.get("GlobalJobId", "")), user)
        found.setdefault(key, set()).add(str(ad.get("Machine", "")))
    out = {}
    for info in infos:
        identity = known.get(info.job_id)
        if identity is None or identity[1].partition("@")[0] != info.user:
            continue
        machines = found.get(identity, set())
        if len(machines) == 1:
            out[info.job_id] = machines.pop()
    return out


# What the negotiator's reason for not matching an idle job means (the spawn page shows both).
PENDING_WORDS = {"no match found": "no slot matches the request yet"}


def ad_to_info(ad: dict[str, object], schedd: str | None = None,
               pool: str | None = None) -> JobInfo:
    status = int(str(ad.get("JobStatus", 0)))
    cluster = ad.get("ClusterId", "")
    reason = ""
    state = JobState.GONE
    if status == 1:
        state = JobState.PENDING
        reason = one_line(ad.get("LastRejMatchReason", ""))
    elif status == 2:
        state = JobState.RUNNING
    elif status == 5:
        state = JobState.HELD
        reason = one_line(ad.get("HoldReason", "held"))
    elif status == 6:
        state = JobState.COMPLETING
    elif status == 7:
        state, reason = JobState.PENDING, "suspended"
    elif status == 3:
        reason = one_line(ad.get("RemoveReason", "")) or "the job was removed"
        reason = f"the job was removed ({reason})" if "removed" not in reason else reason
    elif status == 4:
        code = _exit_code(ad.get("ExitCode"))
        reason = "the job ended" + (f" with exit code {code}" if code else "")
    starts = ends = None
    if state is JobState.RUNNING:
        # the shadow counts allowed_job_duration from its birth; both attributes protected
        # from the job's owner on a pool set up as docs/htcondor.md says
        starts = _epoch(ad.get("ShadowBday"))
        limit = _seconds(ad.get("AllowedJobDuration"), MAX_DURATION)
        ends = _epoch(starts + limit) if starts is not None and limit is not None else None
    return JobInfo(
        job_id=job_id(str(cluster), schedd, pool), state=state, reason=reason,
        meaning=PENDING_WORDS.get(reason, "") if state is JobState.PENDING else "",
        user=str(ad.get("Owner", "")), tag=str(ad.get("HPCSpawnerTag", "")),
        since=_since(ad.get("EnteredCurrentStatus")), raw_state=str(status),
        starts=starts, ends=ends,
    )


# The bounds of a time read from an ad (any pool user writes her own jobs' attributes where
# the pool does not protect them): past these a value is not known, never a page's 500
MAX_EPOCH = 4102444800.0  # 2100-01-01
MAX_DURATION = 100 * 366 * 86400.0  # a century


def _seconds(value: object, most: float) -> float | None:
    """A time attribute's number within [0, ``most``]; anything else (undefined, an owner's
    wrong type, infinite or absurd) is not known."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value) if abs(value) < 1e300 else math.inf
    return number if math.isfinite(number) and 0 <= number <= most else None


def _epoch(value: object) -> float | None:
    """A time (epoch seconds) between 1970 and 2100; else not known."""
    found = _seconds(value, MAX_EPOCH)
    return found if found else None


def _since(value: object) -> float | None:
    """EnteredCurrentStatus: ValueError when it is not a number (the ad is skipped, as every
    ad of a wrong type: ads_to_infos); a number outside 1970-2100 is not known."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"EnteredCurrentStatus is not a number: {shown(value, 40)}")
    return _epoch(value)


def _exit_code(value: object) -> int | None:
    """A job's exit code (0-255, or a signal's negative), as HTCondor gives it; else none."""
    if isinstance(value, bool) or not isinstance(value, int) or not -255 <= value <= 255:
        return None
    return value


def ads_to_infos(ads: list[dict[str, object]], schedd: str | None = None,
                 pool: str | None = None) -> list[JobInfo]:
    """Each ad read on its own: one that any pool user made unreadable (a wrong-typed
    attribute) is logged and skipped, never a reason to stop reading the others."""
    infos = []
    for ad in ads:
        try:
            infos.append(ad_to_info(ad, schedd, pool))
        except (TypeError, ValueError) as exc:
            log.warning("ignoring an unreadable job ad (cluster %s): %s",
                        shown(ad.get("ClusterId", "?"), 40), shown(exc))
    return infos




def parse_status_af(text: str) -> list[Availability]:
    """``condor_status -af Name State Cpus TotalSlotCpus Memory Gpus IsJupyterSlot``."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) != 7:
            continue
        name, state, cpus, total, memory, gpus, jupyter = words
        try:
            free = int(cpus)
            slots = int(total) if total != "undefined" else free
            mib = int(memory)
            gpu = int(gpus) if gpus != "undefined" else 0
        except ValueError:
            continue
        out.append(Availability(name=name, groups=("jupyter",) if jupyter == "true" else ("pool",),
                                free_cores=free, total_cores=slots, free_memory=mib * 1024 * 1024,
                                free_gpus=gpu, usable=state == "Unclaimed"))
    return out
