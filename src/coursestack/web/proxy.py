"""Forwarding to a web service: HTTP streamed both ways (our own kept-alive client,
upstream.py), WebSockets bridged (`websockets` client). front_door.py decides who may
pass; this module only forwards, as plain ASGI (no framework in the way: a proxied
request should cost little more than the service's own answer).

Parsing, never pasting: the service and its port come from the spec (the caller has
matched the `Host`), the upstream URL is built from the loopback address, that port and
the request's path; `Host` and the forwarded headers are rebuilt; `X-Real-Ip`,
`Forwarded`, `X-Forwarded-*` and the like from the browser are dropped, and so is every
coursestack cookie and our own bearer credential.

A service keeps its own base path (Jupyter runs with `base_url=/s/<name>/`) and sees its
own origin's `Host`, so its same-origin and XSRF checks apply; other kinds serve at `/`
of their origin and see `Host: 127.0.0.1:<port>` (OpenRefine checks it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, MutableMapping
from html import escape
from typing import Any
from urllib.parse import unquote

import websockets
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from coursestack.web.auth import COOKIE_PREFIX
from coursestack.web.context import WebContext
from coursestack.web.origins import ServiceHost
from coursestack.web.upstream import (
    Body,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
)

log = logging.getLogger("coursestack.web.proxy")

#: Headers that belong to one hop only (RFC 9110 7.6.1), never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
    }
)
#: Headers that claim who the client is or how it came: rebuilt by us, never copied.
CLAIMS = frozenset(
    {
        "forwarded",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "x-scheme",
        "via",
    }
)
MAX_PROXY_BODY = 512 * 1024 * 1024
#: A request body up to this size is read whole before it is sent (one write, and the
#: request can be retried on a new connection); a larger one streams.
SMALL_BODY = 64 * 1024
WS_MAX_MESSAGE = 64 * 1024 * 1024

_HOP_BY_HOP = frozenset(name.encode() for name in HOP_BY_HOP)
_NOT_FORWARDED = frozenset(
    name.encode() for name in (*HOP_BY_HOP, *CLAIMS, "host", "content-length")
)
_COOKIE_PREFIX = COOKIE_PREFIX.encode()


class Upstream:
    """Where a proxied request goes, and how the service wants it."""

    def __init__(
        self, port: int, path: str, query: str, host: str, token: str | None, public_host: str = ""
    ) -> None:
        self.port = port
        self.path = path
        self.query = query
        #: The Host header the service sees (rebuilt, never the browser's).
        self.host = host
        #: The service's own credential (Jupyter's token), added for bearer clients only.
        self.token = token
        #: The origin's host as the browser reached it (rebuilt: X-Forwarded-Host).
        self.public_host = public_host or host

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{self.path}" + (
            f"?{self.query}" if self.query else ""
        )

    def target(self) -> bytes:
        """The request target (path and query) as sent to the service."""
        return (f"{self.path}?{self.query}" if self.query else self.path).encode("latin-1")


def has_traversal(raw_path: str) -> bool:
    """True if a request path tries to climb out of its folder (.., encoded or not)."""
    decoded = raw_path
    for _ in range(3):  # double and triple encoding
        decoded = unquote(decoded)
    parts = decoded.replace("\\", "/").split("/")
    return any(part in ("..", ".") for part in parts) or "\x00" in decoded


#: unit -> (port, has a web interface, its token): what the front door asks of a unit's
#: connection info on every request; `connection()` builds paths, so it is asked again
#: only when the port moved (a respec replaces the unit itself).
_facts: weakref.WeakKeyDictionary[Any, tuple[int | None, bool, str | None]] = (
    weakref.WeakKeyDictionary()
)


def _web_facts(unit: Any) -> tuple[bool, str | None]:
    """(has a web interface, its token) of `unit`."""
    port = unit.port
    cached = _facts.get(unit)
    if cached is None or cached[0] != port:
        connection = unit.connection()
        token = connection.extra.get("token")
        cached = (port, bool(connection.web), str(token) if token else None)
        _facts[unit] = cached
    return cached[1], cached[2]


def web_unit(web: WebContext, name: str) -> Any:
    """The kind of web service `name`; 404 for anything else."""
    unit = web.daemon.units.get(name)
    if unit is None:
        raise HTTPException(404, f"no service named {name!r}")
    if not _web_facts(unit)[0] or unit.port is None:
        raise HTTPException(404, f"service {name!r} has no web interface")
    return unit


def home_path(unit: Any) -> str:
    """Where a service's pages start on its own origin."""
    return "/" if unit.proxy_strips_prefix else str(unit.web_path())


