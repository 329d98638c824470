"""The front door: every web service under `/s/<name>/` on the dashboard's own port.

HTTP is streamed both ways with httpx; WebSockets (Jupyter kernels) are bridged with the
`websockets` client. Requests pass only with a dashboard login; the proxy then adds the
service's own credential (Jupyter's token), so one login opens everything. Because that
credential is added for the browser, an unsafe request must come from the dashboard's
own origin (Origin/Referer check), which stops cross-site request forgery through the
proxy. The dashboard session cookie is never forwarded to a service.

Services keep their own base path (Jupyter runs with `base_url=/s/<name>/`), so paths are
forwarded unchanged and the browser's Host is kept, as with any reverse proxy.
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
from fastapi import APIRouter, HTTPException, Request
from starlette.background import BackgroundTask
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from coursestack.web.auth import SAFE_METHODS, SESSION_COOKIE, same_origin
from coursestack.web.context import NotLoggedIn, WebContext, get_context

log = logging.getLogger("coursestack.web.proxy")

#: Headers that belong to one hop only (RFC 9110 7.6.1), never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
                        "proxy-connection"})
MAX_PROXY_BODY = 512 * 1024 * 1024
WS_MAX_MESSAGE = 64 * 1024 * 1024

router = APIRouter(include_in_schema=False)


class Upstream:
    """Where a proxied request goes, and the credential the service wants."""

    def __init__(self, port: int, path: str, query: str, token: str | None) -> None:
        self.port = port
        self.path = path
        self.query = query
        self.token = token
        #: The front-door prefix removed from the path ("" when the service keeps it).
        self.prefix = ""

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


def resolve(web: WebContext, name: str, raw_path: str, query: str) -> Upstream:
    """The upstream of `/s/<name>/...`; 404 for anything that is not a web service."""
    unit = web.daemon.units.get(name)
    if unit is None:
        raise HTTPException(404, f"no service named {name!r}")
    connection = unit.connection()
    if not connection.web or unit.port is None:
        raise HTTPException(404, f"service {name!r} has no web interface")
    if has_traversal(raw_path):
        raise HTTPException(400, "path traversal is not allowed")
    token = connection.extra.get("token")
    path = raw_path
    if unit.proxy_strips_prefix:  # an app that cannot live under /s/<name>/
        path = raw_path[len(f"/s/{name}"):] or "/"
    upstream = Upstream(unit.port, path, query, str(token) if token else None)
    upstream.prefix = f"/s/{name}" if unit.proxy_strips_prefix else ""
    return upstream


def not_ready_page(web: WebContext, name: str, request: Request) -> Response | None:
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
            f"<p><a href='/'>Back to the dashboard</a></p></body></html>")
    return Response(body, status_code=503, media_type="text/html",
                    headers={"Retry-After": "1", "Cache-Control": "no-store"})


def strip_session_cookie(header: str) -> str:
    """The Cookie header without the dashboard's own session cookie."""
    parts = [p.strip() for p in header.split(";") if p.strip()]
    return "; ".join(p for p in parts if p.split("=", 1)[0].strip() != SESSION_COOKIE)


