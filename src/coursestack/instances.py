"""Finding an instance, setting it up, starting its daemon, and talking to it."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import filelock
import psutil
from pydantic import TypeAdapter, ValidationError

from coursestack.api_types import (
    ActionResult,
    EventView,
    InstanceView,
    LoginCode,
    Problem,
    ServiceView,
    Stopping,
)
from coursestack.errors import DaemonError, UsageError, UserError
from coursestack.spec import CourseSpec, load_spec
from coursestack.state import (
    StateFolder,
    atomic_write_json,
    default_state_folder,
    register_instance,
    registered_instances,
)

if TYPE_CHECKING:
    import httpx
else:  # `up` needs no HTTP client on its way to forking the daemon (~20-45 ms)
    from coursestack.lazy_import import lazy_module

    httpx = lazy_module("httpx")

SAMPLE_INSTANCE = "sample"


def sample_course_source() -> Path:
    """The embedded sample course inside the installed package."""
    return Path(str(resources.files("coursestack") / "courses" / "sample"))


@dataclass
class Instance:
    """One instance: its name and state folder."""

    name: str
    state: StateFolder

    def spec(self) -> CourseSpec:
        """The instance's course spec (as recorded by `up`)."""
        record = self.state.instance()
        if "spec" not in record:
            raise UsageError(
                f"instance {self.name!r} has never been set up",
                where=str(self.state.root),
                hint="run `coursestack up` first",
            )
        return load_spec(record["spec"])

    def client(self) -> DaemonClient:
        """An API client for the running daemon (DaemonError if it is not running)."""
        return DaemonClient(self)

    def daemon_alive(self) -> bool:
        """True if the daemon file names a live process holding the lock."""
        record = self.state.daemon()
        if not record:
            return False
        try:
            return psutil.pid_exists(int(record["pid"])) and self._lock_is_held()
        except (KeyError, ValueError):
            return False

    def _lock_is_held(self) -> bool:
        lock = filelock.FileLock(str(self.state.lock_file))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return True
        lock.release()
        return False


def resolve_instance(instance: str | None = None, state: Path | None = None) -> Instance:
    """The instance a command means: --state, --instance, $COURSESTACK_INSTANCE, or the
    only running one, else the sample course's."""
    if state is not None:
        folder = StateFolder(state.expanduser().resolve())
        return Instance(folder.instance().get("name", folder.root.name), folder)
    name = instance or os.environ.get("COURSESTACK_INSTANCE")
    if name:
        return _named(name)
    known = [Instance(n, s) for n, s in registered_instances()]
    running = [i for i in known if i.daemon_alive()]
    if len(running) == 1:
        return running[0]
    if len(running) > 1:
        names = ", ".join(sorted(i.name for i in running))
        raise UsageError(
            f"several instances are running: {names}",
            hint="say which with --instance NAME (see `coursestack list`)",
        )
    if len(known) == 1:
        return known[0]
    return _named(SAMPLE_INSTANCE)


def _named(name: str) -> Instance:
    for known_name, folder in registered_instances():
        if known_name == name:
            return Instance(name, folder)
    return Instance(name, default_state_folder(name))


def set_up_instance(
    spec_path: Path | None, instance: str | None, state: Path | None, only: list[str]
) -> tuple[Instance, CourseSpec]:
    """Validate the spec and record it in the instance's state folder (for `up`)."""
    if spec_path is None:
        name = instance or SAMPLE_INSTANCE
        folder = StateFolder(state.expanduser().resolve()) if state else (_named(name).state)
        folder.create()
        if not (folder.spec_file).exists():
            # The student's own copy: notebooks they edit survive upgrades of coursestack.
            shutil.copytree(sample_course_source(), folder.course, dirs_exist_ok=True)
        spec = load_spec(folder.spec_file)
    else:
        spec = load_spec(spec_path)
        name = instance or spec.course.name
        folder = StateFolder(state.expanduser().resolve()) if state else _named(name).state
        folder.create()
    unknown = [n for n in only if n not in spec.services]
    if unknown:
        raise UsageError(
            f"--only names no service of this course: {', '.join(unknown)}",
            hint=f"services: {', '.join(spec.services)}",
        )
    record = folder.instance()
    record.update({"name": name, "course": spec.course.name, "spec": str(spec.path), "only": only})
    record.setdefault("created", time.time())
    atomic_write_json(folder.instance_file, record)
    register_instance(folder, name)
    return Instance(name, folder), spec


def launch_daemon_process(
    state_root: Path, log_path: Path, notify: bool
) -> tuple[subprocess.Popen[bytes], int | None]:
    """Start `python -m coursestack daemon` in the background, output on `log_path`; with
    `notify` (where the OS passes descriptors) it gets the write end of a readiness pipe,
    whose read end is returned."""
    # `-m coursestack daemon` skips the CLI's libraries (see coursestack/__main__.py).
    command = [sys.executable, "-m", "coursestack", "daemon", "--state", str(state_root)]
    read_fd: int | None = None
    pass_fds: tuple[int, ...] = ()
    if notify and os.name == "posix":
        read_fd, write_fd = os.pipe()
        command += ["--notify-fd", str(write_fd)]
        pass_fds = (write_fd,)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=pass_fds,
            )
    finally:
        for fd in pass_fds:
            os.close(fd)
    return process, read_fd


