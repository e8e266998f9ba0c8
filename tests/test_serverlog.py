"""Hub log lines about a server end with its fields (serverlog.py, docs/metrics.md#logs)."""

from __future__ import annotations

import json
import logging

import pytest

from hpcspawner.serverlog import ServerLog, keyvalue


def test_key_value_fields_end_every_line_and_split_back(
        caplog: pytest.LogCaptureFixture) -> None:
    fields = {"user": "alice", "server": "", "job": "", "profile": "small"}
    log = ServerLog(logging.getLogger("t.kv"), lambda: fields)
    with caplog.at_level(logging.INFO, logger="t.kv"):
        log.info("%s: queued", "alice")
        fields["job"] = "4242"  # read when the line is written
        log.warning("job %s ended: %s", "4242", "TIMEOUT")
        log.debug("not written")
    assert [r.getMessage() for r in caplog.records] == [
        'alice: queued user=alice server="" job="" profile=small',
        'job 4242 ended: TIMEOUT user=alice server="" job=4242 profile=small']
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    # a value a user chose (a server name) cannot forge a field of its own
    assert keyvalue({"server": 'x job=1 "', "user": "bob"}) == \
        'server="x job=1 \\"" user=bob'


def test_json_lines_are_one_object_each(caplog: pytest.LogCaptureFixture) -> None:
    log = ServerLog(logging.getLogger("t.json"), lambda: {"user": "bob", "job": "7"},
                    style="json")
    with caplog.at_level(logging.INFO, logger="t.json"):
        log.info("%s: routing to %s:%d", "bob", "node01", 8888)
    assert json.loads(caplog.records[0].getMessage()) == {
        "message": "bob: routing to node01:8888", "user": "bob", "job": "7"}
