"""The front door: every web service on an origin of its own, on the dashboard's port.

- `http://<service>.<instance>.localhost:<port>/...` is the service (origins.py); the
  middleware `ServiceOrigins` takes these requests before the dashboard ever sees them.
- `/s/<name>/...` on the dashboard's origin only redirects there, through a login
  hand-off: the dashboard issues a one-time code for that service and page, the
  service's origin redeems it at `/__coursestack/login?code=...` and sets a host-only
  cookie valid for that one service. The student logs in once, at the dashboard.
- A service that has a login of its own (Jupyter's token) logs the browser in itself
  during the hand-off: the front door asks the service, with its token, for its login
  cookie and hands that cookie to the browser on the service's origin. The token never
  reaches the browser, and the front door adds it to no browser request, so Jupyter's
  own origin and XSRF checks apply to everything a page does.
- On a service origin, any request a page of another origin sends (`Origin`,
  `Sec-Fetch-Site`) is refused, as is every credential but that service's own cookie
  (or the instance token as a bearer, which browsers never send by themselves).
"""

from __future__ import annotations

import logging
from html import escape
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from coursestack.web.auth import SESSION_LIFETIME, Principal, foreign_request
from coursestack.web.context import NotLoggedIn, WebContext
from coursestack.web.handoff import SERVICE_LIFETIME
from coursestack.web.origins import MISDIRECTED, Origins, ServiceHost, request_port
from coursestack.web.proxy import (
    Forwarding,
    forward_websocket,
    has_traversal,
    home_path,
    not_ready_page,
    raw_path,
    resolve,
    service_is_up,
    web_unit,
)
from coursestack.web.routing import Call, Routes
from coursestack.web.upstream import UpstreamError, UpstreamPool

log = logging.getLogger("coursestack.web.front_door")

#: The hand-off path on every service origin (no service of ours uses it).
LOGIN_PATH = "/__coursestack/login"
_NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}

# -- on the dashboard's origin: /s/<name>/... redirects to the service's origin ----------

#: Public: a stranger is sent to the login (NotLoggedIn) only after the reload check.
router = Routes(login=False, in_schema=False)


def dashboard_address(web: WebContext, port: int | None) -> str:
    """The dashboard's origin as a browser reaches it (loopback by default)."""
    host = str(web.daemon.spec.dashboard.host)
    if host in ("0.0.0.0", "::", "") or host.startswith("127."):
        host = "127.0.0.1"
    return f"http://{host}:{port}" if port else f"http://{host}"


def service_path(unit: Any, rest: str) -> str:
    """The path on a service's origin of `/s/<name>/<rest>` on the dashboard's."""
    return home_path(unit) + rest


def _rest_of(raw: str) -> str:
    """`<rest>` of a raw `/s/<name>/<rest>` path, still encoded (`/s/web%2Fx` has none)."""
    parts = raw.split("/", 3)
    return parts[3] if len(parts) == 4 else ""


