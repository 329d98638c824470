"""Readiness probes shared by kinds: TCP connect, HTTP GET, a command's exit status.

They speak their protocols with the standard library only: an HTTP client library costs
the daemon ~0.1 s of imports before its first launch and several MB for good, for
what is one GET and one status line (see docs/benchmarks-core.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit


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


async def http_status(
    url: str, headers: Mapping[str, str] | None = None, timeout: float = 5.0
) -> int | None:
    """The status code of an HTTP/1.1 GET of `url` (http or https, certificates
    verified), or None if there is no well-formed answer within `timeout` seconds.

    One connection per probe, closed after the status line: a probe every few seconds
    costs less than keeping a connection (and a client library) alive for it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [
        f"GET {target} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Connection: close",
        "Accept: */*",
        "User-Agent: coursestack-probe",
    ]
    lines += [
        f"{name}: {value}"
        for name, value in (headers or {}).items()
        if name.lower() not in ("host", "connection")
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    context = ssl.create_default_context() if secure else None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
            try:
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, ssl.SSLError, UnicodeError):
        return None
    fields = status_line.split(maxsplit=2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
        return None
    return int(fields[1])


async def http_probe(
    url: str, expect_status: int | None = None, headers: Mapping[str, str] | None = None
) -> bool:
    """True if GET url answers with `expect_status`, or with anything below 500."""
    status = await http_status(url, headers)
    if status is None:
        return False
    if expect_status is not None:
        return status == expect_status
    return status < 500


async def exec_probe(
    argv: Sequence[str],
    env: Mapping[str, str],
    timeout: float = 10.0,
    user: tuple[int, int] | None = None,
) -> bool:
    """True if the command exits with status 0 within `timeout` seconds; run as `user`
    (uid, gid) if given: a probe looks into the service's folders, which root must not."""
    account: dict[str, object] = {}
    if user is not None:
        account = {"user": user[0], "group": user[1], "extra_groups": []}
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
            **account,  # type: ignore[arg-type]
        )
    except OSError:
        return False
    try:
        return await asyncio.wait_for(process.wait(), timeout) == 0
    except TimeoutError:
        process.kill()
        await process.wait()
        return False
