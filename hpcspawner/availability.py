"""Whether each profile can start now, for the spawn page, from one scheduler query per backend
per interval however many users look (sinfo for SLURM, condor_status for HTCondor)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from . import sentences
from .backends import backend_classes
from .domain import Availability
from .metrics import CAN_START
from .profiles import Profile
from .units import show_size

T = TypeVar("T")


@dataclass(frozen=True)
class Outlook:
    """What the spawn page says next to a profile."""

    can_start: bool | None  # None: the scheduler did not answer
    text: str


class TimedCache(Generic[T]):
    """The last answer of one scheduler query, kept ``ttl`` seconds; concurrent page views
    wait for one query instead of starting their own. None: the query failed."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        self._fetch, self._ttl, self._clock = fetch, ttl, clock
        self._value: T | None = None
        self._at = float("-inf")
        self._lock = asyncio.Lock()
        self.queries = 0

    async def get(self) -> T | None:
        async with self._lock:
            if self._clock() - self._at >= self._ttl:
                self.queries += 1
                try:
                    self._value = await self._fetch()
                except Exception:  # the page must render anyway: say "unknown"
                    self._value = None
                self._at = self._clock()
            return self._value


AvailabilityCache = TimedCache[list[Availability]]


def with_expected_start(found: Outlook, start: float | None,
                        now: Callable[[], float] = time.time) -> Outlook:
    """``found`` and, when the scheduler gave one, its expected start in words."""
    if start is None:
        return found
    return replace(found, text=f"{found.text} {sentences.expected_start(start, now())}")


def _cores(n: int) -> str:
    return f"{n} core" + ("s" if n != 1 else "")


def outlook(profile: Profile, slots: list[Availability] | None) -> Outlook:
    """Can ``profile`` start now, in words (the profile's own resources or the user's); the
    answer is also the hub's metric hpcspawner_profile_can_start."""
    found = _outlook(profile, slots)
    if found.can_start is not None:
        CAN_START.labels(profile.name).set(1 if found.can_start else 0)
    return found


def _outlook(profile: Profile, slots: list[Availability] | None) -> Outlook:
    if slots is None:
        return Outlook(None, "Availability unknown right now (the scheduler did not answer).")
    res = profile.resources
    backend = backend_classes()[profile.backend]
    special = backend.special_outlook(profile, slots)  # e.g. HTCondor's reserved slots
    if special is not None:
        return Outlook(*special)
    group, where = backend.availability_group(profile)
    # a group may name alternatives, comma-separated (SLURM's partition list a,b)
    wanted = None if group is None else set(group.split(","))
    candidates = [s for s in slots if s.usable and (wanted is None or wanted & set(s.groups))]
    fits = [s for s in candidates if s.free_cores >= res.cores
            and s.free_memory >= res.memory and s.free_gpus >= res.gpus]
    free = sum(s.free_cores for s in candidates)
    total = sum(s.total_cores for s in candidates)
    if fits:
        return Outlook(True, f"Can start now: {_cores(free)} of {total} free in {where}.")
    if not candidates:
        return Outlook(False, f"Cannot start now: no node of {where} is up; it will wait in "
                       "the queue.")
    best = max(candidates, key=lambda s: (s.free_cores, s.free_memory))
    gpus = f", {res.gpus} GPU{'s' if res.gpus != 1 else ''}" if res.gpus else ""
    return Outlook(False, f"Cannot start now: no node of {where} has {_cores(res.cores)} and "
                   f"{show_size(res.memory)}{gpus} free (at most {_cores(best.free_cores)}, "
                   f"{show_size(best.free_memory)}); it will wait in the queue.")
