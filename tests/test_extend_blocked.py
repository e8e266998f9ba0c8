"""Where the hub cannot give more time (issue 36): the backend says why once (SLURM: the hub's
account is no operator, or there is no accounting to make it one), the card offers no button
that must fail and says the short reason, a click is refused with it before any scheduler
call, and the answer is asked again only when the profiles that allow more time change."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from hpcspawner import moretime
from hpcspawner.backends import slurm
from hpcspawner.backends.base import ExtendBlocked, ExtendRefused
from hpcspawner.backends.slurm import SlurmBackend
from hpcspawner.cards import card
from hpcspawner.commands import Result
from tests.test_job import World
from tests.test_sessions import EXTENDABLE, HOUR, running, spawner_of


def scripted(monkeypatch: pytest.MonkeyPatch, level: tuple[int, str, str],
             slurm_user: str = "root(0)") -> tuple[SlurmBackend, list[list[str]]]:
    """A SLURM backend run as the unprivileged account ``hubacct``; sacctmgr answers
    ``level`` (exit code, output, error)."""
    monkeypatch.setattr(slurm.os, "geteuid", lambda: 4242)
    monkeypatch.setattr(slurm.pwd, "getpwuid", lambda uid: SimpleNamespace(pw_name="hubacct"))
    backend = SlurmBackend()
    calls: list[list[str]] = []

    async def as_hub(argv: list[str], *, check: bool = True) -> Result:
        calls.append(argv)
        if argv[0] == "sacctmgr":
            return Result(argv, level[0], level[1], level[2])
        return Result(argv, 0, f"ClusterName = hpcspawner\nSlurmUser = {slurm_user}\n", "")

    backend.as_hub = as_hub  # type: ignore[method-assign]
    return backend, calls


def test_slurm_says_why_the_hub_cannot_extend(monkeypatch: pytest.MonkeyPatch) -> None:
    no_dbd = (1, "", "sacctmgr: error: Problem talking to the database: Connection refused\n")
    backend, _ = scripted(monkeypatch, no_dbd)
    blocked = asyncio.run(backend.extend_blocker())
    assert blocked is not None
    assert blocked.card == ("More time cannot be given on this cluster: the hub is not a "
                            "SLURM operator. Save your work before the end.")
    assert "without accounting (slurmdbd)" in blocked.operator
    assert "Connection refused" in blocked.operator
    assert "sacctmgr modify user hubacct set adminlevel=operator" in blocked.operator

    backend, _ = scripted(monkeypatch, (0, "None\n", ""))
    blocked = asyncio.run(backend.extend_blocker())
    assert blocked is not None and "is not a SLURM operator (AdminLevel none)" in \
        blocked.operator
    for level in ("Operator", "Administrator"):
        backend, _ = scripted(monkeypatch, (0, f"{level}\n", ""))
        assert asyncio.run(backend.extend_blocker()) is None
    backend, _ = scripted(monkeypatch, (0, "None\n", ""), slurm_user="hubacct(4242)")
    assert asyncio.run(backend.extend_blocker()) is None  # SlurmUser may


def test_asked_once_per_profile_set_and_said_once(monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    backend, calls = scripted(monkeypatch, (0, "None\n", ""))
    caplog.set_level(logging.INFO)

    async def scenario() -> None:
        for _ in range(3):
            assert await moretime.extend_check(backend).check([EXTENDABLE]) is not None
        assert sum(argv[0] == "sacctmgr" for argv in calls) == 1
        longer = EXTENDABLE.model_copy(update={"extend": EXTENDABLE.extend.model_copy(  # type: ignore[union-attr]
            update={"max_runtime": 5 * HOUR})})
        await moretime.extend_check(backend).check([longer])  # profiles.yaml changed: asked again
        assert sum(argv[0] == "sacctmgr" for argv in calls) == 2
        without = EXTENDABLE.model_copy(update={"extend": None})
        # nothing to extend: not asked
        assert await moretime.extend_check(backend).check([without]) is None
        assert sum(argv[0] == "sacctmgr" for argv in calls) == 2
        assert await moretime.extend_check(backend).warnings(without) == []
        [warning] = await moretime.extend_check(backend).warnings(EXTENDABLE)
        assert warning.startswith("extend: the hub's account hubacct is not a SLURM operator")

    asyncio.run(scenario())
    said = [r.getMessage() for r in caplog.records if "offer no more time" in r.getMessage()]
    assert len(said) == 1, said


def test_the_card_offers_no_button_that_must_fail(tmp_path: Path) -> None:
    async def scenario() -> None:
        world = World(tmp_path)
        job = await running(world)
        sched = world.backends["slurm"]
        shown = card(spawner_of(job))
        assert shown is not None and shown.can_extend  # (the scheduler has said nothing)
        check = moretime.extend_check(sched)
        check.blocked = ExtendBlocked("No more time here: the hub is no operator.",
                                      "the operator's sentence")
        shown = card(spawner_of(job))
        assert shown is not None and not shown.can_extend and shown.extend_step == "1 h"
        assert shown.extend_note == "No more time here: the hub is no operator."
        with pytest.raises(ExtendRefused, match="the hub is no operator"):
            await moretime.extend_by(job, "1h")
        assert job.asked == []  # nothing asked of the scheduler
        world.close()

    asyncio.run(scenario())