def _reload_same_site(request: Request) -> Response | None:
    """A link from another site (a service's origin) does not carry the dashboard's
    SameSite=Strict cookie; a page that reloads itself does (the reload starts here)."""
    if (
        request.headers.get("sec-fetch-site") in ("cross-site", "same-site")
        and request.headers.get("sec-fetch-mode") == "navigate"
    ):
        target = escape(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return HTMLResponse(
            f"<!doctype html><meta charset=utf-8><meta http-equiv=refresh "
            f"content='0;url={target}'><title>Opening…</title>",
            headers=_NO_STORE,
        )
    return None


@router.add(("GET", "HEAD"), "/s/{name}")
@router.add(("GET", "HEAD"), "/s/{name}/{path:path}")
async def open_service(call: Call) -> Response:
    """Log the browser into a service's own origin, then show the page asked for."""
    request, web, name = call.request, call.web, call.path("name")
    principal = web.auth.identify(request)
    if principal is None:  # before anything else: strangers learn no service names
        if (reload := _reload_same_site(request)) is not None:
            return reload
        raise NotLoggedIn()
    unit = web_unit(web, name)
    raw = raw_path(request.scope)
    if has_traversal(raw):
        raise HTTPException(400, "path traversal is not allowed")
    target = service_path(unit, _rest_of(raw)) + (
        f"?{request.url.query}" if request.url.query else ""
    )
    port = request_port(request.headers.get("host"), web.daemon_port())
    origin = web.origins.host_of(name, port).origin
    parent = principal.session.sid if principal.session else ""
    code = web.codes.issue(f"service:{name}", SERVICE_LIFETIME, target, parent)
    return RedirectResponse(f"{origin}{LOGIN_PATH}?code={quote(code)}", 303, headers=_NO_STORE)


# -- on a service's origin ------------------------------------------------------------------


class ServiceOrigins:
    """ASGI middleware: requests whose Host names a service of this instance go to that
    service (after the checks above); everything else goes on to the dashboard.

    It is the hot path of every page a service shows (JupyterLab makes dozens of
    requests per page): plain ASGI, no router, the request parsed once, the answer
    forwarded by proxy.forward without a response object in between."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        #: Host header -> what it names (a browser sends the same few again and again),
        #: for the origins of `_matched_in` (a respec replaces them).
        self._matched: dict[bytes | None, ServiceHost | None] = {}
        self._matched_in: Origins | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        web: WebContext = scope["app"].state.web
        host: bytes | None = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value
                break
        if self._matched_in is not web.origins:
            self._matched, self._matched_in = {}, web.origins
        try:
            target = self._matched[host]
        except KeyError:
            target = web.origins.match(host.decode("latin-1") if host is not None else None)
            if len(self._matched) >= 256:  # made-up names cannot grow it without bound
                self._matched.clear()
            self._matched[host] = target
        if target is None:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await _serve_websocket(WebSocket(scope, receive, send), web, target)
            return
        request = Request(scope, receive)
        try:
            if target is MISDIRECTED:
                raise HTTPException(421, "no service of this instance has that name")
            response = await _serve_http(request, web, target)
        except HTTPException as refused:
            response = JSONResponse(
                {"detail": refused.detail},
                refused.status_code,
                headers={"Cache-Control": "no-store"},
            )
        await response(scope, receive, send)


def _identify(
    request: Request | WebSocket, web: WebContext, target: ServiceHost
) -> Principal | None:
    return web.auth.identify_for_service(request, target.service)


async def _serve_http(
    request: Request, web: WebContext, target: ServiceHost
) -> Response | Forwarding:
    if foreign_request(request, target.origin):
        raise HTTPException(403, "refused: sent by a page of another origin")
    unit = web_unit(web, target.service)
    path = raw_path(request.scope)
    if path == LOGIN_PATH:
        return await _hand_off(request, web, target, _dashboard_of(web, target))
    principal = _identify(request, web, target)
    if principal is None:
        dashboard = _dashboard_of(web, target)
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if wants_page:  # through the dashboard's login and back
            rest = path[len(home_path(unit)) :] if path.startswith(home_path(unit)) else ""
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(f"{dashboard}s/{target.service}/{rest}{query}", 303)
        raise HTTPException(401, "log in at the dashboard first")
    if path == "/" and home_path(unit) != "/":
        return RedirectResponse(home_path(unit), 307)
    upstream = resolve(web, target, path, request.scope["query_string"].decode("latin-1"))
    if not service_is_up(web, target.service):
        waiting = not_ready_page(web, target.service, request, _dashboard_of(web, target))
        if waiting is not None:
            return waiting
    return Forwarding(upstream, add_token=principal.via == "bearer")


def _dashboard_of(web: WebContext, target: ServiceHost) -> str:
    return dashboard_address(web, target.port) + "/"


async def _hand_off(
    request: Request, web: WebContext, target: ServiceHost, dashboard: str
) -> Response:
    """Redeem a one-time code: this origin's own session cookie (and the service's own
    login cookie, if it has a login), then on to the page the code was issued for."""
    codes = parse_qs(request.url.query).get("code", [])
    grant = web.codes.redeem(codes[0] if codes else None, f"service:{target.service}")
    if grant is None:
        body = (
            "<!doctype html><meta charset=utf-8><title>Link expired</title>"
            "<p>This link was already used or is too old. "
            f"<a href='{escape(dashboard)}'>Open the service from the dashboard</a> "
            "again.</p>"
        )
        return HTMLResponse(body, 400, headers=_NO_STORE)
    _, cookie = web.auth.new_session(f"service:{target.service}", grant.parent, SESSION_LIFETIME)
    # A page that moves on by itself: the next request then starts on this origin, so
    # the SameSite=Strict cookie goes with it (a redirect would still count as started
    # by the dashboard's site).
    next_path = (
        grant.next_path
        if grant.next_path.startswith("/") and not grant.next_path.startswith("//")
        else "/"
    )
    response = HTMLResponse(
        f"<!doctype html><meta charset=utf-8><meta http-equiv=refresh "
        f"content='0;url={escape(next_path)}'><title>Opening…</title>"
        f"<p><a href='{escape(next_path)}'>Continue</a></p>",
        headers=_NO_STORE,
    )
    response.set_cookie(
        web.auth.service_cookie(target.service),
        cookie,
        max_age=int(SESSION_LIFETIME),
        httponly=True,
        samesite="strict",
        path="/",
    )
    for value in await _service_login_cookies(request, web, target):
        response.headers.append("set-cookie", value)
    return response


async def _service_login_cookies(
    request: Request, web: WebContext, target: ServiceHost
) -> list[str]:
    """The service's own login cookie for this origin (Jupyter's, obtained with its
    token by the front door); [] for services without a login."""
    upstream = resolve(web, target, home_path(web_unit(web, target.service)), "")
    if not upstream.token:
        return []
    pool: UpstreamPool = request.app.state.proxy_client
    try:
        answer = await pool.request(
            b"GET",
            upstream.port,
            f"{upstream.path}api/status".encode("latin-1"),
            [
                (b"host", upstream.host.encode("latin-1")),
                (b"authorization", f"token {upstream.token}".encode("latin-1")),
            ],
        )
        await answer.read()
    except UpstreamError as error:
        log.info("front door: no login cookie from %s: %s", target.service, error)
        return []
    return [value.decode("latin-1") for key, value in answer.headers if key == b"set-cookie"]


async def _serve_websocket(websocket: WebSocket, web: WebContext, target: ServiceHost) -> None:
    if target is MISDIRECTED or foreign_request(websocket, target.origin):
        await websocket.close(code=4403)
        return
    principal = _identify(websocket, web, target)
    if principal is None:
        await websocket.close(code=4401)
        return
    try:
        upstream = resolve(web, target, raw_path(websocket.scope), websocket.url.query)
    except HTTPException as refused:
        await websocket.close(code=4000 + refused.status_code)
        return
    await forward_websocket(
        websocket, web, target.service, upstream, add_token=principal.via == "bearer"
    )
