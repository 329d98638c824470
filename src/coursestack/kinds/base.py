"""What every kind shares: the instance context, connection info, and the verbs.

A kind is one class; everything coursestack does that depends on what a service *is*
goes through these verbs (in the spirit of JupyterHub's Spawner), so `backup`, `doctor`,
`plan`, `cli` and `web` never ask which kind they hold:

- spec: `settings_model` (the pydantic model of its course.toml table), `default_port`
- run: `prepare`, `launch_spec` (launch), `probe`, `after_ready`, `explain_exit`,
  `release`
- connect: `connection` (what connections.json publishes, with the client `driver`)
- diagnose: `check_installed`, `program_version`, `doctor_checks`
- plan: `expected_memory` (from `memory_estimate`)
- backup: `backup_mode`, `backup_folder`, `backup_dump`, `backup_check`,
  `backup_restore`, `describe_backup`, `stop_for_backup`, `backup_family`
- export: `export_hints` (kinds/export_hints.py)

A third-party package ships a kind by subclassing `Kind` and registering the class in
the `coursestack.kinds` entry-point group (see `coursestack/registry.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar

from coursestack import cgroups, nofollow
from coursestack.cgroups import MemoryCgroup
from coursestack.endpoints import Endpoint
from coursestack.kinds.export_hints import COURSE_DIR, DATA_DIR, ExportHints
from coursestack.logs import tail_lines
from coursestack.plan import DEFAULT_ESTIMATE, DEFAULT_KERNELS, KindEstimate
from coursestack.privileges import RunAs
from coursestack.procs import LaunchSpec
from coursestack.spec import CourseSpec, ServiceSpec
from coursestack.state import Secrets, StateFolder
from coursestack.units import MB, parse_size

LOCALHOST = "127.0.0.1"

#: How a backup takes a kind's data: read from the running server, copied as a folder of
#: files, or not at all (the course team backs it up themselves).
BackupMode = Literal["live", "files", "none"]


@dataclass(frozen=True)
class DoctorCheck:
    """One finding a kind adds to `coursestack doctor` about one of its services."""

    status: Literal["ok", "warn", "fail"]
    message: str
    hint: str = ""


@dataclass
class Context:
    """What a kind may know about the instance it runs in."""

    state: StateFolder
    spec: CourseSpec
    secrets: Secrets
    run_as: RunAs | None
    instance_name: str = ""


@dataclass(frozen=True)
class Connection:
    """How a notebook reaches one service."""

    service: str
    kind: str
    host: str
    port: int | None
    url: str
    user: str | None = None
    password: str | None = None
    database: str | None = None
    web: bool = False
    #: Conventional variables (DATABASE_URL, PGHOST, ...) for the first service of a kind.
    conventional_env: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: How `coursestack.connect()` talks to it ("psycopg", "pymongo", "http"): notebook
    #: kernels read this from connections.json and never import the kinds.
    driver: str = "http"

    def env(self) -> dict[str, str]:
        """Variables naming this service: <NAME>_URL, <NAME>_HOST, <NAME>_PORT."""
        prefix = env_prefix(self.service)
        values = {f"{prefix}_URL": self.url, f"{prefix}_HOST": self.host}
        if self.port is not None:
            values[f"{prefix}_PORT"] = str(self.port)
        return values

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "kind": self.kind,
            "host": self.host,
            "port": self.port,
            "url": self.url,
            "user": self.user,
            "password": self.password,
            "database": self.database,
            "web": self.web,
            "driver": self.driver,
            "env": {**self.env(), **self.conventional_env},
            **dict(self.extra),
        }


def program_at(program: str) -> str:
    """`program at /where/it/is` (for `program_version`)."""
    return f"{program} at {shutil.which(program) or Path(program).resolve()}"


def first_output_line(argv: list[str]) -> str:
    """The first line a program prints (e.g. for `--version`), or why there is none."""
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=15, check=False, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"version unknown ({error})"
    output = (result.stdout or result.stderr).strip().splitlines()
    return output[0] if output else f"version unknown (exit {result.returncode})"


def count(number: int, noun: str) -> str:
    """`1 file`, `3 files`."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def env_prefix(service: str) -> str:
    """A service name as an environment variable prefix: my-db -> MY_DB."""
    return service.upper().replace("-", "_")


S = TypeVar("S", bound=ServiceSpec)