def resolve(web: WebContext, target: ServiceHost, raw_path: str, query: str) -> Upstream:
    """The upstream of a request to `target`'s origin."""
    unit = web_unit(web, target.service)
    if has_traversal(raw_path):
        raise HTTPException(400, "path traversal is not allowed")
    if not raw_path.startswith("/"):
        raise HTTPException(400, "the path must start with /")
    token = _web_facts(unit)[1]
    host = f"127.0.0.1:{unit.port}" if unit.proxy_strips_prefix else target.host
    return Upstream(int(unit.port), raw_path, query, host, token, target.host)


def service_is_up(web: WebContext, name: str) -> bool:
    """True (and `name` noted as in use) if requests can go to it right away; else
    not_ready_page says what to do."""
    service = web.daemon.supervisor.services.get(name) if web.daemon.supervisor else None
    if service is None or str(service.status.state) not in ("ready", "unhealthy"):
        return False
    web.daemon.note_activity(name)
    return True


def not_ready_page(web: WebContext, name: str, request: Request, dashboard: str) -> Response | None:
    """Start an on-demand service on its first request; while a service is not ready,
    a page that says so (and refreshes itself) instead of a bare error."""
    service = web.daemon.supervisor.services.get(name) if web.daemon.supervisor else None
    if service is None:
        return None
    web.daemon.note_activity(name)
    state = str(service.status.state)
    if state in ("ready", "unhealthy"):
        return None
    on_demand = str(service.unit.spec.start) == "on-demand"
    if on_demand:
        state = web.daemon.ensure_started(name)
    if state == "failed":
        title, text, refresh = (f"{name} could not start", service.status.reason, False)
    elif state == "stopped" and not on_demand:
        title, text, refresh = (
            f"{name} is stopped",
            "Start it from the dashboard, then come back.",
            False,
        )
    else:
        title, text, refresh = (
            f"Starting {name}…",
            "This page reloads by itself when it is ready.",
            True,
        )
    if "text/html" not in request.headers.get("accept", ""):
        return Response(
            f"{title}: {text}\n",
            status_code=503,
            media_type="text/plain",
            headers={"Retry-After": "1"},
        )
    meta = '<meta http-equiv="refresh" content="1">' if refresh else ""
    body = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>{meta}"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{escape(title)}</title></head><body style='font-family:sans-serif;"
        f"max-width:40rem;margin:3rem auto;padding:0 1rem'>"
        f"<h1 role=status aria-live=polite>{escape(title)}</h1><p>{escape(text)}</p>"
        f"<p><a href='{escape(dashboard)}'>Back to the dashboard</a></p></body></html>"
    )
    return Response(
        body,
        status_code=503,
        media_type="text/html",
        headers={"Retry-After": "1", "Cache-Control": "no-store"},
    )


def service_cookies(header: str) -> str:
    """The Cookie header without any coursestack cookie (the service never sees ours)."""
    parts = [p.strip() for p in header.split(";") if p.strip()]
    return "; ".join(p for p in parts if not p.split("=", 1)[0].strip().startswith(COOKIE_PREFIX))


