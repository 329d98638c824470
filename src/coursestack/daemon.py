"""The daemon of one instance: supervisor + web API, one per state folder (a lock).

It is the one owner of the instance's processes. On start it stops whatever a previous
daemon that died (kill -9, power loss) left running, using the pids it recorded, so no
service runs unmanaged and PostgreSQL never sees two postmasters on one cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import filelock

from coursestack import __version__
from coursestack.connections import environment_for, write_connections
from coursestack.endpoints import EndpointTable
from coursestack.errors import UserError
from coursestack.kinds import Context, Kind, bind_all, build_unit
from coursestack.lean_imports import keep_out_unused_imports
from coursestack.logs import rotate_if_large
from coursestack.ownership import move_to_account, secure_state_folder
from coursestack.ports import choose_port, port_is_free
from coursestack.privileges import RunAs, ensure_reachable, service_account
from coursestack.procs import LaunchSpec, OSLauncher, process_identity, stop_recorded_processes
from coursestack.respec import Respec, SpecChanges
from coursestack.spec import CourseSpec, StartPolicy, load_spec
from coursestack.state import OWNER_ONLY, Secrets, StateFolder, atomic_write_json, read_json
from coursestack.supervisor import Event, Service, State, Supervisor

if TYPE_CHECKING:
    from coursestack.web.host import InstanceHost
    from coursestack.web.server import QuietServer

log = logging.getLogger("coursestack.daemon")

EXIT_ALREADY_RUNNING = 3


class AlreadyRunning(UserError):
    """Another daemon holds this instance's lock."""