class Kind(Generic[S]):
    """Base of every kind: a service of the spec bound to its instance (a supervisor Unit)."""

    KIND: ClassVar[str] = ""
    stop_signal: int = signal.SIGTERM
    default_stop_timeout: ClassVar[float] = 10.0
    #: Port used when the spec names none (None: the service needs no port).
    default_port: ClassVar[int | None] = None
    #: Whether the front door removes `/s/<name>` before forwarding (apps that cannot
    #: run under a path prefix); Jupyter runs under the prefix and keeps it.
    proxy_strips_prefix: ClassVar[bool] = True
    #: Output lines holding this are the kind's own probe talking: kept out of the log.
    probe_log_marker: ClassVar[bytes | None] = None
    #: The pydantic model of this kind's table in course.toml.
    settings_model: ClassVar[type[ServiceSpec]] = ServiceSpec
    #: Expected idle memory (`coursestack plan`); refine per service in `expected_memory`.
    memory_estimate: ClassVar[KindEstimate] = DEFAULT_ESTIMATE
    #: How a backup takes this kind's data (see `backup_*`).
    backup_mode: ClassVar[BackupMode] = "none"
    #: The service must be stopped for its files to be complete in a backup.
    stop_for_backup: ClassVar[bool] = False
    #: Other kinds whose backups this kind restores (same data, another server).
    backup_family: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, spec: S, context: Context) -> None:
        self.name = name
        self.spec: S = spec
        self.context = context
        self.stop_timeout = spec.stop_timeout or self.default_stop_timeout
        self._cgroup: MemoryCgroup | None = None
        self._oom_kills_at_launch = 0
        #: Where this service listens (None: no port, or not bound yet).
        self.endpoint: Endpoint | None = None
        #: Where every service of the instance listens (for placeholders, clients).
        self.peers: Mapping[str, Endpoint] = {}
        #: Environment every service gets: connection info of all services, and more.
        self.shared_env: Mapping[str, str] = {}

    def bind(
        self,
        endpoint: Endpoint | None,
        peers: Mapping[str, Endpoint],
        shared_env: Mapping[str, str] | None = None,
    ) -> None:
        """The daemon hands the kind its endpoint, the other services' endpoints and the
        shared environment (again whenever a port moved); the kind keeps copies."""
        self.endpoint = endpoint
        self.peers = dict(peers)
        if shared_env is not None:
            self.shared_env = dict(shared_env)

    # -- facts -------------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        return self.endpoint.port if self.endpoint is not None else None

    @property
    def port_count(self) -> int:
        """How many ports the service needs (a replica set needs one per member)."""
        return 1

    @property
    def data_dir(self) -> Path:
        return self.context.state.data_dir(self.name)

    @property
    def log_file(self) -> Path:
        return self.context.state.log_file(self.name)

    @property
    def run_as(self) -> RunAs | None:
        return self.context.run_as

    def web_path(self) -> str:
        """Path under which the front door serves this service."""
        return f"/s/{self.name}/"

    def check_installed(self) -> None:
        """Raise MissingBinaryError (with how to install) if a program is missing."""

    def needed_paths(self) -> list[Path]:
        """Paths outside the state folder the service account must be able to reach."""
        return [Path(sys.executable)]

    def shared_folders(self) -> list[Path]:
        """Folders outside the state folder the service writes (with an ACL entry)."""
        return []

    def connection(self) -> Connection:
        """Where this service is (known before it starts: ports and secrets are chosen)."""
        port = self.port
        url = f"http://{LOCALHOST}:{port}/" if port else ""
        return Connection(self.name, self.spec.kind, LOCALHOST, port, url)

    def environment(self) -> dict[str, str]:
        """The process environment: a clean base, every service's connection, spec env."""
        base = {
            key: value
            for key, value in os.environ.items()
            if key in ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT", "TMPDIR")
        }
        base.setdefault("LANG", "C.UTF-8")
        base.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        home = self.data_dir / "home"
        base.update(
            {
                "HOME": str(home),
                "XDG_RUNTIME_DIR": str(home / ".runtime"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "PYTHONUNBUFFERED": "1",
            }
        )
        base.update(self.shared_env)
        base.update(self.spec_env())
        return base

    def spec_env(self) -> dict[str, str]:
        """The spec's own `env` for this service, as the process gets it."""
        return dict(self.spec.env)

    # -- supervisor verbs ------------------------------------------------------------------

    async def prepare(self) -> None:
        """Create the data folder (owned by the service account), and whatever else the
        kind needs before a launch. (That the port is still free, the daemon checks
        before this: it alone moves ports.)"""
        await asyncio.to_thread(self._prepare_folders)
        if self._cgroup is None:
            # Every service gets one where possible: it holds the memory limit, if any,
            # and tells a stop every process the service started.
            key = hashlib.sha256(str(self.context.state.root).encode()).hexdigest()[:12]
            self._cgroup = cgroups.create(
                key, self.name, self.spec.memory_limit_bytes(), self.run_as
            )
        if self._cgroup is not None:
            self._oom_kills_at_launch = self._cgroup.oom_kills()

    def explain_exit(self, code: int | None) -> str | None:
        """Why the process ended, when the kind knows better than its exit code."""
        if (
            self._cgroup is not None
            and self.spec.memory_limit is not None
            and self._cgroup.oom_kills() > self._oom_kills_at_launch
        ):
            return (
                f"killed by the kernel: it went over its memory_limit of {self.spec.memory_limit}"
            )
        return None

    def release(self) -> None:
        """Give back what the kind holds outside its process (its cgroup)."""
        if self._cgroup is not None:
            self._cgroup.remove()
            with contextlib.suppress(OSError):
                self._cgroup.path.parent.rmdir()
            self._cgroup = None

    def _prepare_folders(self) -> None:
        self.check_installed()
        self.make_data_folders("home/.runtime")

    @contextlib.contextmanager
    def data_folder(self) -> Iterator[int]:
        """A descriptor of the service's data folder, made on first use and given to the
        service account then (once, at creation). The account may change anything inside,
        so root works in it only through `coursestack.nofollow`, relative to this."""
        account = self.run_as
        data = self.context.state.data
        data.mkdir(parents=True, exist_ok=True)
        parent = os.open(data, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fd = nofollow.make_folder(
                parent,
                self.name,
                0o700,
                account.uid if account else None,
                account.gid if account else None,
            )
        finally:
            os.close(parent)
        try:
            yield fd
        finally:
            os.close(fd)

    def make_data_folders(self, *relative: str) -> None:
        """Folders inside the data folder (`mkdir -p`), owned by the service account."""
        account = self.run_as
        with self.data_folder() as fd:
            for path in relative:
                nofollow.make_folders(
                    fd,
                    path,
                    0o700,
                    account.uid if account else None,
                    account.gid if account else None,
                )

    def launch_spec(self) -> LaunchSpec:
        raise NotImplementedError

    async def probe(self) -> bool:
        raise NotImplementedError

    async def after_ready(self, report: Callable[[str], None]) -> None:
        """Once the probe passes (course role, seed...); nothing by default. `report(text)`
        shows progress and may be called from the event loop or a worker thread."""

    def log_tail(self, lines: int) -> list[str]:
        return tail_lines(self.log_file, lines)

    def _launch(self, argv: list[str], cwd: Path | None = None) -> LaunchSpec:
        logs = self.context.spec.logs
        return LaunchSpec(
            argv=argv,
            env=self.environment(),
            cwd=cwd or self.data_dir,
            log_file=self.log_file,
            run_as=self.run_as,
            stop_signal=self.stop_signal,
            cgroup_procs=self._cgroup.procs if self._cgroup else None,
            log_max_bytes=parse_size(logs.max_size),
            log_keep=logs.keep,
            log_rate=parse_size(logs.rate),
            log_filter=self.probe_log_marker,
        )

    # -- diagnosis (doctor) ---------------------------------------------------------------

    def program_version(self) -> str:
        """The version of the service's program, in words (for `doctor`)."""
        return "version not known to its kind"

    def doctor_checks(self) -> list[DoctorCheck]:
        """Findings beyond "is the program installed" (none by default)."""
        return []

    # -- planning ------------------------------------------------------------------------

    @classmethod
    def expected_memory(cls, service: S | None, kernels: int = DEFAULT_KERNELS) -> tuple[int, str]:
        """Expected bytes for one service of this kind, and the basis in words."""
        estimate = cls.memory_estimate
        megabytes = estimate.base_mb
        basis = estimate.basis
        if estimate.per_unit_mb:
            megabytes += estimate.per_unit_mb * kernels
            basis += f"; {kernels} {estimate.unit}{'s' if kernels != 1 else ''} assumed"
        return megabytes * MB, basis

    # -- backup --------------------------------------------------------------------------

    def backup_folder(self) -> Path:
        """The folder a "files" backup copies (the data folder by default)."""
        return self.data_dir

    def backup_dump(self, folder: Path) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
        """A "live" kind writes its data into `folder`: the manifest entry and the files
        (archive member name relative to the service, path)."""
        raise NotImplementedError(f"kind {self.KIND!r} has no live backup")

    def backup_check(self, entry: dict[str, Any], members: Mapping[str, Any], where: str) -> None:
        """Raise UserError if this entry of an archive cannot be restored here."""

    def backup_restore(self, entry: dict[str, Any], folder: Path) -> None:
        """A "live" kind replaces its data with the archive's (`folder`)."""
        raise NotImplementedError(f"kind {self.KIND!r} has no live restore")

    @classmethod
    def describe_backup(cls, entry: dict[str, Any]) -> str | None:
        """One line saying what a manifest entry holds (None: the generic description)."""
        return None

    # -- export (what exporters ask; see kinds/export_hints.py) ---------------------------

    @classmethod
    def export_hints(cls, name: str, service: S, course: CourseSpec) -> ExportHints:
        """What an exporter needs to run this service elsewhere.

        The default, for a kind that knows nothing better: no official image; the course
        image runs the service alone under coursestack (`coursestack run --only NAME`).
        """
        port = service.port or cls.default_port
        web = type(service).WEB or bool(getattr(service, "web", False))
        prefix = env_prefix(name)
        scheme = "http" if web else "tcp"
        connection = (
            {
                f"{prefix}_URL": f"{scheme}://{{host}}:{{port}}/",
                f"{prefix}_HOST": "{host}",
                f"{prefix}_PORT": "{port}",
            }
            if port
            else {}
        )
        return ExportHints(
            service=name,
            kind=service.kind,
            ports=(port,) if port else (),
            web=web,
            environment=dict(service.env),
            connection_env=connection,
            course_image_command=(
                "coursestack",
                "run",
                f"{COURSE_DIR}/{course.path.name}",
                "--only",
                name,
                "--state",
                f"{DATA_DIR}/state",
            ),
            readiness=("coursestack", "status", "--state", f"{DATA_DIR}/state"),
        )
