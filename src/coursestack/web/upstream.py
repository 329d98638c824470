"""The front door's HTTP/1.1 client: kept-alive connections to the services on loopback,
pooled per address, over asyncio with h11 doing the protocol (framing, chunked bodies,
HEAD, 1xx, keep-alive rules).

Why not httpx: a proxied request went through httpx, httpcore and anyio (a cancel scope,
a task group, several context managers) and cost more than the service's own answer;
httpx also weighs ~16 MB of the daemon's RSS. This client does only what the front door
needs:
- one request at a time per connection; idle connections are kept per address, the
  newest used first, at most `max_idle` each, closed after `idle_seconds`;
- a connection the service closed while it sat idle (or one that sent bytes nobody asked
  for) is never reused; a reused connection that fails before any byte of the answer
  came back is retried once on a new connection, when the request is idempotent and its
  body can be sent again;
- bodies stream both ways (Content-Length or chunked); reading pauses while the consumer
  has not taken what came in;
- 1xx informational answers are skipped (ASGI cannot pass them on); a 101 is an error
  (the front door strips `Upgrade` from plain requests; WebSockets are bridged apart);
- connect timeout 5 s, write timeout 60 s, no read timeout (long polls); no cookies,
  no redirects, no proxy settings from the environment, no TLS (loopback only).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import cast

import h11

Headers = list[tuple[bytes, bytes]]
#: A request body: none, all of it, or chunks as they come (sent chunked or with the
#: Content-Length the caller put in the headers).
Body = bytes | AsyncIterator[bytes] | None

#: Methods that may be sent twice (RFC 9110 9.2.2).
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: Largest answer head accepted (status line and headers).
MAX_HEAD = 64 * 1024
#: Bytes read ahead of the consumer before reading from the socket pauses.
READ_AHEAD = 256 * 1024


class UpstreamError(Exception):
    """The service could not be reached, or broke the protocol."""


class UpstreamTimeout(UpstreamError):
    """The service did not accept the connection or the request in time."""


class _StaleConnection(UpstreamError):
    """A reused connection was found closed before any byte of the answer came back."""


class _Connection(asyncio.Protocol):
    """One connection to a service: h11's state plus what the socket delivered."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.transport: asyncio.Transport | None = None
        self.reused = False
        self.idle_since = 0.0
        #: True while a request is out: bytes arriving at any other time are stray.
        self.waiting_for_answer = False
        #: Some byte of the current answer arrived (a failure after it is never retried).
        self.answered = False
        self.closed = False
        self._incoming: list[bytes] = []
        self._buffered = 0
        self._eof = False
        self._eof_fed = False
        self._reading_paused = False
        self._wakeup: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.waiting_for_answer:
            self.close()  # e.g. a "408" some servers send before they close: never an answer
            return
        self.answered = True
        self._incoming.append(data)
        self._buffered += len(data)
        if self._buffered > READ_AHEAD and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._eof = True
        self._wake()
        self.resume_writing()  # a writer waiting to drain wakes up and sees `closed`

    def pause_writing(self) -> None:
        if self._writable is None or self._writable.done():
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    # -- used by the pool ------------------------------------------------------------------

    def usable(self, now: float, idle_seconds: float) -> bool:
        """Still worth sending a request on (the service has not closed it meanwhile)."""
        return not (self.closed or self._eof or self.transport is None
                    or self.transport.is_closing() or now - self.idle_since > idle_seconds)

    def has_leftovers(self) -> bool:
        """Bytes beyond the answer: the connection's framing cannot be trusted."""
        return bool(self._incoming) or bool(self.h11.trailing_data[0])

    def write(self, data: bytes) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise _StaleConnection("the connection is closed") if not self.answered else \
                UpstreamError("the service closed the connection")
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
            raise (UpstreamError if self.answered else _StaleConnection)(
                "the service closed the connection")

    def poll_event(self) -> h11.Event | type[h11.PAUSED] | type[h11.NEED_DATA]:
        """The next event from what already came in (NEED_DATA: wait for more)."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as error:
                raise UpstreamError(f"the service broke HTTP: {error}") from None
            if event is not h11.NEED_DATA:
                return event
            if self._incoming:
                data = b"".join(self._incoming) if len(self._incoming) > 1 else self._incoming[0]
                self._incoming.clear()
                self._buffered = 0
                if self._reading_paused and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resume_reading()
                self.h11.receive_data(data)
            elif self._eof and not self._eof_fed:
                self._eof_fed = True
                self.h11.receive_data(b"")
            else:
                return event

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        """The next event, waiting for the service as long as it takes (long polls)."""
        while True:
            event = self.poll_event()
            if event is not h11.NEED_DATA:
                return cast("h11.Event | type[h11.PAUSED]", event)
            if self._eof_fed:  # h11 asks for more after the end: it will not come
                raise UpstreamError("the service closed the connection")
            self._wakeup = asyncio.get_running_loop().create_future()
            await self._wakeup

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def close(self) -> None:
        self.closed = True
        self._eof = True
        if self.transport is not None:
            self.transport.abort()  # nothing left to send that anyone waits for
        self._wake()


class UpstreamResponse:
    """A service's answer: status and headers at once, the body as it comes.

    `body_so_far` holds what arrived with the head; `complete` says it is all of it (then
    the connection is already back in the pool). Otherwise iterate `chunks()`; `close()`
    (always safe) gives up the rest and the connection.
    """

    def __init__(self, pool: UpstreamPool, connection: _Connection, status: int,
                 headers: Headers) -> None:
        self.status = status
        #: Header names lower case, as h11 gives them; hop-by-hop ones included.
        self.headers = headers
        self.body_so_far = b""
        self.complete = False
        self._pool = pool
        self._connection: _Connection | None = connection

    def _take_ready(self) -> None:
        """Collect body bytes that already came in, without waiting."""
        connection = self._connection
        assert connection is not None
        parts: list[bytes] = []
        while True:
            event = connection.poll_event()
            if isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._finish()
                break
            elif event is h11.NEED_DATA:
                break
            else:
                self.close()
                raise UpstreamError(f"unexpected {event!r} in the service's answer")
        self.body_so_far = b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body: what came with the head first, then the rest as it arrives."""
        if self.body_so_far:
            yield self.body_so_far
        while self._connection is not None:
            event = await self._connection.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._finish()
            else:
                self.close()
                raise UpstreamError(f"unexpected {event!r} in the service's answer")

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

    def __init__(self, connect_timeout: float = 5.0, write_timeout: float = 60.0,
                 max_idle: int = 32, idle_seconds: float = 30.0) -> None:
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        #: Connections opened so far (the tests count reuse with it).
        self.opened = 0

    async def request(self, method: bytes, port: int, target: bytes, headers: Headers,
                      body: Body = None, host: str = "127.0.0.1") -> UpstreamResponse:
        """Send a request to `host:port` and return once the answer's head is in.

        `headers` must hold `host`, and `content-length` or `transfer-encoding: chunked`
        when there is a body. Raises UpstreamError (UpstreamTimeout) if no answer comes.
        """
        address = (host, port)
        retry = method in IDEMPOTENT and not isinstance(body, AsyncIterator)
        while True:
            connection = self._reuse(address) or await self._connect(address)
            try:
                return await self._exchange(connection, method, target, headers, body)
            except _StaleConnection:
                connection.close()
                if not (retry and connection.reused):
                    raise UpstreamError("the service closed the connection") from None
                retry = False  # once
            except BaseException:
                connection.close()
                raise

    async def _exchange(self, connection: _Connection, method: bytes, target: bytes,
                        headers: Headers, body: Body) -> UpstreamResponse:
        connection.waiting_for_answer = True
        try:
            head = connection.h11.send(h11.Request(method=method, target=target,
                                                   headers=headers))
            if body is None or isinstance(body, bytes):
                middle = connection.h11.send(h11.Data(data=body)) if body else b""
                end = connection.h11.send(h11.EndOfMessage())
                connection.write(b"".join((head or b"", middle or b"", end or b"")))
                await connection.drain(self.write_timeout)
            else:
                connection.write(head or b"")
                async for chunk in body:
                    if chunk:
                        connection.write(connection.h11.send(h11.Data(data=chunk)) or b"")
                        await connection.drain(self.write_timeout)
                connection.write(connection.h11.send(h11.EndOfMessage()) or b"")
                await connection.drain(self.write_timeout)
        except h11.LocalProtocolError as error:
            raise UpstreamError(f"the request cannot be forwarded: {error}") from None
        while True:
            try:
                event = await connection.next_event()
            except UpstreamError:
                if not connection.answered:
                    raise _StaleConnection("closed before answering") from None
                raise
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101:
                    raise UpstreamError("the service switched protocols unasked")
                continue  # 100 Continue, 103 Early Hints: nothing ASGI can pass on
            if isinstance(event, h11.Response):
                response = UpstreamResponse(self, connection, event.status_code,
                                            list(event.headers))
                response._take_ready()
                return response
            if isinstance(event, h11.ConnectionClosed) and not connection.answered:
                raise _StaleConnection("closed before answering")
            raise UpstreamError(f"unexpected {event!r} from the service")

    def _reuse(self, address: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(address)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.usable(now, self.idle_seconds):
                connection.reused = True
                connection.answered = False
                return connection
            connection.close()
        return None

    async def _connect(self, address: tuple[str, int]) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _transport, connection = await loop.create_connection(
                    lambda: _Connection(address), address[0], address[1])
        except TimeoutError:
            raise UpstreamTimeout(f"no connection to {address[0]}:{address[1]} within "
                                  f"{self.connect_timeout:g} s") from None
        except OSError as error:
            raise UpstreamError(f"cannot connect to {address[0]}:{address[1]}: "
                                f"{error.strerror or error}") from None
        self.opened += 1
        return connection

    def release(self, connection: _Connection) -> None:
        """Back to the pool after a complete exchange (closed if it cannot be reused)."""
        connection.waiting_for_answer = False
        if connection.h11.our_state is not h11.DONE or \
                connection.h11.their_state is not h11.DONE or connection.has_leftovers():
            connection.close()
            return
        try:
            connection.h11.start_next_cycle()
        except h11.LocalProtocolError:
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
