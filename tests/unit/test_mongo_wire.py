"""The driver-free MongoDB ping the daemon probes with: the message and the reply
(against the real server: tests/integration/test_mongo_wire.py)."""

from __future__ import annotations

import bson

from coursestack.mongo_wire import ping_message, reply_is_ok


def test_message_is_the_ping_command() -> None:
    message = ping_message(7)
    assert int.from_bytes(message[:4], "little") == len(message)
    assert int.from_bytes(message[12:16], "little") == 2013
    assert bson.decode(message[21:]) == {"ping": 1, "$db": "admin"}


def test_reply_parsing() -> None:
    header = b"\x00" * 21
    assert reply_is_ok(header + bson.encode({"ok": 1.0}))
    assert reply_is_ok(header + bson.encode({"ok": 1}))
    assert not reply_is_ok(header + bson.encode({"ok": 0.0, "errmsg": "no"}))
    assert not reply_is_ok(header + bson.encode({"nothing": 1}))