def until_daemon_listens(
    instance: Instance, pid: int, exit_code: Callable[[], int | None], deadline: float
) -> dict[str, Any]:
    """Wait until daemon `pid` has published its record and holds the instance's lock;
    return the record. DaemonError saying why if it ended first or `deadline` (a
    time.monotonic() value) passed."""
    log_path = instance.state.daemon_log
    while True:
        record = instance.state.daemon()
        if record and record.get("pid") == pid and instance.daemon_alive():
            return record
        code = exit_code()
        if code is not None:
            if code == 3:
                raise DaemonError(
                    "another daemon already runs this instance",
                    where=str(instance.state.root),
                    hint="see `coursestack status`",
                )
            from coursestack.logs import tail_lines

            tail = "\n".join(tail_lines(log_path, 8))
            raise DaemonError(
                f"the daemon stopped at once (exit {code}):\n{tail}",
                where=str(log_path),
                hint="fix what it says, then run up again",
            )
        if time.monotonic() > deadline:
            raise DaemonError(
                "the daemon did not start in time", where=str(log_path), hint="look at its log"
            )
        time.sleep(0.05)


def start_daemon(instance: Instance, timeout: float = 60.0) -> dict[str, Any]:
    """Start the instance's daemon in the background; return its daemon record."""
    process, _ = launch_daemon_process(instance.state.root, instance.state.daemon_log, False)
    return until_daemon_listens(instance, process.pid, process.poll, time.monotonic() + timeout)


class DaemonClient:
    """The daemon's HTTP API, with the instance's token: one method per operation the
    CLI, doctor, backup and the bundle use, answering the API's own types (api_types)."""

    def __init__(self, instance: Instance, timeout: float = 30.0) -> None:
        self.instance = instance
        record = instance.state.daemon()
        if not record or not instance.daemon_alive():
            raise DaemonError(
                f"instance {instance.name!r} is not running",
                where=str(instance.state.root),
                hint="start it with `coursestack up`",
            )
        self.record = record
        self.url: str = record["url"]
        # HTTPS: check the daemon's own self-signed certificate; a certificate given in
        # the spec names the public host, not 127.0.0.1, so loopback is trusted as is.
        cert = record.get("tls_cert")
        verify: ssl.SSLContext | bool = not cert
        if cert and cert.startswith(str(instance.state.root)):
            verify = ssl.create_default_context(cafile=cert)
        self._http = httpx.Client(
            base_url=self.url.replace("0.0.0.0", "127.0.0.1"),
            timeout=timeout,
            trust_env=False,
            verify=verify,
            headers={"Authorization": f"Bearer {record['token']}"},
        )

    @property
    def pid(self) -> int:
        """The daemon's process id (from its record)."""
        return int(self.record["pid"])

    @property
    def token(self) -> str:
        return str(self.record["token"])

    # -- the API -----------------------------------------------------------------------------

    def instance_view(self) -> InstanceView:
        """GET /api/instance: the instance and every service."""
        return InstanceView.model_validate_json(self._call("GET", "/api/instance"))

    def services(self) -> list[ServiceView]:
        """GET /api/services: every service, in start order."""
        return _SERVICES.validate_json(self._call("GET", "/api/services"))

    def service(self, name: str) -> ServiceView:
        """GET /api/services/NAME (UserError if there is no such service)."""
        return ServiceView.model_validate_json(self._call("GET", f"/api/services/{name}"))

    def act(self, name: str, verb: Literal["start", "stop", "restart"]) -> ActionResult:
        """POST /api/services/NAME/VERB: start, stop (waits) or restart a service."""
        return ActionResult.model_validate_json(self._call("POST", f"/api/services/{name}/{verb}"))

    def start(self, name: str) -> ActionResult:
        return self.act(name, "start")

    def stop(self, name: str) -> ActionResult:
        return self.act(name, "stop")

    def history(self) -> list[EventView]:
        """GET /api/events/history: the latest state changes, oldest first."""
        return _EVENTS.validate_json(self._call("GET", "/api/events/history"))

    def login_code(self) -> LoginCode:
        """POST /api/login-code: a one-time code that logs a browser in."""
        return LoginCode.model_validate_json(self._call("POST", "/api/login-code"))

    def shutdown(self) -> Stopping:
        """POST /api/shutdown: stop every service, then the daemon."""
        return Stopping.model_validate_json(self._call("POST", "/api/shutdown"))

    def _call(self, method: str, path: str) -> bytes:
        """The answer's body; errors become UserErrors with the daemon's own message."""
        try:
            response = self._http.request(method, path)
        except httpx.HTTPError as error:
            raise DaemonError(
                f"the daemon did not answer: {error}",
                where=self.url,
                hint="see `coursestack logs` or the daemon.log",
            ) from None
        if response.status_code >= 400:
            try:
                detail = Problem.model_validate_json(response.content).detail
            except ValidationError:
                detail = response.text
            raise UserError(detail, where=f"{method} {path}")
        return response.content

    def close(self) -> None:
        self._http.close()


_SERVICES = TypeAdapter(list[ServiceView])
_EVENTS = TypeAdapter(list[EventView])


def stop_leftovers(instance: Instance) -> list[str]:
    """With no daemon running, stop any process a dead daemon left (for `down`)."""
    from coursestack.procs import stop_recorded_processes
    from coursestack.state import OWNER_ONLY

    lock = filelock.FileLock(str(instance.state.lock_file))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise UserError(
            "the daemon is still running", hint="try `coursestack down` again"
        ) from None
    try:
        cleaned = stop_recorded_processes(instance.state.pids_file)
        if instance.state.run.is_dir():
            atomic_write_json(instance.state.pids_file, {}, OWNER_ONLY)
        return cleaned
    finally:
        lock.release()


def wait_for_exit(pid: int, timeout: float) -> bool:
    """Wait until process `pid` is gone; False on timeout."""
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.TimeoutExpired:
        return False
    except psutil.Error:
        pass
    return True
