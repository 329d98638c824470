"""Readiness probes shared by kinds: TCP connect, HTTP GET, a command's exit status."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence

import httpx

_http_client: httpx.AsyncClient | None = None


def http_client() -> httpx.AsyncClient:
    """One shared client for probes (connection reuse keeps idle CPU low)."""
    global _http_client
    if _http_client is None:
        _http_client = httpx.AsyncClient(timeout=5.0, trust_env=False)
    return _http_client


async def tcp_probe(host: str, port: int, timeout: float = 2.0) -> bool:
    """True if something accepts a TCP connection on host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def http_probe(url: str, expect_status: int | None = None,
                     headers: Mapping[str, str] | None = None) -> bool:
    """True if GET url answers with `expect_status`, or with anything below 500."""
    try:
        response = await http_client().get(url, headers=headers)
    except httpx.HTTPError:
        return False
    if expect_status is not None:
        return response.status_code == expect_status
    return response.status_code < 500


async def exec_probe(argv: Sequence[str], env: Mapping[str, str], timeout: float = 10.0,
                     user: tuple[int, int] | None = None) -> bool:
    """True if the command exits with status 0 within `timeout` seconds; run as `user`
    (uid, gid) if given: a probe looks into the service's folders, which root must not."""
    account: dict[str, object] = {}
    if user is not None:
        account = {"user": user[0], "group": user[1], "extra_groups": []}
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL,
            **account)  # type: ignore[arg-type]
    except OSError:
        return False
    try:
        return await asyncio.wait_for(process.wait(), timeout) == 0
    except TimeoutError:
        process.kill()
        await process.wait()
        return False
