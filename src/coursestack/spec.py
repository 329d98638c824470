"""Load and validate a course spec (`course.toml`) into typed models.

Every setting carries its own help text (`Field(description=...)`): it is what
`docs/spec.md` documents and what error hints quote. Validation happens in two steps so
that errors name the service and key a person wrote: first the course-level table, then
each service against the model of its `kind`. All errors are collected and reported
together, each with the file, the line and a hint.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from coursestack.errors import SpecError
from coursestack.spec_errors import (
    Problem,
    did_you_mean,
    line_of_decode_error,
    located,
    problems_from,
    render_problems,
    strip_position,
)
from coursestack.units import parse_size

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,29}$"
_NAME_RE = re.compile(NAME_PATTERN)


def _check_size(value: str | None) -> str | None:
    """Refuse a size such as "1G" that is not one (ValueError says why)."""
    if value is not None:
        parse_size(value)
    return value


class StartPolicy(StrEnum):
    """When a service starts."""

    ALWAYS = "always"
    MANUAL = "manual"
    ON_DEMAND = "on-demand"


class RestartPolicy(StrEnum):
    """What the supervisor does when a service's process exits on its own."""

    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    NEVER = "never"


class DependencyCondition(StrEnum):
    """What a dependent waits for."""

    READY = "ready"
    STARTED = "started"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CourseInfo(_Strict):
    """The `[course]` table."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)] = Field(
        description="Identifier of the course: lowercase letters, digits and dashes, "
        "starting with a letter, at most 30 characters. Names the default instance."
    )
    title: str = Field(default="", description="Human-readable course title.")
    down_timeout: float = Field(
        default=45.0,
        gt=0,
        description="Seconds `coursestack down` may take for all services together; "
        "whatever still runs at the end is killed (SIGKILL), so `down` always returns.",
    )
    memory_budget: str | None = Field(
        default=None,
        description='Memory the whole course may use, e.g. "1G" or "512M" (reported by '
        "`coursestack plan` and `coursestack doctor`).",
    )

    @field_validator("memory_budget")
    @classmethod
    def _is_a_size(cls, value: str | None) -> str | None:
        return _check_size(value)


class DashboardSettings(_Strict):
    """The `[dashboard]` table: where the instance's daemon listens."""

    port: int = Field(
        default=8700,
        ge=1,
        le=65535,
        description="Preferred port of the dashboard and API; a free one is chosen if taken.",
    )
    host: str = Field(
        default="127.0.0.1",
        description="Address the dashboard listens on. Loopback by default; another "
        "address is refused when `auth` is off.",
    )
    auth: bool = Field(
        default=True,
        description="Require login. Turn off only for throw-away containers; refused on "
        "an address other than loopback.",
    )
    tls: Literal["auto", "self-signed", "off"] = Field(
        default="auto",
        description='HTTPS for the dashboard. "auto": a self-signed certificate (made on '
        "first use, in run/tls/) when `host` is not loopback, plain HTTP on loopback; "
        '"self-signed": always; "off": never. `tls_cert` and `tls_key` take precedence.',
    )
    tls_cert: str = Field(
        default="",
        description="Certificate file (PEM) for HTTPS, relative to the course.toml; with "
        "`tls_key`.",
    )
    tls_key: str = Field(default="", description="Private key file (PEM) of `tls_cert`.")

    @model_validator(mode="after")
    def _cert_with_key(self) -> DashboardSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: give both files")
        return self


class LogSettings(_Strict):
    """The `[logs]` table: how big service logs may grow."""

    max_size: str = Field(
        default="10M",
        description='Size at which a service\'s log is rotated, e.g. "10M".',
    )
    keep: int = Field(default=3, ge=0, le=50, description="Rotated logs kept per service.")
    rate: str = Field(
        default="4M",
        description="Most log output per second and service; more is dropped and counted "
        "(the status and the log say how much), never left in the pipe, so a runaway "
        "service cannot fill the disk, and nothing that logs ever blocks.",
    )

    @field_validator("max_size", "rate")
    @classmethod
    def _is_a_size(cls, value: str) -> str:
        _check_size(value)
        return value


