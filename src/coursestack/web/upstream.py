"""The front door's HTTP/1.1 client: kept-alive connections to the services on loopback,
pooled per address, over asyncio, with httptools (llhttp, the parser uvicorn and Node.js
use) reading the answers.

Why not httpx: a proxied request went through httpx, httpcore and anyio (a cancel scope,
a task group, several context managers) and cost more than the service's own answer,
and httpx weighs ~16 MB of the daemon's RSS. h11 was tried too: ~80 µs of pure Python
per exchange, a tenth of Jupyter's whole answer. This client does only what the front
door needs:
- one request at a time per connection; idle connections are kept per address, the
  newest used first, at most `max_idle` each, closed after `idle_seconds`;
- a connection the service closed while it sat idle (or that sent bytes nobody asked
  for) is never reused; a reused connection that fails before any byte of the answer
  came back is retried once on a new one, if the request is idempotent and its body
  can be sent again;
- bodies stream both ways: a request body as given or chunked, an answer's as it comes
  (Content-Length, chunked, or until the service closes), reading paused while the
  consumer has not taken what came in;
- 1xx informational answers are skipped (ASGI cannot pass them on); a 101 is an error
  (the front door strips `Upgrade` from plain requests; WebSockets are bridged apart);
  the answer to HEAD has no body whatever its headers say;
- connect timeout 5 s, write timeout 60 s, no read timeout (long polls); no cookies,
  no redirects, no proxy settings from the environment, no TLS (loopback only).

The request head is written here (method, target, headers joined), after checking that
nothing in it could end a line early: its parts come from a request the daemon's own
server already parsed, and from the daemon.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httptools

Headers = list[tuple[bytes, bytes]]
#: A request body: none, all of it, or chunks as they come.
Body = bytes | AsyncIterator[bytes] | None

#: Methods that may be sent twice (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: Largest answer head accepted (status line and headers).
MAX_HEAD = 64 * 1024
#: Body bytes read ahead of the consumer before reading from the socket pauses.
READ_AHEAD = 256 * 1024


class UpstreamError(Exception):
    """The service could not be reached, or broke the protocol."""


class UpstreamTimeout(UpstreamError):
    """The service did not accept the connection or the request in time."""


class _StaleConnection(UpstreamError):
    """A connection was found closed before any byte of the answer came back."""


def request_head(method: bytes, target: bytes, headers: Headers) -> bytes:
    """`METHOD target HTTP/1.1`, the headers, the blank line; UpstreamError if any part
    would break the framing (a line break, a NUL, a space in the target)."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    head = b"".join(parts)
    lines = len(headers) + 2
    if (
        head.count(b"\n") != lines
        or head.count(b"\r") != lines
        or b"\0" in head
        or b" " in target
        or b" " in method
        or not target
    ):
        raise UpstreamError(
            "the request cannot be forwarded: a line break, NUL or space where none may be"
        )
    return head


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class _Connection(asyncio.Protocol):
    """One connection to a service: the parser's view of the answer coming in."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.idle_since = 0.0
        self.closed = False
        #: True while a request is out: bytes arriving at any other time are stray.
        self.waiting = False
        #: Some byte of the current answer arrived (a failure after it is never retried).
        self.answered = False
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = False
        self._status = 0
        self._headers: Headers = []
        self._head_size = 0
        self._head_done = False
        self._framed = False  # Content-Length or chunked: the end is known without EOF
        self._complete = False
        self._stray = False  # bytes beyond the answer
        self._reusable = True
        self._error: UpstreamError | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._reading_paused = False
        self._wakeup: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.waiting or self._complete:
            self.close()  # e.g. a "408" some servers send before closing: never an answer
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("the service switched protocols unasked"))
        except httptools.HttpParserError as error:
            if self._error is None:
                self._fail(UpstreamError(f"the service broke HTTP: {error}"))
        if self._buffered > READ_AHEAD and self.transport is not None and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        self._at_end()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._at_end()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # a writer waiting to drain sees `closed`

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:  # a second answer to one request: ignored, never trusted
            self._reusable = False
            self._stray = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._stray:
            return
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD:
            self._fail(UpstreamError("the service's answer head is too large"))
            raise UpstreamError("head too large")  # stops the parser
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self._stray:
            return
        status = self._parser.get_status_code()
        if status == 101:
            self._fail(UpstreamError("the service switched protocols unasked"))
            return
        if 100 <= status < 200:
            self._headers, self._head_size = [], 0  # 100 Continue, 103 Early Hints
            return
        self._status = status
        self._head_done = True
        self._framed = any(
            name in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        ) or status in (204, 304)
        if self._head_only:  # HEAD: llhttp would wait for the body the headers announce
            self._reusable = False
            self._complete = True

    def on_body(self, body: bytes) -> None:
        if not self._complete:
            self._body.append(body)
            self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self._head_done and not self._complete:
            self._complete = True
            if not self._parser.should_keep_alive():
                self._reusable = False

    # -- used by the pool and the answer ---------------------------------------------------

    def begin(self, method: bytes) -> None:
        """Get ready for the answer to a request with `method`."""
        self.waiting = True
        self.answered = False
        self._head_only = method == b"HEAD"
        self._status, self._headers, self._head_size = 0, [], 0
        self._head_done = self._complete = False

    def usable(self, now: float, idle_seconds: float) -> bool:
        """Still worth sending a request on (the service has not closed it meanwhile)."""
        return not (
            self.closed
            or not self._reusable
            or self._error is not None
            or self.transport is None
            or self.transport.is_closing()
            or now - self.idle_since > idle_seconds
        )

    def reusable(self) -> bool:
        return self._complete and self._reusable and not self.closed and not self._body

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise self._closed_error()
        self.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait while the socket's send buffer is full (at most `timeout` seconds)."""
        waiter = self._writable
        if waiter is not None and not waiter.done():
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise UpstreamTimeout("the service did not take the request in time") from None
        if self.closed:
            raise self._closed_error()

    async def head(self) -> tuple[int, Headers]:
        """Status and headers of the answer, once they are in."""
        while not self._head_done:
            await self._wait()
        return self._status, self._headers

    def take_body(self) -> tuple[bytes, bool]:
        """(body bytes that came in so far, whether that is the end of it)."""
        data = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        self._body.clear()
        self._buffered = 0
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()
        return data, self._complete

    async def wait_for_body(self) -> None:
        """Until more of the body (or its end) came in."""
        if not self._body and not self._complete:
            await self._wait()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._wakeup = asyncio.get_running_loop().create_future()
        await self._wakeup
        if self._error is not None and not (self._head_done and (self._body or self._complete)):
            raise self._error

    def _at_end(self) -> None:
        """The service closed its side: the end of an answer read until EOF, or an error."""
        self._reusable = False
        if self.waiting and self._head_done and not self._complete and not self._framed:
            self._complete = True
        elif self.waiting and not self._complete and self._error is None:
            self._error = self._closed_error()
        self._wake()

    def _closed_error(self) -> UpstreamError:
        if self.answered:
            return UpstreamError("the service closed the connection mid-answer")
        return _StaleConnection("the service closed the connection")

    def _fail(self, error: UpstreamError) -> None:
        self._error = error
        self.close()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def close(self) -> None:
        self.closed = True
        self._reusable = False
        if self.transport is not None:
            self.transport.abort()  # nothing left to send that anyone waits for
        if self._error is None and self.waiting and not self._complete:
            self._error = self._closed_error()
        self._wake()


