"""The MongoDB wire ping against the sample instance's real server, and against strangers."""

from __future__ import annotations

import json
import socket

from coursestack.instances import Instance
from coursestack.mongo_wire import ping


async def test_ping_against_the_real_server_and_against_strangers(
    sample_instance: Instance,
) -> None:
    services = json.loads(sample_instance.state.connections_file.read_text())["services"]
    assert await ping("127.0.0.1", services["mongo"]["port"])
    assert not await ping("127.0.0.1", services["jupyter"]["port"])  # speaks HTTP
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert not await ping("127.0.0.1", port, timeout=0.5)
