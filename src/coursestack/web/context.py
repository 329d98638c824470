"""What every part of the web layer shares: the daemon, auth, the event broker, views."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from pydantic import TypeAdapter
from starlette.exceptions import HTTPException
from starlette.requests import Request

from coursestack.api_types import ServiceView
from coursestack.procs import process_tree_memory
from coursestack.supervisor import Event, Service, Supervisor
from coursestack.web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    Authenticator,
    Principal,
    foreign_request,
)
from coursestack.web.events import Broker
from coursestack.web.handoff import OneTimeCodes
from coursestack.web.origins import Origins

if TYPE_CHECKING:
    from coursestack.web.host import InstanceHost


MEMORY_TTL = 1.0
#: How long the serialised answer of GET /api/services is reused (any state change
#: drops it at once, so only heartbeat, uptime and memory can be this much older).
SERVICES_TTL = 0.5
#: Largest urlencoded form read to find a CSRF token (the daemon's body limit is 64 KiB).
MAX_CSRF_FORM = 64 * 1024


class NotLoggedIn(Exception):
    """The request carries no valid credential."""


@dataclass
class WebContext:
    """One daemon's web layer state."""

    daemon: InstanceHost
    supervisor: Supervisor
    auth: Authenticator
    origins: Origins = field(default_factory=lambda: Origins("instance", []))
    codes: OneTimeCodes = field(default_factory=OneTimeCodes)
    broker: Broker | None = None
    watcher: asyncio.Task[None] | None = None
    #: pid -> (when measured, bytes): walking a process tree is costly under load.
    _memory: dict[int, tuple[float, int | None]] = field(default_factory=dict)
    #: (when made, JSON) of every service, for GET /api/services under load.
    _services_json: tuple[float, bytes] | None = None

    def forget_views(self, _event: Event | None = None) -> None:
        """Drop cached answers (a supervisor listener: called on every state change)."""
        self._services_json = None

    def services_json(self) -> bytes:
        """Every service's view as JSON, reused for `SERVICES_TTL` seconds."""
        now = time.monotonic()
        cached = self._services_json
        if cached is not None and 0 <= now - cached[0] < SERVICES_TTL:
            return cached[1]
        body = _VIEW_LIST.dump_json(self.views())
        self._services_json = (now, body)
        return body

    def memory(self, pid: int | None) -> int | None:
        if pid is None:
            return None
        now = time.monotonic()
        cached = self._memory.get(pid)
        if cached is not None and now - cached[0] < MEMORY_TTL:
            return cached[1]
        value = process_tree_memory(pid)
        if len(self._memory) > 256:
            self._memory.clear()
        self._memory[pid] = (now, value)
        return value

    def daemon_port(self) -> int | None:
        """The port the daemon listens on (None before it listens: a test's app)."""
        port = self.daemon.url.rstrip("/").rpartition(":")[2]
        return int(port) if port.isdigit() else None

    def proxy_url(self, name: str) -> str:
        """Where service `name` lives at the front door, on its own origin."""
        unit = self.daemon.units[name]
        home = "/" if unit.proxy_strips_prefix else unit.web_path()
        return self.origins.host_of(name, self.daemon_port()).origin + home

    def service_or_404(self, name: str) -> Service:
        service = self.supervisor.services.get(name)
        if service is None:
            raise HTTPException(
                404,
                f"no service named {name!r}; services: "
                + ", ".join(sorted(self.supervisor.services)),
            )
        return service

    def view(self, name: str) -> ServiceView:
        status = self.supervisor.services[name].status
        unit = self.daemon.units[name]
        connection = unit.connection()
        running = status.pid is not None
        return ServiceView(
            name=name,
            kind=status.kind,
            state=str(status.state),
            detail=status.detail,
            reason=status.reason,
            pid=status.pid,
            port=unit.port,
            since=status.since,
            uptime=(time.time() - status.started_at) if running and status.started_at else None,
            heartbeat=status.heartbeat,
            restarts=status.restarts,
            memory=self.memory(status.pid),
            web=connection.web,
            url=connection.url,
            proxy_path=f"/s/{name}/" if connection.web else "",
            proxy_url=self.proxy_url(name) if connection.web else "",
            start=str(unit.spec.start),
            last_log=status.last_log,
            label=str(connection.extra.get("label", "")),
            note=status.note,
        )

    def views(self) -> list[ServiceView]:
        return [self.view(s.name) for s in self.supervisor.statuses()]

    def view_dict(self, name: str) -> dict[str, Any]:
        return self.view(name).model_dump()

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{**v.model_dump(), "now": now} for v in self.views()]

    @property
    def pid(self) -> int:
        return os.getpid()


_VIEW_LIST = TypeAdapter(list[ServiceView])


def get_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.web
    return context


async def _form_csrf(request: Request) -> str | None:
    """The `csrf_token` field of an urlencoded form (a plain HTML form has no headers)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = await request.body()  # kept by the request: the route can still read the form
    if len(body) > MAX_CSRF_FORM:
        return None
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    values = fields.get(CSRF_FIELD)
    return values[0] if values else None


async def require_login(request: Request) -> Principal:
    """Any valid credential; a cookie session must come from a page of the dashboard's
    own origin, and add its CSRF token to unsafe methods (the `X-CSRF-Token` header, or
    the `csrf_token` field of a form)."""
    context = get_context(request)
    principal = context.auth.identify(request)
    if principal is None:
        raise NotLoggedIn()
    own_origin = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if principal.via == "session" and foreign_request(request, own_origin):
        raise HTTPException(403, "refused: sent by a page of another origin")
    if request.method not in SAFE_METHODS:
        supplied = request.headers.get(CSRF_HEADER)
        if supplied is None and principal.via == "session":
            supplied = await _form_csrf(request)
        if not context.auth.csrf_ok(principal, supplied):
            raise HTTPException(403, "missing or invalid CSRF token: reload the page and retry")
    return principal
