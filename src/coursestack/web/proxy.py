"""Forwarding to a web service: HTTP streamed both ways (httpx), WebSockets bridged
(`websockets` client). front_door.py decides who may pass; this module only forwards.

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
import logging
from collections.abc import AsyncIterator, MutableMapping
from html import escape
from typing import Any
from urllib.parse import unquote

import httpx
import websockets
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from coursestack.web.auth import COOKIE_PREFIX
from coursestack.web.context import WebContext
from coursestack.web.origins import ServiceHost

log = logging.getLogger("coursestack.web.proxy")

#: Headers that belong to one hop only (RFC 9110 7.6.1), never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                        "proxy-connection"})
#: Headers that claim who the client is or how it came: rebuilt by us, never copied.
CLAIMS = frozenset({"forwarded", "x-real-ip", "x-client-ip", "true-client-ip",
                    "cf-connecting-ip", "x-cluster-client-ip", "x-scheme", "via"})
MAX_PROXY_BODY = 512 * 1024 * 1024
WS_MAX_MESSAGE = 64 * 1024 * 1024


class Upstream:
    """Where a proxied request goes, and how the service wants it."""

    def __init__(self, port: int, path: str, query: str, host: str,
                 token: str | None, public_host: str = "") -> None:
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
            f"?{self.query}" if self.query else "")


def has_traversal(raw_path: str) -> bool:
    """True if a request path tries to climb out of its folder (.., encoded or not)."""
    decoded = raw_path
    for _ in range(3):  # double and triple encoding
        decoded = unquote(decoded)
    parts = decoded.replace("\\", "/").split("/")
    return any(part in ("..", ".") for part in parts) or "\x00" in decoded


def web_unit(web: WebContext, name: str) -> Any:
    """The kind of web service `name`; 404 for anything else."""
    unit = web.daemon.units.get(name)
    if unit is None:
        raise HTTPException(404, f"no service named {name!r}")
    if not unit.connection().web or unit.port is None:
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
    token = unit.connection().extra.get("token")
    host = f"127.0.0.1:{unit.port}" if unit.proxy_strips_prefix else target.host
    return Upstream(int(unit.port), raw_path, query, host, str(token) if token else None,
                    target.host)


def not_ready_page(web: WebContext, name: str, request: Request,
                   dashboard: str) -> Response | None:
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
        title, text, refresh = (f"{name} is stopped",
                                "Start it from the dashboard, then come back.", False)
    else:
        title, text, refresh = (f"Starting {name}…",
                                "This page reloads by itself when it is ready.", True)
    if "text/html" not in request.headers.get("accept", ""):
        return Response(f"{title}: {text}\n", status_code=503, media_type="text/plain",
                        headers={"Retry-After": "1"})
    meta = '<meta http-equiv="refresh" content="1">' if refresh else ""
    body = (f"<!doctype html><html lang=en><head><meta charset=utf-8>{meta}"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(title)}</title></head><body style='font-family:sans-serif;"
            f"max-width:40rem;margin:3rem auto;padding:0 1rem'>"
            f"<h1 role=status aria-live=polite>{escape(title)}</h1><p>{escape(text)}</p>"
            f"<p><a href='{escape(dashboard)}'>Back to the dashboard</a></p></body></html>")
    return Response(body, status_code=503, media_type="text/html",
                    headers={"Retry-After": "1", "Cache-Control": "no-store"})


def service_cookies(header: str) -> str:
    """The Cookie header without any coursestack cookie (the service never sees ours)."""
    parts = [p.strip() for p in header.split(";") if p.strip()]
    return "; ".join(p for p in parts if not p.split("=", 1)[0].strip().startswith(COOKIE_PREFIX))


def upstream_headers(request_headers: list[tuple[bytes, bytes]], upstream: Upstream,
                     client: str, add_token: bool) -> list[tuple[str, str]]:
    """The headers a service gets: the browser's own, minus ours and every claim about
    the client, plus a rebuilt Host and X-Forwarded-*."""
    headers: list[tuple[str, str]] = []
    for raw_key, raw_value in request_headers:
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key in HOP_BY_HOP or key in CLAIMS or key in ("host", "content-length") or \
                key.startswith("x-forwarded-") or key.startswith("sec-websocket"):
            continue
        if key == "authorization" and (add_token or value.lower().startswith("bearer ")):
            continue  # our bearer credential stays with us
        if key == "cookie":
            value = service_cookies(value)
            if not value:
                continue
        headers.append((key, value))
    if add_token and upstream.token:
        headers.append(("authorization", f"token {upstream.token}"))
    headers += [("host", upstream.host), ("x-forwarded-for", client),
                ("x-forwarded-proto", "http"), ("x-forwarded-host", upstream.public_host)]
    return headers


def raw_path(scope: MutableMapping[str, Any]) -> str:
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


def _response_headers(response: httpx.Response, upstream: Upstream) -> list[tuple[str, str]]:
    """The service's answer headers, minus hop-by-hop ones and any cookie in our name;
    a Location at the service's loopback address made relative."""
    kept: list[tuple[str, str]] = []
    loopback = f"http://127.0.0.1:{upstream.port}"
    for key, value in response.headers.multi_items():
        lower = key.lower()
        if lower in HOP_BY_HOP:
            continue
        if lower == "set-cookie" and value.lstrip().startswith(COOKIE_PREFIX):
            continue
        if lower == "location" and value.startswith(loopback):
            value = value[len(loopback):] or "/"
        kept.append((lower, value))
    return kept


