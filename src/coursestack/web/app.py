"""The daemon's web application: REST API, dashboard pages, event streams, front door.

`create_app(daemon)` wires the parts (see each module):
- api.py        the REST API the CLI and the dashboard use (`/api/...`, OpenAPI schema)
- dashboard.py  server-rendered pages and the login flow
- events.py     server-sent events (state changes, log lines)
- front_door.py one origin per web service (`<service>.<instance>.localhost:<port>`),
                the login hand-off to it, and `/s/<name>/` redirecting there
- proxy.py      forwarding to a service: HTTP streamed, WebSockets bridged
- auth.py       bearer token, session cookies, CSRF, login back-off, password hash

Only `/api/health`, the login pages and the static assets (CSS/JS) need no login.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coursestack import __version__
from coursestack.supervisor import RUNNING_STATES
from coursestack.web import api, composer, dashboard, front_door
from coursestack.web.auth import Authenticator, check_listen_address
from coursestack.web.context import NotLoggedIn, WebContext, require_login
from coursestack.web.events import Broker
from coursestack.web.front_door import ServiceOrigins
from coursestack.web.origins import Origins
from coursestack.web.upstream import UpstreamPool

if TYPE_CHECKING:
    from coursestack.web.host import InstanceHost

#: Largest body accepted by the daemon's own routes (service origins allow more).
MAX_BODY = 64 * 1024
#: Paths that need no login (the route-enumeration test checks exactly these).
PUBLIC_PATHS = frozenset({"/api/health", "/login", "/login/code", "/static"})

_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


class Guard:
    """ASGI middleware: body size limits and security headers on the daemon's own pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Service origins never reach this middleware (see front_door.py): every request
        # here is for the daemon's own routes.
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        refusal: tuple[int, str] | None = None
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            refusal = (413, f"request body too large (limit {MAX_BODY} bytes)")
        elif length is None and b"chunked" in headers.get(b"transfer-encoding", b""):
            refusal = (411, "a Content-Length is required")
        if refusal is not None:
            response = JSONResponse({"detail": refusal[1]}, refusal[0])
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"),
                         (b"x-frame-options", b"DENY"),
                         (b"content-security-policy", _CSP.encode())]
                present = {key.lower() for key, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in extra if k not in present)]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(daemon: InstanceHost) -> FastAPI:
    """The FastAPI application of one daemon."""
    supervisor = daemon.supervisor
    assert supervisor is not None
    settings = daemon.spec.dashboard
    auth_enabled = bool(getattr(settings, "auth", True))
    check_listen_address(settings.host, auth_enabled)
    web = WebContext(daemon, supervisor, Authenticator(daemon.token, daemon.state, auth_enabled),
                     Origins(daemon.name, [name for name, unit in daemon.units.items()
                                           if unit.connection().web]))
    web.broker = Broker(supervisor, web.snapshot, web.view_dict)
    supervisor.add_listener(web.forget_views)
    # The front door's kept-alive connections to the services (no cookie jar: it serves
    # every browser and every service).
    proxy_client = UpstreamPool(connect_timeout=5.0, write_timeout=60.0)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        supervisor.remove_listener(web.forget_views)
        if web.broker is not None:
            web.broker.close()
        await proxy_client.aclose()

    app = FastAPI(title="coursestack", version=__version__, lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None,
                  description="Control one coursestack instance: its services, logs and "
                  "connection info. Every route but /api/health needs a login: the "
                  "instance token as `Authorization: Bearer <token>` (see run/daemon.json), "
                  "or a dashboard session cookie plus its `X-CSRF-Token` on POST.")
    app.state.web = web
    app.state.proxy_client = proxy_client
    app.add_middleware(Guard)
    app.add_middleware(ServiceOrigins)  # outermost: service origins never see the rest

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, _error: NotLoggedIn) -> Response:
        wants_page = (request.method == "GET" and not request.url.path.startswith("/api/")
                      and "text/html" in request.headers.get("accept", ""))
        if wants_page:
            return dashboard.login_redirect(request)
        return JSONResponse({"detail": "log in first: a valid token or session is needed"},
                            401, headers={"WWW-Authenticate": "Bearer"})

    @app.get("/api/openapi.json", include_in_schema=False,
             dependencies=[Depends(require_login)])
    async def openapi() -> dict[str, Any]:
        """The OpenAPI schema of this API."""
        return app.openapi()

    app.include_router(api.public)
    app.include_router(api.router)
    app.include_router(dashboard.public)
    app.include_router(dashboard.pages)
    app.include_router(composer.router)
    app.include_router(composer.pages)
    app.include_router(front_door.router)
    app.mount("/static", StaticFiles(directory=str(resources.files("coursestack.web") / "static")),
              name="static")
    _watch_shutdown(daemon, web)
    return app


def routes_of(app: FastAPI) -> list[BaseRoute]:
    """Every route the app serves, included routers flattened (for the auth test)."""
    found: list[BaseRoute] = []
    pending: list[BaseRoute] = list(app.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x
        if included is not None:
            pending[:0] = list(included.routes)
        else:
            found.append(route)
    return found


def _watch_shutdown(daemon: InstanceHost, web: WebContext) -> None:
    """End event streams once the daemon is stopping and every service has stopped."""

    async def watch() -> None:
        await daemon.shutdown_requested.wait()
        await web.supervisor.wait_settled(web.supervisor.services,
                                          lambda state: state not in RUNNING_STATES)
        if web.broker is not None:
            web.broker.close()

    with contextlib.suppress(RuntimeError):  # no running loop: a test building the app
        loop = asyncio.get_running_loop()
        web.watcher = loop.create_task(watch())
