"""The daemon's web application: REST API, dashboard pages, event streams, front door.

`create_app(daemon)` wires the parts (see each module):
- api.py        the REST API the CLI and the dashboard use (`/api/...`)
- routing.py    the route table: Starlette routes and the OpenAPI document from one list
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
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coursestack import __version__
from coursestack.supervisor import RUNNING_STATES
from coursestack.web import api, composer, dashboard, front_door
from coursestack.web.auth import Authenticator, check_listen_address
from coursestack.web.context import NotLoggedIn, WebContext
from coursestack.web.events import Broker
from coursestack.web.front_door import ServiceOrigins
from coursestack.web.origins import Origins
from coursestack.web.routing import Call, Operation, Routes, openapi_document
from coursestack.web.upstream import UpstreamPool

if TYPE_CHECKING:
    from coursestack.web.host import InstanceHost

#: Largest body accepted by the daemon's own routes (service origins allow more).
MAX_BODY = 64 * 1024
#: Paths that need no login (the route-enumeration test checks exactly these).
PUBLIC_PATHS = frozenset({"/api/health", "/login", "/login/code", "/static"})

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


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
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                    (b"content-security-policy", _CSP.encode()),
                ]
                present = {key.lower() for key, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in extra if k not in present),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


DESCRIPTION = (
    "Control one coursestack instance: its services, logs and connection info. "
    "Every route but /api/health needs a login: the instance token as "
    "`Authorization: Bearer <token>` (see run/daemon.json), or a dashboard session "
    "cookie plus its `X-CSRF-Token` on POST."
)

#: Every table of routes, in matching order (the first route that matches wins).
TABLES: tuple[Routes, ...] = (
    api.public,
    api.router,
    dashboard.public,
    dashboard.pages,
    composer.router,
    composer.pages,
    front_door.router,
)

openapi_routes = Routes("/api", in_schema=False)


@openapi_routes.get("/openapi.json")
async def openapi(_call: Call) -> JSONResponse:
    """The OpenAPI document of this API (made on request: nothing kept in memory)."""
    return JSONResponse(
        openapi_document(
            operations(), title="coursestack", version=__version__, description=DESCRIPTION
        )
    )


def operations() -> list[Operation]:
    """Every operation the app serves, in matching order."""
    return [op for table in (openapi_routes, *TABLES) for op in table.operations]


async def _not_logged_in(request: Request, _error: Exception) -> Response:
    wants_page = (
        request.method == "GET"
        and not request.url.path.startswith("/api/")
        and "text/html" in request.headers.get("accept", "")
    )
    if wants_page:
        return dashboard.login_redirect(request)
    return JSONResponse(
        {"detail": "log in first: a valid token or session is needed"},
        401,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def _refused(_request: Request, error: Exception) -> Response:
    """Every HTTPException as JSON `{"detail": ...}` (the API's `Problem`)."""
    assert isinstance(error, HTTPException)
    if error.status_code in (204, 304):
        return Response(status_code=error.status_code, headers=error.headers)
    return JSONResponse({"detail": error.detail}, error.status_code, headers=error.headers)


def create_app(daemon: InstanceHost) -> Starlette:
    """The Starlette application of one daemon."""
    supervisor = daemon.supervisor
    assert supervisor is not None
    settings = daemon.spec.dashboard
    auth_enabled = bool(getattr(settings, "auth", True))
    check_listen_address(settings.host, auth_enabled)
    web = WebContext(
        daemon,
        supervisor,
        Authenticator(daemon.token, daemon.state, auth_enabled),
        Origins(
            daemon.name, [name for name, unit in daemon.units.items() if unit.connection().web]
        ),
    )
    web.broker = Broker(supervisor, web.snapshot, web.view_dict)
    supervisor.add_listener(web.forget_views)
    # The front door's kept-alive connections to the services (no cookie jar: it serves
    # every browser and every service).
    proxy_client = UpstreamPool(connect_timeout=5.0, write_timeout=60.0)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        supervisor.remove_listener(web.forget_views)
        if web.broker is not None:
            web.broker.close()
        await proxy_client.aclose()

    routes: list[BaseRoute] = [op.route() for op in operations()]
    routes.append(
        Mount(
            "/static",
            StaticFiles(directory=str(resources.files("coursestack.web") / "static")),
            name="static",
        )
    )
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        # Outermost first: service origins never see the rest.
        middleware=[Middleware(ServiceOrigins), Middleware(Guard)],
        exception_handlers={NotLoggedIn: _not_logged_in, HTTPException: _refused},
    )
    app.state.web = web
    app.state.proxy_client = proxy_client
    _watch_shutdown(daemon, web)
    return app


def routes_of(app: Starlette) -> list[BaseRoute]:
    """Every route the app serves (for the auth test)."""
    return list(app.routes)


def _watch_shutdown(daemon: InstanceHost, web: WebContext) -> None:
    """End event streams once the daemon is stopping and every service has stopped."""

    async def watch() -> None:
        await daemon.shutdown_requested.wait()
        await web.supervisor.wait_settled(
            web.supervisor.services, lambda state: state not in RUNNING_STATES
        )
        if web.broker is not None:
            web.broker.close()

    with contextlib.suppress(RuntimeError):  # no running loop: a test building the app
        loop = asyncio.get_running_loop()
        web.watcher = loop.create_task(watch())
