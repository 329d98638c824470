"""What the daemon's HTTP API answers, as types both sides share.

The server (web/) builds its answers from these models and its OpenAPI document from
their JSON schemas; the client (instances.DaemonClient, used by the CLI, doctor, backup
and the bundle) parses answers into them. One definition, so the two cannot drift.
Low in the layers: it needs nothing but pydantic.
"""

from __future__ import annotations

from pydantic import BaseModel


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
    #: The dashboard's link to this service ("" if it is not a web service): it logs the
    #: browser into the service's own origin and redirects there.
    proxy_path: str = ""
    #: The service's own origin at the front door, e.g.
    #: `http://jupyter.sample.localhost:8700/s/jupyter/` ("" if not a web service).
    proxy_url: str = ""
    start: str
    last_log: list[str]
    #: How the service must be described, e.g. "MongoDB-compatible stand-in, not MongoDB".
    label: str = ""
    #: What else to know, e.g. output dropped because its log could not be written.
    note: str = ""


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
    """The last lines of a service's log."""

    service: str
    lines: list[str]


class EventView(BaseModel):
    """One state change of a service."""

    time: float
    service: str
    state: str
    previous: str
    detail: str = ""
    reason: str = ""


class SessionView(BaseModel):
    """Who is calling, and the CSRF token its unsafe requests must carry."""

    via: str
    csrf_token: str | None


class LoginCode(BaseModel):
    """A one-time login code for a browser (`coursestack up --open`)."""

    code: str
    expires_in: float


class Health(BaseModel):
    """The daemon answers."""

    status: str
    version: str


class Stopping(BaseModel):
    """The daemon is stopping every service, then itself."""

    status: str


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str