class UpstreamResponse:
    """A service's answer: status and headers at once, the body as it comes.

    `body_so_far` holds what arrived with the head; `complete` says it is all of it (the
    connection is then back in the pool). Otherwise iterate `chunks()`; `close()` (always
    safe) gives up the rest and the connection.
    """

    def __init__(
        self, pool: UpstreamPool, connection: _Connection, status: int, headers: Headers
    ) -> None:
        self.status = status
        #: Header names lower case; hop-by-hop ones included.
        self.headers = headers
        self._pool = pool
        self._connection: _Connection | None = connection
        self.body_so_far, self.complete = connection.take_body()
        if self.complete:
            self._finish()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body: what came with the head first, then the rest as it arrives."""
        if self.body_so_far:
            yield self.body_so_far
        while self._connection is not None:
            connection = self._connection
            await connection.wait_for_body()
            data, complete = connection.take_body()
            if complete:
                self._finish()
            if data:
                yield data

    async def read(self) -> bytes:
        """The whole body."""
        return b"".join([chunk async for chunk in self.chunks()])

    def _finish(self) -> None:
        self.complete = True
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)

    def close(self) -> None:
        """Give up the rest of the body; the connection is closed (not reused)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


class UpstreamPool:
    """Kept-alive HTTP/1.1 connections to services, pooled per (host, port)."""

    def __init__(
        self,
        connect_timeout: float = 5.0,
        write_timeout: float = 60.0,
        max_idle: int = 32,
        idle_seconds: float = 30.0,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        #: Connections opened so far (the tests count reuse with it).
        self.opened = 0

    async def request(
        self,
        method: bytes,
        port: int,
        target: bytes,
        headers: Headers,
        body: Body = None,
        length: int | None = None,
        host: str = "127.0.0.1",
    ) -> UpstreamResponse:
        """Send a request to `host:port`; return once the answer's head is in.

        `headers` hold `host` and no framing headers: bytes go with their Content-Length,
        an iterator with `length` (if the caller knows it) or chunked. Raises
        UpstreamError (UpstreamTimeout) if no answer comes.
        """
        address = (host, port)
        if isinstance(body, bytes):
            headers = [*headers, (b"content-length", b"%d" % len(body))]
        elif body is not None:
            headers = [
                *headers,
                (b"content-length", b"%d" % length)
                if length is not None
                else (b"transfer-encoding", b"chunked"),
            ]
        head = request_head(method, target, headers)
        retry = method in IDEMPOTENT and not isinstance(body, AsyncIterator)
        while True:
            connection = self._reuse(address) or await self._connect(address)
            try:
                return await self._exchange(connection, method, head, body, length is None)
            except _StaleConnection:
                connection.close()
                if not (retry and connection.reused):
                    raise UpstreamError("the service closed the connection") from None
                retry = False  # once
            except BaseException:
                connection.close()
                raise

    async def _exchange(
        self, connection: _Connection, method: bytes, head: bytes, body: Body, chunked: bool
    ) -> UpstreamResponse:
        connection.begin(method)
        if body is None or isinstance(body, bytes):
            connection.write(head + body if body else head)
        else:
            connection.write(head)
            async for chunk in body:
                if chunk:
                    connection.write(_chunked(chunk) if chunked else chunk)
                    await connection.drain(self.write_timeout)
            if chunked:
                connection.write(b"0\r\n\r\n")
        await connection.drain(self.write_timeout)
        status, headers = await connection.head()
        return UpstreamResponse(self, connection, status, headers)

    def _reuse(self, address: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now, self.idle_seconds):
                connection.reused = True
                return connection
            connection.close()
        return None

    async def _connect(self, address: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(address), address[0], address[1]
                )
        except TimeoutError:
            raise UpstreamTimeout(
                f"no connection to {address[0]}:{address[1]} within {self.connect_timeout:g} s"
            ) from None
        except OSError as error:
            raise UpstreamError(
                f"cannot connect to {address[0]}:{address[1]}: {error.strerror or error}"
            ) from None
        self.opened += 1
        return connection

    def release(self, connection: _Connection) -> None:
        """Back to the pool after a complete answer (closed if it cannot be reused)."""
        connection.waiting = False
        if not connection.reusable():
            connection.close()
            return
        connection.idle_since = time.monotonic()
        idle = self._idle.setdefault(connection.address, [])
        idle.append(connection)
        while len(idle) > self.max_idle:
            idle.pop(0).close()

    def idle_count(self, port: int, host: str = "127.0.0.1") -> int:
        """Connections waiting in the pool for `host:port`."""
        return len(self._idle.get((host, port), []))

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
