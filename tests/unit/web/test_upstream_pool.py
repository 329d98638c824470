"""The front door's HTTP client (web/upstream.py) and forwarding (web/proxy.forward),
against real tiny servers on loopback: an asyncio server that answers with exactly the
bytes a test scripts, and uvicorn serving `forward` in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import h11
import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from coursestack.web.proxy import Upstream, forward
from coursestack.web.upstream import UpstreamError, UpstreamPool


@dataclass
class Seen:
    """One request as the tiny server parsed it."""

    connection: int
    method: bytes
    target: bytes
    headers: dict[bytes, bytes]
    body: bytes


#: Answers one request: gets what was seen and the writer; returns False to hang up.
Handler = Callable[[Seen, asyncio.StreamWriter], Awaitable[bool]]


@dataclass
class TinyServer:
    """An HTTP/1.1 server whose answers the test writes byte for byte."""

    handler: Handler
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    closed: list[int] = field(default_factory=list)
    port: int = 0
    _open: dict[asyncio.StreamWriter, asyncio.Task[None]] = field(default_factory=dict)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open[writer] = task
        self.connections += 1
        number = self.connections
        parser = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = b""
                while True:
                    event = parser.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        parser.receive_data(data)
                        if not data and parser.their_state is not h11.DONE:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert request is not None
                seen = Seen(number, request.method, request.target, dict(request.headers), body)
                self.seen.append(seen)
                if not await self.handler(seen, writer):
                    return
                await writer.drain()
                # h11 tracks our answers only loosely (written raw): start afresh.
                parser = h11.Connection(h11.SERVER)
        except (ConnectionError, h11.RemoteProtocolError):
            return
        finally:
            self.closed.append(number)
            self._open.pop(writer, None)
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TinyServer]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            try:
                yield self
            finally:
                tasks = list(self._open.values())
                for writer in list(self._open):
                    writer.close()  # its handler reads the end and returns
                await asyncio.gather(*tasks, return_exceptions=True)


def answer(body: bytes = b"hello", status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n".encode()
        + extra
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def ok(seen: Seen, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer(b"you asked for " + seen.target))
    return True


async def get(
    pool: UpstreamPool, port: int, target: bytes = b"/", method: bytes = b"GET"
) -> tuple[int, bytes]:
    response = await pool.request(method, port, target, [(b"host", b"127.0.0.1")])
    return response.status, await response.read()


async def test_kept_alive_connections_are_reused() -> None:
    pool = UpstreamPool()
    async with TinyServer(ok).running() as server:
        for number in range(5):
            assert await get(pool, server.port, b"/%d" % number) == (
                200,
                b"you asked for /%d" % number,
            )
        assert pool.opened == 1 and server.connections == 1
        assert pool.idle_count(server.port) == 1
        await pool.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def once(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer())
        return False  # hangs up after answering, without saying so

    pool = UpstreamPool()
    async with TinyServer(once).running() as server:
        assert await get(pool, server.port) == (200, b"hello")
        for _ in range(100):  # until the hang-up has reached the pool's connection
            if not pool._idle[("127.0.0.1", server.port)][0].usable(0, 1e9):
                break
            await asyncio.sleep(0.01)
        assert await get(pool, server.port) == (200, b"hello")
        assert pool.opened == 2


async def test_a_reused_connection_that_dies_unanswered_is_retried_once_if_idempotent() -> None:
    async def drop_second(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.connection == 1 and len(seen_before(server, 1)) == 2:
            return False  # the race: closed as the request came, no answer
        writer.write(answer(seen.method))
        return True

    pool = UpstreamPool()
    async with TinyServer(drop_second).running() as server:
        assert await get(pool, server.port) == (200, b"GET")
        assert await get(pool, server.port) == (200, b"GET")  # retried on connection 2
        assert [s.connection for s in server.seen] == [1, 1, 2]

    pool = UpstreamPool()
    async with TinyServer(drop_second).running() as server:
        response = await pool.request(b"POST", server.port, b"/", [(b"host", b"x")], b"a=1")
        assert await response.read() == b"POST"
        with pytest.raises(UpstreamError):  # POST is not sent twice
            await pool.request(b"POST", server.port, b"/", [(b"host", b"x")], b"a=1")
        assert len(server.seen) == 2


def seen_before(server: TinyServer, connection: int) -> list[Seen]:
    return [s for s in server.seen if s.connection == connection]


async def test_a_chunked_answer_streams_as_it_comes_and_the_connection_is_kept() -> None:
    pieces = [b"first ", b"second ", b"third"]
    go_on = asyncio.Event()

    async def chunked(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in pieces:
            writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            await writer.drain()
            await go_on.wait()
            go_on.clear()
        writer.write(b"0\r\n\r\n")
        return True

    pool = UpstreamPool()
    async with TinyServer(chunked).running() as server:
        response = await pool.request(b"GET", server.port, b"/", [(b"host", b"x")])
        assert not response.complete
        received = []
        async for chunk in response.chunks():
            received.append(chunk)
            go_on.set()  # the next piece is only written once this one arrived
        assert received == pieces
        assert pool.idle_count(server.port) == 1


async def test_request_bodies_stream_chunked_or_with_their_length() -> None:
    async def echo(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        framing = seen.headers.get(
            b"transfer-encoding", b"length " + seen.headers.get(b"content-length", b"-")
        )
        writer.write(answer(framing + b":" + seen.body))
        return True

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"one,", b"", b"two,", b"three"):
            await asyncio.sleep(0)
            yield part

    pool = UpstreamPool()
    async with TinyServer(echo).running() as server:
        response = await pool.request(b"PUT", server.port, b"/", [(b"host", b"x")], parts())
        assert await response.read() == b"chunked:one,two,three"
        response = await pool.request(
            b"PUT", server.port, b"/", [(b"host", b"x")], parts(), length=13
        )
        assert await response.read() == b"length 13:one,two,three"
        response = await pool.request(b"POST", server.port, b"/", [(b"host", b"x")], b"")
        assert await response.read() == b"length 0:"
        assert server.connections == 1


async def test_head_answers_have_no_body_whatever_their_headers_say() -> None:
    async def head(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.method == b"HEAD":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        else:
            writer.write(answer())
        return True

    pool = UpstreamPool()
    async with TinyServer(head).running() as server:
        response = await pool.request(b"HEAD", server.port, b"/", [(b"host", b"x")])
        assert response.complete and response.status == 200
        assert dict(response.headers)[b"content-length"] == b"1234"
        assert await response.read() == b""
        assert await get(pool, server.port) == (200, b"hello")


async def test_informational_answers_are_skipped_and_101_is_refused() -> None:
    async def hints(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.target == b"/switch":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\n\r\n"
            )
            return True
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(answer(b"after hints"))
        return True

    pool = UpstreamPool()
    async with TinyServer(hints).running() as server:
        response = await pool.request(b"GET", server.port, b"/", [(b"host", b"x")])
        assert response.status == 200 and b"link" not in dict(response.headers)
        assert await response.read() == b"after hints"
        with pytest.raises(UpstreamError, match="switched protocols"):
            await pool.request(b"GET", server.port, b"/switch", [(b"host", b"x")])


async def test_an_answer_that_ends_with_the_connection() -> None:
    async def until_close(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nno length, ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"then the end")
        return False

    pool = UpstreamPool()
    async with TinyServer(until_close).running() as server:
        assert await get(pool, server.port) == (200, b"no length, then the end")
        assert pool.idle_count(server.port) == 0


async def test_bytes_nobody_asked_for_make_a_connection_unusable() -> None:
    async def stray(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(b"right") + b"HTTP/1.1 408 Request Timeout\r\n\r\n")
        return True

    pool = UpstreamPool()
    async with TinyServer(stray).running() as server:
        assert await get(pool, server.port) == (200, b"right")
        assert await get(pool, server.port) == (200, b"right")
        assert pool.opened == 2


async def test_a_cut_answer_is_an_error_and_a_large_one_arrives_whole() -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: reading pauses and resumes on the way

    async def cut_or_big(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.target == b"/cut":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            return False
        writer.write(answer(big))
        return True

    pool = UpstreamPool()
    async with TinyServer(cut_or_big).running() as server:
        response = await pool.request(b"GET", server.port, b"/cut", [(b"host", b"x")])
        with pytest.raises(UpstreamError):
            await response.read()
        response = await pool.request(b"GET", server.port, b"/big", [(b"host", b"x")])
        received = b""
        async for chunk in response.chunks():
            received += chunk
            await asyncio.sleep(0)  # a slow reader
        assert received == big


async def test_nothing_listening_and_line_breaks_in_headers_are_errors() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        free = placeholder.getsockname()[1]
    pool = UpstreamPool()
    with pytest.raises(UpstreamError, match="cannot connect"):
        await get(pool, free)
    async with TinyServer(ok).running() as server:
        for headers in (
            [(b"host", b"x"), (b"x-evil", b"a\r\nInjected: 1")],
            [(b"host", b"x\nInjected: 1")],
        ):
            with pytest.raises(UpstreamError, match="line break"):
                await pool.request(b"GET", server.port, b"/", headers)
        with pytest.raises(UpstreamError):
            await pool.request(b"GET", server.port, b"/a b", [(b"host", b"x")])
        assert server.seen == []


# -- forward(): the ASGI side, served by uvicorn ---------------------------------------------


@contextlib.asynccontextmanager
async def front(upstream_port: int) -> AsyncIterator[tuple[str, UpstreamPool]]:
    """uvicorn serving `forward` to the tiny server (as the front door does)."""
    pool = UpstreamPool()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        query = scope["query_string"].decode("latin-1")
        upstream = Upstream(
            upstream_port,
            scope["raw_path"].decode("latin-1"),
            query,
            f"127.0.0.1:{upstream_port}",
            None,
        )
        await forward(scope, receive, send, pool, upstream, add_token=False)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", pool
    finally:
        server.should_exit = True
        await task
        listener.close()


async def test_forward_streams_both_ways_and_keeps_the_upstream_connection() -> None:
    async def echo(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        if seen.target.startswith(b"/stream"):
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
            )
            for number in range(3):
                writer.write(b"6\r\npart %d\r\n" % number)
                await writer.drain()
                await asyncio.sleep(0.02)
            writer.write(b"0\r\n\r\n")
            return True
        writer.write(
            answer(
                seen.method + b" " + seen.target + b" " + seen.body,
                extra=b"Set-Cookie: coursestack_x=1\r\nSet-Cookie: theirs=1\r\n",
            )
        )
        return True

    async with TinyServer(echo).running() as server, front(server.port) as (url, pool):
        async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client:
            answered = await client.get("/a/b?c=d")
            assert answered.text == "GET /a/b?c=d "
            assert answered.headers.get_list("set-cookie") == ["theirs=1"]

            async def upload() -> AsyncIterator[bytes]:
                for part in (b"x" * 70000, b"y" * 70000):  # larger than a small body
                    yield part

            answered = await client.post("/up", content=upload())
            assert answered.text == "POST /up " + "x" * 70000 + "y" * 70000
            answered = await client.post("/small", content=b"k=v")
            assert answered.text == "POST /small k=v"
            assert (await client.head("/h")).status_code == 200
            async with client.stream("GET", "/stream") as streamed:
                assert "connection" not in streamed.headers
                assert [chunk async for chunk in streamed.aiter_raw()] != []
            answered = await client.get("/stream")
            assert answered.text == "part 0part 1part 2"
        # One kept-alive upstream connection for all but HEAD's (never reused: see
        # upstream.py) and what came after it.
        assert server.connections == 2
        assert pool.opened == 2


async def test_forward_drops_the_upstream_connection_when_the_browser_goes() -> None:
    writing = asyncio.Event()

    async def endless(seen: Seen, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            while True:
                writer.write(b"5\r\ntick\n\r\n")
                await writer.drain()
                writing.set()
                await asyncio.sleep(0.01)
        return False

    async with TinyServer(endless).running() as server, front(server.port) as (url, _pool):
        async with (
            httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client,
            client.stream("GET", "/events") as streamed,
        ):
            async for chunk in streamed.aiter_raw():
                assert b"tick" in chunk
                break
        await writing.wait()
        for _ in range(300):
            if server.closed:
                break
            await asyncio.sleep(0.01)
        assert server.closed == [1]


async def test_forward_answers_502_when_the_service_is_down() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        free = placeholder.getsockname()[1]
    async with (
        front(free) as (url, _pool),
        httpx.AsyncClient(base_url=url, trust_env=False, timeout=10) as client,
    ):
        answered = await client.get("/")
    assert answered.status_code == 502
    assert "not answering" in answered.json()["detail"]
