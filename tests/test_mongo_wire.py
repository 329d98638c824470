"""The driver-free MongoDB ping the daemon probes with, against the real server."""

from __future__ import annotations

import json
import socket

import bson

from coursestack.instances import Instance
from coursestack.mongo_wire import ping, ping_message, reply_is_ok


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


async def test_ping_against_the_real_server_and_against_strangers(
        sample_instance: Instance) -> None:
    services = json.loads(sample_instance.state.connections_file.read_text())["services"]
    assert await ping("127.0.0.1", services["mongo"]["port"])
    assert not await ping("127.0.0.1", services["jupyter"]["port"])  # speaks HTTP
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert not await ping("127.0.0.1", port, timeout=0.5)
