"""The REST API (the CLI and the dashboard are both its clients)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from coursestack import __version__
from coursestack.connections import masked
from coursestack.logs import tail_lines
from coursestack.state import read_json
from coursestack.supervisor import State
from coursestack.web.auth import Principal
from coursestack.web.context import Context, ServiceView, require_login
from coursestack.web.events import follow_log
from coursestack.web.handoff import OPEN_LIFETIME

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class InstanceView(BaseModel):
    """The instance: which course, from where, and its services."""

    name: str
    course: str
    title: str
    spec: str
    state_folder: str
    url: str
    pid: int
    started: float
    version: str
    services: list[ServiceView]


class ActionResult(BaseModel):
    """What a start/stop/restart did."""

    service: str
    action: str
    state: str


class LogView(BaseModel):
    service: str
    lines: list[str]


class SessionView(BaseModel):
    """Who is calling, and the CSRF token its unsafe requests must carry."""

    via: str
    csrf_token: str | None


class LoginCode(BaseModel):
    """A one-time login code for a browser (`coursestack up --open`)."""

    code: str
    expires_in: float


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


Responses = dict[int | str, dict[str, Any]]

#: Every route but /api/health: no credential, no entry.
NOT_LOGGED_IN: Responses = {401: {"model": Problem, "description": "Not logged in: send the "
                                  "instance token as `Authorization: Bearer <token>`"}}
#: State-changing routes: a cookie session must send its CSRF token.
NO_CSRF: Responses = {403: {"model": Problem, "description": "A browser session sent no valid "
                            "`X-CSRF-Token`"}}
#: Routes that name a service.
NO_SUCH_SERVICE: Responses = {404: {"model": Problem, "description": "No service of that name"}}

public = APIRouter(prefix="/api", tags=["public"])
router = APIRouter(prefix="/api", dependencies=[Depends(require_login)], tags=["services"],
                   responses=NOT_LOGGED_IN)


@public.get("/health")
async def health() -> dict[str, str]:
    """Liveness of the daemon; the only route that needs no login."""
    return {"status": "ok", "version": __version__}


@router.get("/instance", response_model=InstanceView)
async def instance(web: Context) -> InstanceView:
    """The instance and every service."""
    daemon = web.daemon
    return InstanceView(
        name=daemon.name, course=daemon.spec.course.name, title=daemon.spec.course.title,
        spec=str(daemon.spec.path), state_folder=str(daemon.state.root), url=daemon.url,
        pid=web.pid, started=daemon.started, version=__version__, services=web.views())


@router.get("/session", response_model=SessionView)
async def session(request: Request, web: Context) -> SessionView:
    """How this request is logged in; a browser session also gets its CSRF token."""
    principal: Principal | None = web.auth.identify(request)
    assert principal is not None
    return SessionView(via=principal.via,
                       csrf_token=principal.session.csrf if principal.session else None)


@router.post("/login-code", response_model=LoginCode,
             responses={403: {"model": Problem, "description": "Only for the instance token"}})
async def login_code(request: Request, web: Context) -> LoginCode:
    """A code that logs a browser in once, within a minute, by a POST to `/login/code`
    (the CLI's `up --open` puts it in an owner-only local page, never on a command line)."""
    principal: Principal | None = web.auth.identify(request)
    if principal is None or principal.via != "bearer":
        raise HTTPException(403, "only the instance token may ask for a login code")
    return LoginCode(code=web.codes.issue("dashboard", OPEN_LIFETIME), expires_in=OPEN_LIFETIME)


@router.get("/services", response_model=list[ServiceView])
async def services(web: Context) -> Response:
    """Every service, in start order.

    Served pre-serialised from a short-lived cache (dropped on every state change), so
    heartbeat, uptime and memory may be up to half a second old.
    """
    return Response(web.services_json(), media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@router.get("/services/{name}", response_model=ServiceView, responses=NO_SUCH_SERVICE)
async def one_service(name: str, web: Context) -> ServiceView:
    """One service."""
    web.service_or_404(name)
    return web.view(name)


@router.post("/services/{name}/start", response_model=ActionResult,
             responses={**NO_CSRF, **NO_SUCH_SERVICE})
async def start(name: str, web: Context) -> ActionResult:
    """Start a service (and what it depends on)."""
    service = web.service_or_404(name)
    web.supervisor.start([name])
    return ActionResult(service=name, action="start", state=str(service.status.state))


@router.post("/services/{name}/stop", response_model=ActionResult,
             responses={**NO_CSRF, **NO_SUCH_SERVICE})
async def stop(name: str, web: Context) -> ActionResult:
    """Stop a service (waits until it has stopped)."""
    service = web.service_or_404(name)
    await service.stop()
    return ActionResult(service=name, action="stop", state=str(service.status.state))


@router.post("/services/{name}/restart", response_model=ActionResult,
             responses={**NO_CSRF, **NO_SUCH_SERVICE})
async def restart(name: str, web: Context) -> ActionResult:
    """Stop a service, then start it again."""
    service = web.service_or_404(name)
    await web.supervisor.restart(name)
    return ActionResult(service=name, action="restart", state=str(service.status.state))


@router.post("/up", response_model=list[ServiceView], responses=NO_CSRF)
async def up(web: Context) -> list[ServiceView]:
    """Start every service that `up` starts (those not already running)."""
    web.supervisor.start(web.daemon.autostart())
    return web.views()


@router.post("/restart-stopped", response_model=list[ServiceView], responses=NO_CSRF)
async def restart_stopped(web: Context) -> list[ServiceView]:
    """Start again every service that has stopped or failed (and was meant to run)."""
    wanted = set(web.daemon.autostart())
    chosen = [s.name for s in web.supervisor.statuses()
              if s.state in (State.STOPPED, State.FAILED)
              and (s.name in wanted or s.started_at is not None)]
    web.supervisor.start(chosen)
    return web.views()


@router.post("/shutdown", responses=NO_CSRF)
async def shutdown(web: Context) -> dict[str, str]:
    """Stop every service and the daemon."""
    web.daemon.shutdown_requested.set()
    return {"status": "stopping"}


@router.get("/services/{name}/logs", response_model=LogView, responses=NO_SUCH_SERVICE)
async def logs(name: str, web: Context,
               lines: Annotated[int, Query(ge=1, le=10000)] = 200) -> LogView:
    """The last lines of a service's log."""
    web.service_or_404(name)
    return LogView(service=name, lines=tail_lines(web.daemon.state.log_file(name), lines))


@router.get("/services/{name}/logs/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, **NO_SUCH_SERVICE})
async def log_stream(name: str, web: Context,
                     lines: Annotated[int, Query(ge=0, le=10000)] = 200) -> StreamingResponse:
    """A service's log as server-sent events: `lines` events of new lines, as they come."""
    web.service_or_404(name)
    path = web.daemon.state.log_file(name)
    assert web.broker is not None
    stream = follow_log(path, web.broker.closed, tail_lines(path, lines))
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/connections")
async def connections(web: Context, reveal: bool = False) -> dict[str, Any]:
    """What notebooks see; passwords and tokens masked unless `reveal`."""
    document = read_json(web.daemon.state.connections_file, {}) or {}
    return document if reveal else masked(document)


@router.get("/events/history")
async def history(web: Context) -> list[dict[str, Any]]:
    """The latest state changes, oldest first."""
    return [event.as_dict() for event in web.supervisor.history]


@router.get("/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}})
async def events(web: Context) -> StreamingResponse:
    """State changes as server-sent events: a `snapshot` of every service first, then a
    `state` event per change (the event and the service), and a `tick` every 2 s with
    fresh heartbeats, uptime and memory."""
    assert web.broker is not None
    return StreamingResponse(web.broker.stream(), media_type="text/event-stream",
                             headers=SSE_HEADERS)


@router.post("/content/update", responses={**NO_CSRF, 409: {
    "model": Problem, "description": "The update could not run (no `[content]` source, "
    "source unreachable, ...); nothing was changed"}})
async def update_content(web: Context, check: bool = False) -> dict[str, Any]:
    """Update the course material (as `coursestack update`): the report, file by file."""
    from fastapi import HTTPException

    from coursestack.content.update import run_update
    from coursestack.errors import UserError

    try:
        report = await asyncio.to_thread(run_update, web.daemon.spec, web.daemon.state, check)
    except UserError as error:
        raise HTTPException(409, detail=error.render()) from None
    return report.as_dict()
