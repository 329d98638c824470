"""The REST API (the CLI and the dashboard are both its clients).

Its answers are the models of coursestack.api_types, which the CLI's client parses.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse

from coursestack import __version__
from coursestack.api_types import (
    ActionResult,
    EventView,
    Health,
    InstanceView,
    LoginCode,
    LogView,
    Problem,
    ServiceView,
    SessionView,
    Stopping,
)
from coursestack.connections import masked
from coursestack.logs import tail_lines
from coursestack.state import read_json
from coursestack.supervisor import State
from coursestack.web.events import follow_log
from coursestack.web.handoff import OPEN_LIFETIME
from coursestack.web.routing import Answer, Call, Responses, Routes

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
EVENT_STREAM = ("text/event-stream",)

#: Every route but /api/health: no credential, no entry.
NOT_LOGGED_IN: Responses = {
    401: Answer(
        Problem, "Not logged in: send the instance token as `Authorization: Bearer <token>`"
    )
}
#: State-changing routes: a cookie session must send its CSRF token.
NO_CSRF: Responses = {403: Answer(Problem, "A browser session sent no valid `X-CSRF-Token`")}
#: Routes that name a service.
NO_SUCH_SERVICE: Responses = {404: Answer(Problem, "No service of that name")}


class LogQuery(BaseModel):
    lines: int = Field(200, ge=1, le=10000)


class LogStreamQuery(BaseModel):
    lines: int = Field(200, ge=0, le=10000)


class RevealQuery(BaseModel):
    reveal: bool = False


class CheckQuery(BaseModel):
    check: bool = False


public = Routes("/api", tags=["public"], login=False)
router = Routes("/api", tags=["services"], responses=NOT_LOGGED_IN)


@public.get("/health", response=Health)
async def health(_call: Call) -> Health:
    """Liveness of the daemon; the only route that needs no login."""
    return Health(status="ok", version=__version__)


@router.get("/instance", response=InstanceView)
async def instance(call: Call) -> InstanceView:
    """The instance and every service."""
    web = call.web
    daemon = web.daemon
    return InstanceView(
        name=daemon.name,
        course=daemon.spec.course.name,
        title=daemon.spec.course.title,
        spec=str(daemon.spec.path),
        state_folder=str(daemon.state.root),
        url=daemon.url,
        pid=web.pid,
        started=daemon.started,
        version=__version__,
        services=web.views(),
    )


@router.get("/session", response=SessionView)
async def session(call: Call) -> SessionView:
    """How this request is logged in; a browser session also gets its CSRF token."""
    principal = call.login
    return SessionView(
        via=principal.via, csrf_token=principal.session.csrf if principal.session else None
    )


@router.post(
    "/login-code",
    response=LoginCode,
    responses={403: Answer(Problem, "Only for the instance token")},
)
async def login_code(call: Call) -> LoginCode:
    """A code that logs a browser in once, within a minute, by a POST to `/login/code`
    (the CLI's `up --open` puts it in an owner-only local page, never on a command line)."""
    if call.login.via != "bearer":
        raise HTTPException(403, "only the instance token may ask for a login code")
    return LoginCode(
        code=call.web.codes.issue("dashboard", OPEN_LIFETIME), expires_in=OPEN_LIFETIME
    )


@router.get("/services", response=list[ServiceView])
async def services(call: Call) -> Response:
    """Every service, in start order.

    Served pre-serialised from a short-lived cache (dropped on every state change), so
    heartbeat, uptime and memory may be up to half a second old.
    """
    return Response(
        call.web.services_json(),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


@router.get("/services/{name}", response=ServiceView, responses=NO_SUCH_SERVICE)
async def one_service(call: Call) -> ServiceView:
    """One service."""
    name = call.path("name")
    call.web.service_or_404(name)
    return call.web.view(name)


@router.post(
    "/services/{name}/start", response=ActionResult, responses={**NO_CSRF, **NO_SUCH_SERVICE}
)
async def start(call: Call) -> ActionResult:
    """Start a service (and what it depends on)."""
    name = call.path("name")
    service = call.web.service_or_404(name)
    call.web.supervisor.start([name])
    return ActionResult(service=name, action="start", state=str(service.status.state))


@router.post(
    "/services/{name}/stop", response=ActionResult, responses={**NO_CSRF, **NO_SUCH_SERVICE}
)
async def stop(call: Call) -> ActionResult:
    """Stop a service (waits until it has stopped)."""
    name = call.path("name")
    service = call.web.service_or_404(name)
    await service.stop()
    return ActionResult(service=name, action="stop", state=str(service.status.state))


@router.post(
    "/services/{name}/restart", response=ActionResult, responses={**NO_CSRF, **NO_SUCH_SERVICE}
)
async def restart(call: Call) -> ActionResult:
    """Stop a service, then start it again."""
    name = call.path("name")
    service = call.web.service_or_404(name)
    await call.web.supervisor.restart(name)
    return ActionResult(service=name, action="restart", state=str(service.status.state))


@router.post("/up", response=list[ServiceView], responses=NO_CSRF)
async def up(call: Call) -> list[ServiceView]:
    """Start every service that `up` starts (those not already running)."""
    call.web.supervisor.start(call.web.daemon.autostart())
    return call.web.views()


@router.post("/restart-stopped", response=list[ServiceView], responses=NO_CSRF)
async def restart_stopped(call: Call) -> list[ServiceView]:
    """Start again every service that has stopped or failed (and was meant to run)."""
    web = call.web
    wanted = set(web.daemon.autostart())
    chosen = [
        s.name
        for s in web.supervisor.statuses()
        if s.state in (State.STOPPED, State.FAILED)
        and (s.name in wanted or s.started_at is not None)
    ]
    web.supervisor.start(chosen)
    return web.views()


@router.post("/shutdown", response=Stopping, responses=NO_CSRF)
async def shutdown(call: Call) -> Stopping:
    """Stop every service and the daemon."""
    call.web.daemon.shutdown_requested.set()
    return Stopping(status="stopping")


@router.get("/services/{name}/logs", response=LogView, query=LogQuery, responses=NO_SUCH_SERVICE)
async def logs(call: Call) -> LogView:
    """The last lines of a service's log."""
    name = call.path("name")
    call.web.service_or_404(name)
    lines = call.query_as(LogQuery).lines
    return LogView(service=name, lines=tail_lines(call.web.daemon.state.log_file(name), lines))


@router.get(
    "/services/{name}/logs/stream",
    media_types=EVENT_STREAM,
    query=LogStreamQuery,
    responses=NO_SUCH_SERVICE,
)
async def log_stream(call: Call) -> StreamingResponse:
    """A service's log as server-sent events: `lines` events of new lines, as they come."""
    name = call.path("name")
    web = call.web
    web.service_or_404(name)
    path = web.daemon.state.log_file(name)
    assert web.broker is not None
    lines = call.query_as(LogStreamQuery).lines
    stream = follow_log(path, web.broker.closed, tail_lines(path, lines))
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/connections", response=dict[str, Any], query=RevealQuery)
async def connections(call: Call) -> dict[str, Any]:
    """What notebooks see; passwords and tokens masked unless `reveal`."""
    document = read_json(call.web.daemon.state.connections_file, {}) or {}
    return document if call.query_as(RevealQuery).reveal else masked(document)


@router.get("/events/history", response=list[EventView])
async def history(call: Call) -> list[EventView]:
    """The latest state changes, oldest first."""
    return [EventView(**event.as_dict()) for event in call.web.supervisor.history]


@router.get("/events", media_types=EVENT_STREAM)
async def events(call: Call) -> StreamingResponse:
    """State changes as server-sent events: a `snapshot` of every service first, then a
    `state` event per change (the event and the service), and a `tick` every 2 s with
    fresh heartbeats, uptime and memory."""
    assert call.web.broker is not None
    return StreamingResponse(
        call.web.broker.stream(), media_type="text/event-stream", headers=SSE_HEADERS
    )


@router.post(
    "/content/update",
    response=dict[str, Any],
    query=CheckQuery,
    responses={
        **NO_CSRF,
        409: Answer(
            Problem,
            "The update could not run (no `[content]` source, "
            "source unreachable, ...); nothing was changed",
        ),
    },
)
async def update_content(call: Call) -> dict[str, Any]:
    """Update the course material (as `coursestack update`): the report, file by file."""
    from coursestack.content.update import run_update
    from coursestack.errors import UserError

    web = call.web
    check = call.query_as(CheckQuery).check
    try:
        report = await asyncio.to_thread(run_update, web.daemon.spec, web.daemon.state, check)
    except UserError as error:
        raise HTTPException(409, detail=error.render()) from None
    return report.as_dict()