async def forward_http(request: Request, upstream: Upstream, add_token: bool) -> Response:
    """Forward one HTTP request to the service, streaming both bodies."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_PROXY_BODY):
        raise HTTPException(413, "request body too large")
    client: httpx.AsyncClient = request.app.state.proxy_client
    headers = upstream_headers(request.scope["headers"], upstream,
                               request.client.host if request.client else "", add_token)
    has_body = request.method not in ("GET", "HEAD") and (
        length not in (None, "0") or "transfer-encoding" in request.headers)
    outgoing = client.build_request(request.method, upstream.url(), headers=headers,
                                    content=request.stream() if has_body else None)
    try:
        response = await client.send(outgoing, stream=True)
    except httpx.TimeoutException:
        raise HTTPException(504, "the service did not answer in time") from None
    except httpx.HTTPError:
        raise HTTPException(502, "the service is not answering; is it running? "
                            "See the dashboard") from None
    result = StreamingResponse(_body(response), status_code=response.status_code,
                               background=BackgroundTask(response.aclose))
    result.raw_headers = [(k.encode("latin-1"), v.encode("latin-1"))
                          for k, v in _response_headers(response, upstream)]
    return result


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        # The service went away mid-response: end the body; the browser sees it cut.
        return


async def forward_websocket(websocket: WebSocket, web: WebContext, name: str,
                            upstream: Upstream, add_token: bool) -> None:
    """Bridge a WebSocket (a Jupyter kernel channel) to the service."""
    headers = [(k, v) for k, v in upstream_headers(
        websocket.scope["headers"], upstream,
        websocket.client.host if websocket.client else "", add_token)
               if k not in ("host", "origin")]
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
                 if p.strip()]
    origin = websocket.headers.get("origin")
    try:
        remote = await websockets.connect(
            f"ws://{upstream.host}{upstream.path}" + (f"?{upstream.query}" if upstream.query
                                                     else ""),
            host="127.0.0.1", port=upstream.port, additional_headers=headers,
            origin=websockets.Origin(origin) if origin else None,
            subprotocols=[websockets.Subprotocol(p) for p in protocols] or None,
            max_size=WS_MAX_MESSAGE, open_timeout=10, compression=None)
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
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect,
                                 RuntimeError):
            await task
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await browser.close()