class ProbeSettings(_Strict):
    """How the supervisor decides that a `command` service is ready."""

    type: Literal["tcp", "http", "exec", "none"] = Field(
        default="tcp",
        description='"tcp": the port accepts a connection; "http": GET `path` answers '
        'below 500 (or `status`); "exec": `command` exits 0; "none": ready once started.',
    )
    path: str = Field(default="/", description='URL path for an "http" probe.')
    status: int | None = Field(
        default=None, description='Exact HTTP status an "http" probe expects.'
    )
    command: list[str] = Field(
        default_factory=list, description='Program and arguments for an "exec" probe.'
    )


class ServiceSpec(_Strict):
    """Settings every service has, whatever its kind."""

    KIND: ClassVar[str] = ""
    #: Kinds whose processes speak HTTP, so the front door can proxy them.
    WEB: ClassVar[bool] = False

    kind: str = Field(
        description="What the service is: jupyter, postgres, mongodb, "
        "mongodb-lite, openrefine or command."
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Preferred port. If it is taken, a free one is chosen and handed to "
        "notebooks through environment variables and `connections.json`.",
    )
    depends_on: dict[str, DependencyCondition] = Field(
        default_factory=dict,
        description="Services that must be up first: a list of names (each waits for "
        '"ready") or a table of name = "ready" | "started".',
    )
    start: StartPolicy = Field(
        default=StartPolicy.ALWAYS,
        description='"always": started by `coursestack up`; "manual": only on request; '
        '"on-demand": on the first request through the front door.',
    )
    restart: RestartPolicy = Field(
        default=RestartPolicy.ON_FAILURE,
        description='"on-failure": restart after a crash; "always": also after a clean '
        'exit; "never": leave it stopped.',
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables for the service's process.",
    )
    start_timeout: float = Field(
        default=90.0,
        gt=0,
        description="Seconds a start may take before it counts as a failed start.",
    )
    stop_timeout: float | None = Field(
        default=None,
        gt=0,
        description="Seconds between the stop signal and SIGKILL (the kind's default if unset).",
    )
    max_restarts: int = Field(
        default=5,
        ge=0,
        description="Starts in a row that fail to become ready (exit, or not ready within "
        '`start_timeout`) before the service is marked "failed". A service that became '
        "ready between crashes is restarted (within `burst`).",
    )
    burst: int = Field(
        default=5,
        ge=1,
        description="Most starts within `interval` seconds; one more and the service is "
        '"failed" (a crash loop), like StartLimitBurst of systemd.',
    )
    interval: float = Field(
        default=10.0,
        gt=0,
        description="The window, in seconds, in which `burst` starts are counted "
        "(systemd's StartLimitIntervalSec).",
    )
    stable_after: float = Field(
        default=1.0,
        ge=0,
        description="Seconds a service must stay ready for its next crash to count as a "
        "new one: restarted at once, with the backoff back at its start. Quicker crashes "
        "wait 1, 2, 4… up to 30 s (like supervisord's startsecs).",
    )
    probe_interval: float = Field(
        default=5.0, gt=0, description="Seconds between health probes once ready."
    )
    liveness_failures: int = Field(
        default=3,
        ge=1,
        description="Failed health probes in a row, process still alive, before a restart.",
    )
    memory_limit: str | None = Field(
        default=None,
        description='Most memory the service\'s whole process tree may use, e.g. "512M". '
        "Enforced by the kernel where coursestack can create a cgroup (Linux, as root or "
        "with a delegated hierarchy), else checked at each health probe (over it three "
        "times in a row: restarted). Either way the reason says so.",
    )
    idle_stop: float = Field(
        default=900.0,
        ge=0,
        description='With start = "on-demand": seconds without a request through the front '
        "door before the service is stopped again (0: never).",
    )

    @field_validator("memory_limit")
    @classmethod
    def _limit_is_a_size(cls, value: str | None) -> str | None:
        return _check_size(value)

    def memory_limit_bytes(self) -> int | None:
        """`memory_limit` in bytes."""
        if self.memory_limit is None:
            return None
        return parse_size(self.memory_limit)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _list_means_ready(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {str(name): DependencyCondition.READY for name in value}
        return value


class PostgresService(ServiceSpec):
    """A real PostgreSQL server."""

    KIND: ClassVar[str] = "postgres"

    binaries: str = Field(
        default="pgserver",
        description='Where the PostgreSQL programs are: "pgserver" (the binaries in the '
        'pgserver wheel, no install needed), "system" (found on PATH or in the usual '
        "places), or a folder holding `postgres` and `initdb`.",
    )
    database: str | None = Field(
        default=None, description="Database created for the course (default: the course name)."
    )
    user: str = Field(default="student", description="Role created for the course.")
    seed: list[str] = Field(
        default_factory=list,
        description="SQL files (relative to the spec) run once, in order, in one "
        "transaction, on first start.",
    )
    settings: dict[str, str] = Field(
        default_factory=dict,
        description='Extra server settings passed as `-c key=value`, e.g. shared_buffers = "64MB".',
    )


class JupyterService(ServiceSpec):
    """A real Jupyter Server (JupyterLab by default)."""

    KIND: ClassVar[str] = "jupyter"
    WEB: ClassVar[bool] = True

    notebooks: str = Field(
        default="notebooks",
        description="Folder of notebooks, relative to the spec; created if missing. It is a "
        "normal folder on the host and is never wiped.",
    )
    app: Literal["lab", "server"] = Field(
        default="lab", description='"lab" for JupyterLab, "server" for a bare Jupyter Server.'
    )
    args: list[str] = Field(
        default_factory=list, description="Extra command-line arguments for Jupyter."
    )


class CommandService(ServiceSpec):
    """Any program, so a course team can add a service we never heard of."""

    KIND: ClassVar[str] = "command"

    command: list[str] = Field(
        description="Program and arguments. Placeholders: {port}, {data_dir}, {state_dir}, "
        "{host}, and {other.port} / {other.url} for another service."
    )
    cwd: str | None = Field(
        default=None, description="Working folder, relative to the spec (default: the data folder)."
    )
    probe: ProbeSettings = Field(
        default_factory=ProbeSettings, description="How readiness is checked."
    )
    stop_signal: Literal["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGKILL"] = Field(
        default="SIGTERM", description="Signal that asks the program to stop."
    )
    web: bool = Field(
        default=False, description="Whether it serves HTTP (linked from the dashboard)."
    )

    @field_validator("command", mode="before")
    @classmethod
    def _split_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            import shlex

            return shlex.split(value)
        return value

    @field_validator("command")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("command must name a program")
        return value

    @model_validator(mode="after")
    def _probe_needs_port(self) -> CommandService:
        if self.probe.type in ("tcp", "http") and self.port is None:
            raise ValueError(
                f'a "{self.probe.type}" probe needs a port: set port = ..., '
                'or use probe = { type = "exec", command = [...] } or "none"'
            )
        return self


class _MongoSettings(ServiceSpec):
    """What both MongoDB kinds take: the course database and its seed."""

    database: str | None = Field(
        default=None, description="Database for the course (default: the course name)."
    )
    seed: list[str] = Field(
        default_factory=list,
        description="JSON (an array of objects) or JSONL files loaded once into collections "
        "named after the files.",
    )


class MongoService(_MongoSettings):
    """A real MongoDB server (`mongod`), or a replica set of them."""

    KIND: ClassVar[str] = "mongodb"

    binary: str = Field(
        default="mongod", description="The `mongod` program: a name on PATH or a full path."
    )
    user: str = Field(default="student", description="User created for the course.")
    replicas: int = Field(
        default=1,
        ge=1,
        le=7,
        description="Members of a replica set (1: a single server). Each gets a free port; "
        "the set is initiated on first start.",
    )
    cache_size_gb: float = Field(
        default=0.25, gt=0, description="WiredTiger cache size, in GB (keeps memory small)."
    )


class MongoLiteService(_MongoSettings):
    """A MongoDB-compatible stand-in (the nx-27017 server), not MongoDB."""

    KIND: ClassVar[str] = "mongodb-lite"


class OpenRefineService(ServiceSpec):
    """OpenRefine, for cleaning messy data (a JVM: consider start = "on-demand")."""

    KIND: ClassVar[str] = "openrefine"
    WEB: ClassVar[bool] = True

    binary: str = Field(
        default="openrefine",
        description="The OpenRefine launcher: a name on PATH or a full path "
        "(Debian: apt-get install openrefine).",
    )
    memory: str = Field(
        default="1024M",
        pattern=r"^[0-9]+[MG]$",
        description='Largest Java heap, e.g. "512M" or "2G".',
    )


class ContentSettings(_Strict):
    """The `[content]` table: where course material comes from, and when it is updated."""

    source: str = Field(
        description="Where the course's material is: a folder, a `.zip` file (path or "
        "https URL), or a git repository (URL, or the path of a local one). Relative "
        "paths start at the spec's folder.",
    )
    ref: str | None = Field(
        default=None,
        description="For a git source: the branch, tag or commit to deliver (default: the "
        "repository's default branch).",
    )
    update: Literal["on-up", "manual"] = Field(
        default="on-up",
        description='"on-up": `coursestack up` updates the material before Jupyter starts '
        '(offline, it warns and starts anyway); "manual": only `coursestack update` or '
        "the dashboard's button does.",
    )
    target: str | None = Field(
        default=None,
        description="Folder the notebooks are delivered into, relative to the spec "
        "(default: the jupyter service's notebooks folder).",
    )


#: Settings models of coursestack's own kinds (each kind class names its model as
#: `settings_model`); kinds from other packages come from `service_models()`.
SERVICE_MODELS: dict[str, type[ServiceSpec]] = {
    model.KIND: model
    for model in (
        PostgresService,
        JupyterService,
        CommandService,
        MongoService,
        MongoLiteService,
        OpenRefineService,
    )
}


def service_models() -> dict[str, type[ServiceSpec]]:
    """Settings model per kind: the built-in ones and those of registered kind packages."""
    from coursestack.registry import settings_models

    return {**settings_models(), **SERVICE_MODELS}


def _broken_kind_hint(kind: str) -> str:
    """Why a kind some package registers is not usable, if that is the case."""
    from coursestack.registry import registry

    for problem in registry().problems:
        if problem.kind == kind:
            return problem.line() + "; "
    return ""


class CourseSpec(BaseModel):
    """A validated course spec."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    course: CourseInfo
    dashboard: DashboardSettings = DashboardSettings()
    logs: LogSettings = LogSettings()
    services: dict[str, ServiceSpec]
    content: ContentSettings | None = None
    path: Path = Field(description="The spec file this was read from.")

    @property
    def folder(self) -> Path:
        """Folder the spec lives in; relative paths in the spec start here."""
        return self.path.parent

    def resolve(self, relative: str) -> Path:
        """A path written in the spec, made absolute against the spec's folder."""
        candidate = Path(relative).expanduser()
        return candidate if candidate.is_absolute() else (self.folder / candidate).resolve()

    def start_order(self) -> list[list[str]]:
        """Services in dependency waves: each wave depends only on earlier waves."""
        return dependency_waves({name: s.depends_on for name, s in self.services.items()})

    def with_dependencies(self, names: Iterable[str]) -> set[str]:
        """The given services plus everything they depend on, transitively."""
        return dependency_closure({n: s.depends_on for n, s in self.services.items()}, names)


class _TopLevel(_Strict):
    course: CourseInfo
    dashboard: DashboardSettings = DashboardSettings()
    logs: LogSettings = LogSettings()
    services: dict[str, dict[str, Any]] = Field(min_length=1)
    content: ContentSettings | None = None


def dependency_closure(graph: Mapping[str, Iterable[str]], names: Iterable[str]) -> set[str]:
    """`names` plus everything they depend on in `graph` (name -> dependencies)."""
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(graph[name])
    return wanted


def dependency_waves(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Topological levels of `graph` (name -> dependencies); raises ValueError on a cycle."""
    remaining = {name: set(deps) for name, deps in graph.items()}
    waves: list[list[str]] = []
    done: set[str] = set()
    while remaining:
        wave = sorted(name for name, deps in remaining.items() if deps <= done)
        if not wave:
            raise ValueError(" -> ".join(_find_cycle(remaining)))
        waves.append(wave)
        done.update(wave)
        for name in wave:
            del remaining[name]
    return waves


def _find_cycle(graph: Mapping[str, set[str]]) -> list[str]:
    start = sorted(graph)[0]
    path = [start]
    while True:
        following = sorted(dep for dep in graph[path[-1]] if dep in graph)[0]
        if following in path:
            return [*path[path.index(following) :], following]
        path.append(following)


def load_spec(path: Path | str) -> CourseSpec:
    """Read and validate a course spec; raise SpecError naming file, line, key and fix."""
    path = Path(path).expanduser().resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            "no course spec here",
            where=str(path),
            hint="pass the path of a course.toml, or run `coursestack up` with no "
            "argument for the sample course",
        ) from None
    except IsADirectoryError:
        return load_spec(path / "course.toml")
    except (OSError, UnicodeDecodeError) as error:
        raise SpecError(
            f"cannot read the course spec: {error}",
            where=str(path),
            hint="check that the file is readable UTF-8 text",
        ) from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> CourseSpec:
    """Validate spec text read from `path` (used for error locations and relative paths)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        # "at end of document" carries no line: the last line is where to look.
        line = line_of_decode_error(str(error)) or max(1, len(text.splitlines()))
        invalid = SpecError(
            f"not valid TOML: {strip_position(str(error))}",
            where=f"{path}:{line}" if line else str(path),
            hint="check quotes, brackets and `key = value` on that line",
        )
        invalid.problems = ((line, "", invalid.message, invalid.hint),)
        raise invalid from None
    problems: list[Problem] = []
    services: dict[str, ServiceSpec] = {}
    try:
        top = _TopLevel.model_validate(raw)
    except ValidationError as error:
        problems.extend(problems_from(error, (), _TopLevel))
        top = None
    if top is not None:
        for name, table in top.services.items():
            service = _validate_service(name, table, problems)
            if service is not None:
                services[name] = service
        _check_dependencies(top.services, services, problems)
    if problems:
        wrong = SpecError(
            render_problems(problems, text, path),
            hint="fix the keys above; `docs/spec.md` lists every key with its meaning",
        )
        wrong.problems = located(problems, text)
        raise wrong
    assert top is not None
    return CourseSpec(
        course=top.course,
        dashboard=top.dashboard,
        logs=top.logs,
        services=services,
        content=top.content,
        path=path,
    )


def _validate_service(
    name: str, table: dict[str, Any], problems: list[Problem]
) -> ServiceSpec | None:
    where: tuple[str | int, ...] = ("services", name)
    if not _NAME_RE.match(name):
        problems.append(
            Problem(
                where,
                f"service name {name!r} is not allowed",
                "use lowercase letters, digits and dashes, starting with a "
                "letter (it becomes part of paths, URLs and variable names)",
            )
        )
        return None
    kind = table.get("kind")
    models = service_models()
    if kind is None:
        problems.append(
            Problem(where, "missing key 'kind'", f"add kind = one of {', '.join(sorted(models))}")
        )
        return None
    model = models.get(str(kind))
    if model is None:
        problems.append(
            Problem(
                (*where, "kind"),
                f"unknown kind {kind!r}",
                _broken_kind_hint(str(kind))
                + did_you_mean(str(kind), models)
                + f"known kinds: {', '.join(sorted(models))}",
            )
        )
        return None
    try:
        return model.model_validate(table)
    except ValidationError as error:
        problems.extend(problems_from(error, where, model))
        return None


def _check_dependencies(
    tables: dict[str, dict[str, Any]], services: dict[str, ServiceSpec], problems: list[Problem]
) -> None:
    for name, service in services.items():
        for dep in service.depends_on:
            if dep == name:
                problems.append(
                    Problem(
                        ("services", name, "depends_on"),
                        f"service {name!r} depends on itself",
                        "remove it from its own depends_on",
                    )
                )
            elif dep not in tables:
                problems.append(
                    Problem(
                        ("services", name, "depends_on"),
                        f"depends on {dep!r}, which is not a service here",
                        did_you_mean(dep, tables) + f"services: {', '.join(sorted(tables))}",
                    )
                )
    graph = {n: [d for d in s.depends_on if d in services and d != n] for n, s in services.items()}
    try:
        dependency_waves(graph)
    except ValueError as cycle:
        first = str(cycle).split(" -> ")[0]
        problems.append(
            Problem(
                ("services", first, "depends_on"),
                f"dependency cycle: {cycle}",
                "one of these services must not wait for the other",
            )
        )