def upstream_headers(
    request_headers: list[tuple[bytes, bytes]], upstream: Upstream, client: str, add_token: bool
) -> list[tuple[bytes, bytes]]:
    """The headers a service gets: the browser's own, minus ours and every claim about
    the client, plus a rebuilt Host and X-Forwarded-* (names lower case)."""
    headers: list[tuple[bytes, bytes]] = []
    for raw_key, value in request_headers:
        key = raw_key.lower()
        if key in _NOT_FORWARDED or key.startswith((b"x-forwarded-", b"sec-websocket")):
            continue
        if key == b"authorization" and (add_token or value[:7].lower() == b"bearer "):
            continue  # our bearer credential stays with us
        if key == b"cookie":
            value = service_cookies(value.decode("latin-1")).encode("latin-1")
            if not value:
                continue
        headers.append((key, value))
    if add_token and upstream.token:
        headers.append((b"authorization", f"token {upstream.token}".encode("latin-1")))
    headers += [
        (b"host", upstream.host.encode("latin-1")),
        (b"x-forwarded-for", client.encode("latin-1")),
        (b"x-forwarded-proto", b"http"),
        (b"x-forwarded-host", upstream.public_host.encode("latin-1")),
    ]
    return headers


def raw_path(scope: MutableMapping[str, Any]) -> str:
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


def response_headers(
    headers: list[tuple[bytes, bytes]], upstream: Upstream
) -> list[tuple[bytes, bytes]]:
    """The service's answer headers, minus hop-by-hop ones and any cookie in our name;
    a Location at the service's loopback address made relative."""
    kept: list[tuple[bytes, bytes]] = []
    loopback = f"http://127.0.0.1:{upstream.port}".encode("latin-1")
    for raw_key, value in headers:
        key = raw_key.lower()
        if key in _HOP_BY_HOP:
            continue
        if key == b"set-cookie" and value.lstrip().startswith(_COOKIE_PREFIX):
            continue
        if key == b"location" and value.startswith(loopback):
            value = value[len(loopback) :] or b"/"
        kept.append((key, value))
    return kept


