"""The stdlib HTTP probe and the lazy driver import of the daemon's start-up path."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from coursestack.lazy_import import lazy_module
from coursestack.probes import http_probe, http_status

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _answering(status_line: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(request)
        writer.write(status_line + b"\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    return handler


@pytest.mark.parametrize(
    ("status_line", "expected"),
    [
        (b"HTTP/1.1 200 OK", 200),
        (b"HTTP/1.1 403 Forbidden", 403),
        (b"HTTP/1.0 503 x", 503),
        (b"SSH-2.0-OpenSSH", None),
        (b"HTTP/1.1 abc", None),
        (b"", None),
    ],
)
def test_http_status_reads_the_status_line(status_line: bytes, expected: int | None) -> None:
    async def run() -> int | None:
        server, port = await _serve(_answering(status_line))
        async with server:
            return await http_status(f"http://127.0.0.1:{port}/api/status")

    assert asyncio.run(run()) == expected


def test_http_probe_sends_path_query_and_headers_and_checks_the_status() -> None:
    seen: list[bytes] = []

    async def run() -> tuple[bool, bool, bool]:
        server, port = await _serve(_answering(b"HTTP/1.1 404 Not Found", seen))
        async with server:
            url = f"http://127.0.0.1:{port}/s/jupyter/api/status?x=1"
            return (
                await http_probe(url, 200, headers={"Authorization": "token t"}),
                await http_probe(url),
                await http_probe(url, 404),
            )

    assert asyncio.run(run()) == (False, True, True)  # 404 < 500 counts without a status
    request = seen[0].decode("latin-1")
    assert request.startswith("GET /s/jupyter/api/status?x=1 HTTP/1.1\r\n")
    assert "Authorization: token t\r\n" in request
    assert "Connection: close\r\n" in request


def test_http_status_of_nothing_listening_or_a_silent_server_is_none() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()  # until the probe gives up and closes
        finally:
            writer.close()

    async def run() -> tuple[int | None, int | None, int | None]:
        server, port = await _serve(silent)
        async with server:
            quiet = await http_status(f"http://127.0.0.1:{port}/", timeout=0.3)
        server.close()
        await server.wait_closed()
        closed = await http_status(f"http://127.0.0.1:{port}/", timeout=2)
        return quiet, closed, await http_status("ftp://127.0.0.1/")

    assert asyncio.run(run()) == (None, None, None)


def test_a_lazy_module_imports_only_when_used() -> None:
    name = "colorsys"  # small, stdlib, and imported by nothing at test time
    sys.modules.pop(name, None)
    module = lazy_module(name)
    assert name not in sys.modules
    assert module.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert name in sys.modules
