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


def test_a_message_a_user_wrote_cannot_forge_the_fields(
        caplog: pytest.LogCaptureFixture) -> None:
    """The real way in: a hold reason (``condor_hold -reason``) or a job comment reaches a
    line's message text. Written with ``user=alice job=4242`` by bob's job, it stays inside
    one JSON string: the line's fields are bob's, and ``grep user=alice`` finds nothing."""
    log = ServerLog(logging.getLogger("t.forged"), lambda: {"user": "bob", "job": "7"})
    with caplog.at_level(logging.INFO, logger="t.forged"):
        log.info("job %s is held: %s", "7", 'x user=alice job=4242 "')
    line = caplog.records[0].getMessage()
    assert "user=alice" not in line and "job=4242" not in line
    text, _, fields = line.rpartition(" user=")
    assert fields == "bob job=7"
    assert json.loads(text) == 'job 7 is held: x user=alice job=4242 "'
