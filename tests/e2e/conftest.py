from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLE_PROFILES
from tests.hubtools import Hub, new_hub_dir, squeue


@pytest.fixture
def make_hub(cluster: None, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Build hubs with their own hub_id; afterwards stop servers, hub, proxy and any job."""
    hubs: list[Hub] = []

    def make(profiles: str = EXAMPLE_PROFILES, **kw: Any) -> Hub:
        hub_id = kw.pop("hub_id", f"t{secrets.token_hex(3)}")
        hub = Hub(new_hub_dir(f"{tmp_path.name[:40]}-hub{len(hubs)}"), profiles=profiles,
                  hub_id=hub_id, **kw)
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        if hub.proc is not None:
            for user in hub.users:
                with contextlib.suppress(Exception):  # best effort: the hub may have failed
                    hub.stop_server(user)
        hub.stop()
        hub.stop_proxy()
        leftover = [job["id"] for job in squeue(hub.hub_id)]
        if leftover:
            subprocess.run(["scancel", *leftover], check=False)
        if not os.environ.get("HPCSPAWNER_KEEP_HUBS"):
            shutil.rmtree(hub.dir, ignore_errors=True)
