"""The daemon's HTTP API (the CLI and the dashboard are both its clients)."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel

from coursestack import __version__
from coursestack.connections import masked
from coursestack.logs import tail_lines
from coursestack.procs import process_tree_memory
from coursestack.state import read_json

if TYPE_CHECKING:
    from coursestack.daemon import Daemon


class ServiceView(BaseModel):
    """One service as the API shows it."""

    name: str
    kind: str
    state: str
    detail: str
    reason: str
    pid: int | None
    port: int | None
    since: float
    uptime: float | None
    heartbeat: float | None
    restarts: int
    memory: int | None
    web: bool
    url: str
    start: str
    last_log: list[str]


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


def create_app(daemon: Daemon) -> FastAPI:
    """The FastAPI application of one daemon."""
    app = FastAPI(title="coursestack", version=__version__,
                  description="Control one coursestack instance: its services, logs and "
                  "connection info. Every route but /api/health needs the instance token.")
    supervisor = daemon.supervisor
    assert supervisor is not None

    def require_auth(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(credential, daemon.token):
            return
        raise HTTPException(401, "log in first: a valid token is needed",
                            headers={"WWW-Authenticate": "Bearer"})

    api = APIRouter(prefix="/api", dependencies=[Depends(require_auth)])

    def service_or_404(name: str) -> Any:
        service = supervisor.services.get(name)
        if service is None:
            raise HTTPException(404, f"no service named {name!r}; services: "
                                + ", ".join(sorted(supervisor.services)))
        return service

    def view(name: str) -> ServiceView:
        service = supervisor.services[name]
        status = service.status
        unit = daemon.units[name]
        connection = unit.connection()
        running = status.pid is not None
        return ServiceView(
            name=name, kind=status.kind, state=str(status.state), detail=status.detail,
            reason=status.reason, pid=status.pid, port=unit.port, since=status.since,
            uptime=(time.time() - status.started_at) if running and status.started_at else None,
            heartbeat=status.heartbeat, restarts=status.restarts,
            memory=process_tree_memory(status.pid) if status.pid else None,
            web=connection.web, url=connection.url, start=str(unit.spec.start),
            last_log=status.last_log)

    @app.get("/api/health", tags=["public"])
    async def health() -> dict[str, str]:
        """Liveness of the daemon; the only route that needs no login."""
        return {"status": "ok", "version": __version__}

    @api.get("/instance", response_model=InstanceView)
    async def instance() -> InstanceView:
        """The instance and every service."""
        return InstanceView(
            name=daemon.name, course=daemon.spec.course.name, title=daemon.spec.course.title,
            spec=str(daemon.spec.path), state_folder=str(daemon.state.root), url=daemon.url,
            pid=__import__("os").getpid(), started=daemon.started, version=__version__,
            services=[view(s.name) for s in supervisor.statuses()])

    @api.get("/services", response_model=list[ServiceView])
    async def services() -> list[ServiceView]:
        """Every service, in start order."""
        return [view(s.name) for s in supervisor.statuses()]

    @api.get("/services/{name}", response_model=ServiceView)
    async def one_service(name: str) -> ServiceView:
        """One service."""
        service_or_404(name)
        return view(name)

    @api.post("/services/{name}/start", response_model=ActionResult)
    async def start(name: str) -> ActionResult:
        """Start a service (and what it depends on)."""
        service_or_404(name)
        supervisor.start([name])
        return ActionResult(service=name, action="start",
                            state=str(supervisor.services[name].status.state))

    @api.post("/services/{name}/stop", response_model=ActionResult)
    async def stop(name: str) -> ActionResult:
        """Stop a service (waits until it has stopped)."""
        service_or_404(name)
        await supervisor.services[name].stop()
        return ActionResult(service=name, action="stop",
                            state=str(supervisor.services[name].status.state))

    @api.post("/services/{name}/restart", response_model=ActionResult)
    async def restart(name: str) -> ActionResult:
        """Stop a service, then start it again."""
        service_or_404(name)
        await supervisor.restart(name)
        return ActionResult(service=name, action="restart",
                            state=str(supervisor.services[name].status.state))

    @api.post("/up", response_model=list[ServiceView])
    async def up() -> list[ServiceView]:
        """Start every service that `up` starts (those not already running)."""
        supervisor.start(daemon.autostart())
        return [view(s.name) for s in supervisor.statuses()]

    @api.post("/shutdown")
    async def shutdown() -> dict[str, str]:
        """Stop every service and the daemon."""
        daemon.shutdown_requested.set()
        return {"status": "stopping"}

    @api.get("/services/{name}/logs", response_model=LogView)
    async def logs(name: str,
                   lines: Annotated[int, Query(ge=1, le=10000)] = 200) -> LogView:
        """The last lines of a service's log."""
        service_or_404(name)
        return LogView(service=name, lines=tail_lines(daemon.state.log_file(name), lines))

    @api.get("/connections")
    async def connections(reveal: bool = False) -> dict[str, Any]:
        """What notebooks see; passwords and tokens masked unless `reveal`."""
        document = read_json(daemon.state.connections_file, {}) or {}
        return document if reveal else masked(document)

    @api.get("/events/history")
    async def history() -> list[dict[str, Any]]:
        """The latest state changes, oldest first."""
        return [event.as_dict() for event in supervisor.history]

    app.include_router(api)
    return app