class Daemon:
    """Wires the supervisor and the web API for one instance."""

    def __init__(self, state: StateFolder, spec: CourseSpec | None = None) -> None:
        self.state = state
        self.instance = state.instance()
        self.name: str = self.instance.get("name", state.root.name)
        if "spec" not in self.instance:
            raise UserError(
                "this state folder has no instance set up",
                where=str(state.root),
                hint="run `coursestack up [SPEC] --state DIR` instead",
            )
        # `up` forks the daemon with the spec it has just loaded from the same file.
        self.spec: CourseSpec = spec or load_spec(self.instance["spec"])
        self.secrets = Secrets(state)
        self.token = self.secrets.get("daemon.token", 32)
        self.run_as: RunAs | None = None
        self.units: dict[str, Kind] = {}  # type: ignore[type-arg]
        self.supervisor: Supervisor | None = None
        self.context: Context
        #: Where each service listens: chosen here, handed to the kinds by `bind`.
        self.endpoints = EndpointTable()
        self.shutdown_requested = asyncio.Event()
        #: A stop signal while already stopping: kill what is left and go.
        self.hurry_requested = asyncio.Event()
        self.started = time.time()
        self.url = ""
        self._pids: dict[str, Any] = {}
        self._last_request: dict[str, float] = {}
        self._lock: filelock.BaseFileLock | None = None
        #: The write end of `up`'s readiness pipe (readiness.py), if `up` started us.
        self.notify_fd: int | None = None
        #: How the daemon was started: "fork" (from `up`'s process) or "spawn".
        self.start_method = "spawn"

    # -- setup ---------------------------------------------------------------------------

    def acquire_lock(self) -> None:
        """Take the instance lock, or raise AlreadyRunning."""
        self.state.create()
        lock = filelock.FileLock(str(self.state.lock_file))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise AlreadyRunning(
                "this instance already has a running daemon",
                where=str(self.state.root),
                hint="use `coursestack status`, or `coursestack down` first",
            ) from None
        self._lock = lock

    def clean_up_leftovers(self) -> list[str]:
        """Stop processes a dead daemon left behind; return the services that had some."""
        cleaned = stop_recorded_processes(self.state.pids_file)
        atomic_write_json(self.state.pids_file, {}, OWNER_ONLY)
        return cleaned

    def build(self) -> None:
        """Choose ports, make secrets and connection info, bind every service to its kind."""
        self.run_as = service_account(self.state.root, self.name)
        secure_state_folder(self.state, self.run_as)
        previous_ports = read_json(self.state.ports_file, {}) or {}
        context = Context(self.state, self.spec, self.secrets, self.run_as, instance_name=self.name)
        for name, service in self.spec.services.items():
            unit = build_unit(name, service, context)
            self.units[name] = unit
            preferred = service.port or previous_ports.get(name) or unit.default_port
            self.endpoints.choose(name, preferred, unit.port_count)
        self.context = context
        self._publish_connections()
        if self.run_as is not None:
            needed: list[Path] = [self.state.root]
            for unit in self.units.values():
                with contextlib.suppress(UserError):
                    needed += unit.needed_paths()
            changed = ensure_reachable(needed, self.run_as)
            for folder in changed:
                log.warning(
                    "gave user %s traverse-only access (ACL) to %s", self.run_as.name, folder
                )
            move_to_account(
                self.state,
                self.run_as,
                [folder for unit in self.units.values() for folder in unit.shared_folders()],
            )
        self.supervisor = Supervisor(self.units.values(), OSLauncher())
        self.supervisor.add_listener(self._record_event)
        self.supervisor.on_spawn(self._record_pid)
        self.supervisor.before_start(self._keep_port_free)

    def _publish_connections(self) -> None:
        """The one path by which endpoints reach the kinds and the notebooks: bind each
        kind to its endpoint and the others', then write ports.json and connections.json
        (each atomically) and hand every kind the environment they imply."""
        bind_all(self.units, self.endpoints)
        atomic_write_json(self.state.ports_file, self.endpoints.as_ports(), OWNER_ONLY)
        connections = [unit.connection() for unit in self.units.values()]
        environment = environment_for(connections, self.state, self.name)
        bind_all(self.units, self.endpoints, environment)
        write_connections(connections, self.state, self.run_as)

    def _keep_port_free(self, name: str) -> None:
        """Before a start: if another program took the service's port, choose another
        and publish it (the kind is rebound before its launch reads the port)."""
        endpoint = self.endpoints.get(name)
        if endpoint is None or port_is_free(endpoint.port):
            return
        moved = self.endpoints.move(name)
        log.warning(
            "port %d of %s was taken by another program; using %d", endpoint.port, name, moved.port
        )
        self._publish_connections()

    def _record_event(self, event: Event) -> None:
        with (
            contextlib.suppress(OSError),
            open(self.state.events_file, "a", encoding="utf-8") as events,
        ):
            events.write(json.dumps(event.as_dict()) + "\n")

    def _record_pid(self, name: str, pid: int, spec: LaunchSpec) -> None:
        unit = self.units[name]
        self._pids[name] = {
            "pid": pid,
            "created": process_identity(pid),
            "signal": int(spec.stop_signal),
            "grace": unit.stop_timeout,
            "cgroup": str(spec.cgroup_procs) if spec.cgroup_procs else None,
        }
        atomic_write_json(self.state.pids_file, self._pids, OWNER_ONLY)

    # -- on-demand services (the front door calls these) ---------------------------------

    def note_activity(self, name: str) -> None:
        """A request for service `name` went through the front door (keeps it awake)."""
        self._last_request[name] = time.monotonic()

    def ensure_started(self, name: str) -> str:
        """Start a stopped on-demand service for a front-door request; its state.

        A failed one is left failed, so the page can say why (and how to fix it) instead
        of starting it again on every request; the dashboard's Start tries again.
        """
        assert self.supervisor is not None
        self.note_activity(name)
        service = self.supervisor.services[name]
        if not service.active and str(service.status.state) == "stopped":
            self.supervisor.start([name])
        return str(service.status.state)

    async def _housekeeping(self, every: float = 2.0) -> None:
        """Every few seconds: stop idle on-demand services, keep the events log bounded."""
        from coursestack.units import parse_size

        max_bytes = parse_size(self.spec.logs.max_size)
        while True:
            await asyncio.sleep(every)
            await self._stop_idle_services()
            with contextlib.suppress(OSError):
                rotate_if_large(self.state.events_file, max_bytes, self.spec.logs.keep)

    async def _stop_idle_services(self) -> None:
        """Stop on-demand services nobody has used for their `idle_stop` seconds."""
        assert self.supervisor is not None
        now = time.monotonic()
        for name, service in self.supervisor.services.items():
            spec = service.unit.spec
            if spec.start is not StartPolicy.ON_DEMAND or spec.idle_stop <= 0 or not service.active:
                continue
            last = self._last_request.setdefault(name, now)
            if now - last >= spec.idle_stop:
                log.info("stopping %s: idle for %.0f s", name, now - last)
                await service.stop()
                service.status.detail = f"stopped after {spec.idle_stop:g} s idle"

    async def apply_spec(self, spec: CourseSpec) -> SpecChanges:
        """Run `spec` from now on, touching only the services it adds, removes or changes."""
        assert self.supervisor is not None
        changes = await Respec(
            self.supervisor,
            self.units,
            self.context,
            self.run_as,
            self._publish_connections,
            self.endpoints,
        ).apply(spec)
        self.spec = spec
        return changes

    def autostart(self) -> list[str]:
        """Services `up` starts: `--only` if given, else every `start = "always"` one."""
        only = self.instance.get("only") or []
        if only:
            return list(only)
        return [n for n, s in self.spec.services.items() if s.start is StartPolicy.ALWAYS]

    # -- running -----------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until asked to stop: services started, API up, then an orderly stop."""
        assert self.supervisor is not None
        # Services first: the web stack (Starlette, uvicorn, httpx: ~0.2-0.4 s of imports
        # and set-up that hold the GIL and a core) loads once the services are ready, or
        # at the first connection to the daemon, whichever comes first (a connection
        # waits in the listen backlog meanwhile); `up` hears readiness over its pipe.
        self.supervisor.start(self.autostart())
        await self._until_launched()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, self._on_stop_signal)
        listener = self._listen_socket()
        host, port = listener.getsockname()[:2]
        cert, key = self._tls_files(host)
        self.url = f"{'https' if cert else 'http'}://{host}:{port}/"
        atomic_write_json(
            self.state.daemon_file,
            {
                "pid": os.getpid(),
                "url": self.url,
                "host": host,
                "port": port,
                "token": self.token,
                "started": self.started,
                "tls_cert": cert,
                "version": __version__,
                "course": self.spec.course.name,
                "spec": str(self.spec.path),
                "down_timeout": self.spec.course.down_timeout,
                "start_method": self.start_method,
            },
            OWNER_ONLY,
        )
        self._notify_readiness()
        reaper = asyncio.create_task(self._housekeeping())
        server: Any = None
        server_task: asyncio.Task[None] | None = None
        try:
            await self._until_web_wanted(listener)
            if not self.shutdown_requested.is_set():
                create_app, server_for = await asyncio.to_thread(_load_web_app)
                server = server_for(self.wrap_web_app(create_app(self)), cert, key)
                server_task = asyncio.create_task(server.serve(sockets=[listener]))
            await self.shutdown_requested.wait()
        finally:
            reaper.cancel()
            await self._stop_services()
            for unit in self.units.values():
                unit.release()
            if server is not None and server_task is not None:
                server.should_exit = True
                with contextlib.suppress(Exception):
                    await server_task
            self.state.daemon_file.unlink(missing_ok=True)
            atomic_write_json(self.state.pids_file, {}, OWNER_ONLY)

    async def _until_web_wanted(self, listener: socket.socket) -> None:
        """Until the autostarted services are ready (or one failed), someone connects to
        the daemon, or a stop is asked for: the web stack is not needed before."""
        assert self.supervisor is not None
        from coursestack.readiness import Verdict, judge

        supervisor = self.supervisor
        names = supervisor.closure(self.autostart())
        wanted = asyncio.Event()

        def settled(_event: Event | None = None) -> None:
            if judge(self.service_views(), names) is not Verdict.WAITING:
                wanted.set()

        loop = asyncio.get_running_loop()
        loop.add_reader(listener.fileno(), wanted.set)  # a connection is waiting
        supervisor.add_listener(settled)
        settled()
        waits = {
            asyncio.create_task(wanted.wait()),
            asyncio.create_task(self.shutdown_requested.wait()),
        }
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            loop.remove_reader(listener.fileno())
            supervisor.remove_listener(settled)

    def _notify_readiness(self) -> None:
        """Tell `up` (over its readiness pipe) every change until the autostarted services
        are ready or one failed: it returns then, without polling the API."""
        if self.notify_fd is None:
            return
        assert self.supervisor is not None
        from coursestack.readiness import Notifier

        fd, self.notify_fd = self.notify_fd, None
        notifier = Notifier(
            fd,
            self.supervisor.closure(self.autostart()),
            self.service_views,
            asyncio.get_running_loop().call_later,
        )
        notifier.changed()
        if notifier.open:
            self.supervisor.add_listener(notifier.changed)

    def service_views(self) -> list[dict[str, Any]]:
        """Every service as `up` shows it: the API's ServiceView fields (memory not measured,
        no front-door links) and `settles_in` (see readiness.is_ready)."""
        assert self.supervisor is not None
        views = []
        now = time.time()
        for status in self.supervisor.statuses():
            unit = self.units[status.name]
            connection = unit.connection()
            started_at = status.started_at if status.pid is not None else None
            # A start that proves nothing yet counts for `up` once it has lasted
            # stable_after: one after a crash, or one ready at its first probe, right at
            # launch (probe "none"; no real server answers that fast).
            settles_in = 0.0
            if (
                status.ready_at is not None
                and status.started_at is not None
                and (
                    status.restarts
                    or status.ready_at - status.started_at
                    < self.supervisor.timing.fast_probe_interval
                )
            ):
                settles_in = max(0.0, unit.spec.stable_after - (now - status.ready_at))
            views.append(
                {
                    "name": status.name,
                    "kind": status.kind,
                    "state": str(status.state),
                    "detail": status.detail,
                    "reason": status.reason,
                    "pid": status.pid,
                    "port": unit.port,
                    "since": status.since,
                    "uptime": now - started_at if started_at else None,
                    "settles_in": settles_in,
                    "heartbeat": status.heartbeat,
                    "restarts": status.restarts,
                    "memory": None,
                    "web": connection.web,
                    "url": connection.url,
                    "last_log": status.last_log,
                    "label": str(connection.extra.get("label", "")),
                    "note": status.note,
                    "start": str(unit.spec.start),
                }
            )
        return views

    async def _until_launched(self, at_most: float = 2.0) -> None:
        """Until no service is about to launch (each has a process, waits for a dependency
        that is not there yet, or is not starting), or `at_most` seconds have passed."""
        assert self.supervisor is not None
        supervisor = self.supervisor

        def about_to_launch(service: Service) -> bool:
            status = service.status
            if status.state is not State.STARTING or status.pid is not None:
                return False
            return all(
                supervisor.satisfied(name, condition)
                for name, condition in service.unit.spec.depends_on.items()
            )

        deadline = time.monotonic() + at_most
        while time.monotonic() < deadline and any(
            about_to_launch(service) for service in supervisor.services.values()
        ):
            await asyncio.sleep(0.01)

    def _on_stop_signal(self) -> None:
        if self.shutdown_requested.is_set():
            self.hurry_requested.set()
        self.shutdown_requested.set()

    async def _stop_services(self) -> None:
        """Stop every service within `[course] down_timeout`; SIGKILL whatever is left
        then, or at once on a second SIGTERM/SIGINT, so the daemon always ends."""
        assert self.supervisor is not None
        deadline = self.spec.course.down_timeout
        stopping = asyncio.create_task(self.supervisor.stop_all(deadline))
        hurry = asyncio.create_task(self.hurry_requested.wait())
        await asyncio.wait(
            {stopping, hurry}, timeout=deadline + 5, return_when=asyncio.FIRST_COMPLETED
        )
        hurry.cancel()
        if not stopping.done():
            log.warning(
                "stop %s: killing every service process now",
                "signal while stopping"
                if self.hurry_requested.is_set()
                else f"deadline of {deadline:g} s reached",
            )
            self.supervisor.kill_everything()
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(stopping, 5)

    def _tls_files(self, host: str) -> tuple[str | None, str | None]:
        """(certificate, key) to serve HTTPS with, or (None, None) for plain HTTP."""
        settings = self.spec.dashboard
        if settings.tls_cert:
            return (
                str(self.spec.resolve(settings.tls_cert)),
                str(self.spec.resolve(settings.tls_key)),
            )
        loopback = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
        if settings.tls == "off" or (settings.tls == "auto" and loopback):
            return None, None
        from coursestack.tls import self_signed

        cert, key = self_signed(self.state.tls_dir, [host, "localhost", "127.0.0.1"])
        return str(cert), str(key)

    def wrap_web_app(self, app: Any) -> Any:
        """The ASGI app to serve (the hub's singleuser daemon puts a gate in front)."""
        return app

    def _listen_socket(self) -> socket.socket:
        settings = self.spec.dashboard
        # The spec's port, else the one used last time (open pages reconnect to it and
        # bookmarks keep working), else a free one nearby.
        remembered = self.state.dashboard_port_file
        previous = (read_json(remembered, {}) or {}).get("port")
        port = settings.port
        if (
            not port_is_free(port, settings.host)
            and previous
            and port_is_free(int(previous), settings.host)
        ):
            port = int(previous)
        port = choose_port(port, avoid=self.units_ports(), host=settings.host)
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only for
        # TCP sockets, and without it every kept-alive request waits ~40 ms (delayed ACK).
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((settings.host, port))
        listener.listen(128)
        listener.setblocking(False)
        atomic_write_json(remembered, {"port": port}, OWNER_ONLY)
        return listener

    def units_ports(self) -> list[int]:
        return self.endpoints.used()


