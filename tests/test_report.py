"""The launcher's report route accepts a host and a port, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from tornado import web

from hpcspawner.report import Report, parse_report


def test_a_valid_report() -> None:
    assert parse_report({"host": "node042.desy.de", "port": 8888, "server_name": "",
                         "submission": "ab12"}) == Report(8888, "node042.desy.de", "", "ab12")
    assert parse_report({"host": "10.1.2.3", "port": 1}) == Report(1, "10.1.2.3")
    assert parse_report({"port": 8888}) == Report(8888)  # the hub routes to the scheduler's node
    assert parse_report({"port": 8888, "ends": 1_800_000_000}).ends == 1_800_000_000


@pytest.mark.parametrize(("body", "why"), [
    ({"host": "n", "port": 8888, "cmd": ["/bin/sh"]}, "unknown report fields: cmd"),
    ({"host": "n", "port": 8888, "ip": "evil"}, "unknown report fields: ip"),
    ({"host": "n", "port": 0}, "port must be"),
    ({"host": "n", "port": 70000}, "port must be"),
    ({"host": "n", "port": "8888"}, "port must be"),
    ({"host": "n", "port": True}, "port must be"),
    ({"host": "evil host", "port": 8888}, "host must be"),
    ({"host": "a;b", "port": 8888}, "host must be"),
    ({"host": 42, "port": 8888}, "host must be"),
    ({"host": "h", "port": 8888, "server_name": 3}, "server_name must be"),
    ({"host": "h", "port": 8888, "submission": ["x"]}, "submission must be"),
    ({"port": 8888, "ends": "tomorrow"}, "ends must be"),
    ({"port": 8888, "ends": -1}, "ends must be"),
    ([1, 2], "JSON object"),
])
def test_anything_else_is_a_400(body: Any, why: str) -> None:
    with pytest.raises(web.HTTPError) as info:
        parse_report(body)
    assert info.value.status_code == 400
    assert why in str(info.value.log_message)


def test_the_servers_own_activity_times_are_read_in_utc() -> None:
    from hpcspawner.activity import epoch

    assert epoch("1970-01-01T00:01:00Z") == 60.0
    assert epoch("1970-01-01T00:01:00.500000") == 60.5  # no zone: UTC, as JupyterHub sends
    assert epoch("1970-01-01T01:01:00+01:00") == 60.0