def upstream_headers(request_headers: list[tuple[bytes, bytes]], upstream: Upstream,
                     client: str, scheme: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    host = ""
    for raw_key, raw_value in request_headers:
        key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
        if key in HOP_BY_HOP or key in ("authorization", "content-length") or \
                key.startswith("x-forwarded-") or key.startswith("sec-websocket"):
            continue
        if key == "host":
            host = value
        if key == "cookie":
            value = strip_session_cookie(value)
            if not value:
                continue
        headers.append((key, value))
    if upstream.token:
        headers.append(("authorization", f"token {upstream.token}"))
    headers += [("x-forwarded-for", client), ("x-forwarded-proto", scheme),
                ("x-forwarded-host", host)]
    return headers


def _raw_path(scope: MutableMapping[str, Any]) -> str:
    raw = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


@router.api_route("/s/{name}", methods=["GET", "HEAD"])
async def service_root(name: str, request: Request) -> Response:
    """`/s/<name>` -> `/s/<name>/`."""
    web = get_context(request)
    if web.auth.identify(request) is None:
        raise NotLoggedIn()
    resolve(web, name, f"/s/{name}/", "")
    return RedirectResponse(f"/s/{name}/", 307)


@router.api_route("/s/{name}/{path:path}",
                  methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def proxy_http(name: str, path: str, request: Request) -> Response:
    """Forward one HTTP request to the service, streaming both bodies."""
    web = get_context(request)
    if web.auth.identify(request) is None:
        raise NotLoggedIn()
    if request.method not in SAFE_METHODS and not same_origin(request):
        raise HTTPException(403, "cross-origin request refused by the front door")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_PROXY_BODY):
        raise HTTPException(413, "request body too large")
    upstream = resolve(web, name, _raw_path(request.scope), request.url.query)
    waiting = not_ready_page(web, name, request)
    if waiting is not None:
        return waiting
    client: httpx.AsyncClient = request.app.state.proxy_client
    headers = upstream_headers(request.scope["headers"], upstream,
                               request.client.host if request.client else "",
                               request.url.scheme)
    if upstream.prefix:  # such apps check Host against their own address
        headers = [(k, v) for k, v in headers if k != "host"]
        headers.append(("host", f"127.0.0.1:{upstream.port}"))
    has_body = request.method not in ("GET", "HEAD") and (
        length not in (None, "0") or "transfer-encoding" in request.headers)
    outgoing = client.build_request(request.method, upstream.url(), headers=headers,
                                    content=request.stream() if has_body else None)
    try:
        response = await client.send(outgoing, stream=True)
    except httpx.TimeoutException:
        raise HTTPException(504, f"service {name!r} did not answer in time") from None
    except httpx.HTTPError:
        raise HTTPException(502, f"service {name!r} is not answering; is it running? "
                            "See the dashboard") from None
    response_headers = [(k, v) for k, v in response.headers.multi_items()
                        if k.lower() not in HOP_BY_HOP]
    location = response.headers.get("location", "")
    upstream_origin = f"http://127.0.0.1:{upstream.port}"
    if location.startswith(upstream_origin) or (upstream.prefix and location.startswith("/")):
        relative = location[len(upstream_origin):] if location.startswith(
            upstream_origin) else location
        response_headers = [(k, v) for k, v in response_headers if k.lower() != "location"]
        response_headers.append(("location", upstream.prefix + (relative or "/")))
    result = StreamingResponse(_body(response), status_code=response.status_code,
                               background=BackgroundTask(response.aclose))
    result.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                          for k, v in response_headers]
    return result


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        # The service went away mid-response: end the body; the browser sees it cut.
        return


@router.websocket("/s/{name}/{path:path}")
async def proxy_websocket(websocket: WebSocket, name: str, path: str) -> None:
    """Bridge a WebSocket (a Jupyter kernel channel) to the service."""
    web = get_context_ws(websocket)
    if web.auth.identify(websocket) is None or not same_origin(websocket):
        await websocket.close(code=4401 if web.auth.identify(websocket) is None else 4403)
        return
    try:
        upstream = resolve(web, name, _raw_path(websocket.scope), websocket.url.query)
    except HTTPException as refused:
        await websocket.close(code=4000 + refused.status_code)
        return
    headers = [(k, v) for k, v in upstream_headers(
        websocket.scope["headers"], upstream,
        websocket.client.host if websocket.client else "", "http")
               if k not in ("host", "origin")]
    host = websocket.headers.get("host", f"127.0.0.1:{upstream.port}")
    protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",")
                 if p.strip()]
    try:
        remote = await websockets.connect(
            f"ws://{host}{upstream.path}" + (f"?{upstream.query}" if upstream.query else ""),
            host="127.0.0.1", port=upstream.port, additional_headers=headers,
            origin=websockets.Origin(websocket.headers.get("origin", "")) or None,
            subprotocols=[websockets.Subprotocol(p) for p in protocols] or None,
            max_size=WS_MAX_MESSAGE, open_timeout=10, compression=None)
    except (OSError, InvalidHandshake, TimeoutError) as error:
        code = error.response.status_code if isinstance(error, InvalidStatus) else 502
        log.info("front door: websocket to %s refused: %s", name, error)
        await websocket.close(code=4000 + min(code, 999))
        return
    await websocket.accept(subprotocol=remote.subprotocol)
    try:
        await _bridge(websocket, remote)
    finally:
        await remote.close()


def get_context_ws(websocket: WebSocket) -> WebContext:
    context: WebContext = websocket.app.state.web
    return context


async def _bridge(browser: WebSocket, remote: Any) -> None:
    web = get_context_ws(browser)
    name = str(browser.path_params.get("name", ""))

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