def _load_web_app() -> tuple[
    Callable[[InstanceHost], Any], Callable[[Any, str | None, str | None], QuietServer]
]:
    """The web app's factory and its server's, imported in a thread while the services
    start: nothing before the first launch waits for the web stack (web/server.py)."""
    from coursestack.web.app import create_app
    from coursestack.web.server import server_for

    return create_app, server_for


def run_daemon(
    state_root: Path,
    spec: CourseSpec | None = None,
    notify_fd: int | None = None,
    start: str = "spawn",
) -> int:
    """Run the daemon of the instance in `state_root` until it is stopped.

    `up` calls this in the process it forked (with the spec it loaded, `start="fork"`),
    or starts `python -m coursestack daemon`; `notify_fd` is its readiness pipe.
    """
    keep_out_unused_imports()
    if notify_fd is not None:  # for `up` only, never for the services
        os.set_inheritable(notify_fd, False)
    # Everything the daemon writes (logs, events, state files) is owner-only unless it
    # says otherwise (connections.json); services inherit this too.
    os.umask(0o077)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # At INFO httpx logs every probe and proxied request, with tokens in their URLs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    state = StateFolder(state_root)
    try:
        daemon = Daemon(state, spec)
        daemon.notify_fd, daemon.start_method = notify_fd, start
        daemon.acquire_lock()
    except AlreadyRunning as error:
        print(error.render(), file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except UserError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    try:
        cleaned = daemon.clean_up_leftovers()
        if cleaned:
            log.warning("stopped processes left by a daemon that died: %s", ", ".join(cleaned))
        daemon.build()
        asyncio.run(daemon.serve())
    except UserError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m coursestack daemon --state DIR` (see coursestack/__main__.py): how `up`
    starts the daemon. The same as `coursestack daemon`, without importing the CLI."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m coursestack daemon",
        description="Run an instance's daemon in the foreground.",
    )
    parser.add_argument("--state", type=Path, required=True, help="State folder.")
    parser.add_argument(
        "--notify-fd",
        type=int,
        default=None,
        help="Readiness pipe to report progress on (`up` passes it).",
    )
    arguments = parser.parse_args(argv)
    return run_daemon(arguments.state, notify_fd=arguments.notify_fd)
