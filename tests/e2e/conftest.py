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
from tests.hubtools import Hub, drop_database, new_database, new_hub_dir, squeue


@pytest.fixture
def make_hub(cluster: None, tmp_path: Path) -> Iterator[Callable[..., Hub]]:
    """Build hubs with their own hub_id; afterwards stop servers, hub, proxy and any job.
    ``postgres=True``: the hub's database is a new one in the multi-node cluster's PostgreSQL,
    dropped at the end."""
    hubs: list[Hub] = []
    databases: list[str] = []

    def make(profiles: str = EXAMPLE_PROFILES, **kw: Any) -> Hub:
        hub_id = kw.pop("hub_id", f"t{secrets.token_hex(3)}")
        if kw.pop("postgres", False):
            databases.append(f"hub_{hub_id}_{len(databases)}")
            kw["db_url"], password = new_database(databases[-1])
            kw["env"] = {**kw.get("env", {}), **password}
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
    for database in databases:
        drop_database(database)