async def send_error(send: Send, status: int, detail: str) -> None:
    """A JSON error of the front door itself (never cached)."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ClientGone(Exception):
    """The browser went away while its request body was coming in."""


class BodyTooLarge(Exception):
    """A request body without a Content-Length grew beyond MAX_PROXY_BODY."""


async def _request_body(receive: Receive, first: bytes, more: bool) -> AsyncIterator[bytes]:
    """The rest of a request body as the browser sends it, MAX_PROXY_BODY at most."""
    size = len(first)
    if first:
        yield first
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > MAX_PROXY_BODY:
            raise BodyTooLarge()  # the upstream request is cut off
        if chunk:
            yield chunk


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body's first part (all of it if small): (bytes, more to come)."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(parts), False
        if size >= SMALL_BODY:
            return b"".join(parts), True


async def forward(
    scope: Scope,
    receive: Receive,
    send: Send,
    pool: UpstreamPool,
    upstream: Upstream,
    add_token: bool,
) -> None:
    """Forward one HTTP request to the service and its answer back, streaming both
    bodies (a small answer that came in whole is sent in one piece)."""
    method = str(scope["method"]).encode("latin-1")
    length: bytes | None = None
    chunked = False
    for key, value in scope["headers"]:
        if key == b"content-length":
            length = value
        elif key == b"transfer-encoding":
            chunked = True
    if length is not None and (not length.isdigit() or int(length) > MAX_PROXY_BODY):
        await send_error(send, 413, "request body too large")
        return
    client = scope.get("client")
    headers = upstream_headers(scope["headers"], upstream, client[0] if client else "", add_token)
    body: Body = None
    size: int | None = None
    if method not in (b"GET", b"HEAD") and (length not in (None, b"0") or chunked):
        try:
            first, more = await _read_body(receive)
        except ClientGone:
            return
        if more:
            body = _request_body(receive, first, more)
            size = int(length) if length is not None else None
        else:
            body = first
    elif length is not None and method not in (b"GET", b"HEAD"):
        body = b""  # sent with Content-Length: 0, as it came
    target = upstream.target()
    try:
        response = await pool.request(method, upstream.port, target, headers, body, size)
    except ClientGone:
        return
    except BodyTooLarge:
        await send_error(send, 413, "request body too large")
        return
    except UpstreamTimeout:
        await send_error(send, 504, "the service did not answer in time")
        return
    except UpstreamError as error:
        log.info("front door: %s %s: %s", method.decode(), upstream.port, error)
        await send_error(
            send, 502, "the service is not answering; is it running? See the dashboard"
        )
        return
    try:
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers(response.headers, upstream),
            }
        )
    except BaseException:
        response.close()
        raise
    if response.complete:
        await send({"type": "http.response.body", "body": response.body_so_far})
        return
    await _stream_answer(response, receive, send)


async def _stream_answer(response: UpstreamResponse, receive: Receive, send: Send) -> None:
    """Pass the body on as it comes; stop (and drop the connection) if the browser goes."""

    async def until_gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        response.close()  # wakes the reader below with an error

    watcher = asyncio.get_running_loop().create_task(until_gone())
    try:
        async for chunk in response.chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    except (UpstreamError, OSError):
        pass  # the service (or the browser) went away mid-answer: end what was sent
    finally:
        watcher.cancel()
        response.close()
    with contextlib.suppress(OSError, RuntimeError):  # the browser may be gone too
        await send({"type": "http.response.body", "body": b""})


class Forwarding:
    """An ASGI answer that forwards the request (for callers that want a response
    object: the hub's path front door)."""

    def __init__(self, upstream: Upstream, add_token: bool) -> None:
        self.upstream = upstream
        self.add_token = add_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pool: UpstreamPool = scope["app"].state.proxy_client
        await forward(scope, receive, send, pool, self.upstream, self.add_token)


async def forward_http(request: Request, upstream: Upstream, add_token: bool) -> Forwarding:
    """The forwarding of `request` as an ASGI answer (call it with the request's scope)."""
    return Forwarding(upstream, add_token)


async def forward_websocket(
    websocket: WebSocket, web: WebContext, name: str, upstream: Upstream, add_token: bool
) -> None:
    """Bridge a WebSocket (a Jupyter kernel channel) to the service."""
    headers = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in upstream_headers(
            websocket.scope["headers"],
            upstream,
            websocket.client.host if websocket.client else "",
            add_token,
        )
        if k not in (b"host", b"origin")
    ]
    protocols = [
        p.strip()
        for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
        if p.strip()
    ]
    origin = websocket.headers.get("origin")
    try:
        remote = await websockets.connect(
            f"ws://{upstream.host}{upstream.path}"
            + (f"?{upstream.query}" if upstream.query else ""),
            host="127.0.0.1",
            port=upstream.port,
            additional_headers=headers,
            origin=websockets.Origin(origin) if origin else None,
            subprotocols=[websockets.Subprotocol(p) for p in protocols] or None,
            max_size=WS_MAX_MESSAGE,
            open_timeout=10,
            compression=None,
        )
    except (OSError, InvalidHandshake, TimeoutError, ValueError) as error:
        code = error.response.status_code if isinstance(error, InvalidStatus) else 502
        log.info("front door: websocket to %s refused: %s", name, error)
        await websocket.close(code=4000 + min(code, 999))
        return
    await websocket.accept(subprotocol=remote.subprotocol)
    try:
        await _bridge(websocket, remote, web, name)
    finally:
        await remote.close()


async def _bridge(browser: WebSocket, remote: Any, web: WebContext, name: str) -> None:
    async def browser_to_remote() -> None:
        while True:
            message = await browser.receive()
            web.daemon.note_activity(name)  # an open notebook keeps its service awake
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await remote.send(message["bytes"])
            elif message.get("text") is not None:
                await remote.send(message["text"])

    async def remote_to_browser() -> None:
        async for data in remote:
            if isinstance(data, bytes):
                await browser.send_bytes(data)
            else:
                await browser.send_text(data)

    tasks = [asyncio.create_task(browser_to_remote()), asyncio.create_task(remote_to_browser())]
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(
            asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect, RuntimeError
        ):
            await task
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await browser.close()
