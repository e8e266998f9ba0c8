from __future__ import annotations

import pytest

from tests.e2e.nodes.cluster import require_network


@pytest.fixture(scope="module")
def network(cluster: None) -> dict[str, str]:
    """Name → address of the multi-node cluster's hosts (failing in CI when it is not up)."""
    return require_network()
