"""The asyncio supervisor: dependency waves, readiness probes, restart backoff, stop order.

One `Service` per spec entry runs a small explicit state machine:

    stopped -> starting -> ready <-> unhealthy
                  ^          |  (process exits, start times out, or liveness fails)
                  |          v
                backoff <- crash -----> failed (too many crashes in a row)
    any running state -> stopping -> stopped (on request)

`ready` is decided by the unit's probe, never by a sleep; a dependent waits for its
dependency's condition (ready, or merely started). The supervisor knows nothing of kinds:
it runs `Unit`s, and gets time from a `Clock` and processes from a `Launcher`, so tests
drive the whole machine with a fake clock and fake processes in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from coursestack.errors import UserError
from coursestack.procs import Launcher, LaunchSpec, ProcessHandle, process_tree_memory
from coursestack.spec import (
    DependencyCondition,
    RestartPolicy,
    ServiceSpec,
    StartPolicy,
    dependency_closure,
    dependency_waves,
)

log = logging.getLogger("coursestack.supervisor")


class State(StrEnum):
    """Where a service is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"


RUNNING_STATES = frozenset({State.STARTING, State.READY, State.UNHEALTHY, State.BACKOFF,
                            State.STOPPING})


class Clock(Protocol):
    """Time as the supervisor sees it."""

    def now(self) -> float:
        """Monotonic seconds, for durations."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch, for display."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The machine's clocks."""

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Unit(Protocol):
    """What the supervisor runs: a kind bound to one service of the spec."""

    name: str
    spec: ServiceSpec
    stop_signal: int
    stop_timeout: float

    async def prepare(self) -> None:
        """Get ready to launch (create folders, initdb, choose port); may raise UserError."""
        ...

    def launch_spec(self) -> LaunchSpec:
        """The process to start."""
        ...

    async def probe(self) -> bool:
        """True when the service answers like a working one."""
        ...

    async def after_ready(self, report: Callable[[str], None]) -> None:
        """Work once the service answers (roles, seeding); may raise UserError."""
        ...

    def log_tail(self, lines: int) -> list[str]:
        """Last lines of the service's log (kept with a failure)."""
        ...

    def explain_exit(self, code: int | None) -> str | None:
        """Why the process ended, when the unit knows better than its exit code."""
        ...


@dataclass(frozen=True)
class Timing:
    """Supervisor timing; the defaults suit real services."""

    backoff_initial: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap: float = 30.0
    stable_after: float = 30.0
    probe_timeout: float = 10.0
    fast_probe_interval: float = 0.05
    slow_probe_interval: float = 0.5
    fast_probe_period: float = 5.0
    failure_log_lines: int = 20


@dataclass
class ServiceStatus:
    """A snapshot of one service, as the API and the CLI show it."""

    name: str
    kind: str
    state: State = State.STOPPED
    detail: str = ""
    reason: str = ""
    pid: int | None = None
    since: float = 0.0
    started_at: float | None = None
    ready_at: float | None = None
    heartbeat: float | None = None
    restarts: int = 0
    last_log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        return data


@dataclass(frozen=True)
class Event:
    """One state change, kept in the history and sent to listeners."""

    time: float
    service: str
    state: State
    previous: State
    detail: str = ""
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"time": self.time, "service": self.service, "state": str(self.state),
                "previous": str(self.previous), "detail": self.detail, "reason": self.reason}


class _Outcome(StrEnum):
    READY = "ready"
    EXITED = "exited"
    TIMEOUT = "timeout"
    LIVENESS = "liveness"
    MEMORY = "memory"


class Service:
    """One supervised service and its state machine."""

    def __init__(self, unit: Unit, supervisor: Supervisor) -> None:
        self.unit = unit
        self._supervisor = supervisor
        self._clock = supervisor.clock
        self._timing = supervisor.timing
        self.status = ServiceStatus(name=unit.name, kind=unit.spec.kind,
                                    since=self._clock.wall())
        if unit.spec.start is StartPolicy.ON_DEMAND:
            self.status.detail = "starts on first use"
        self._task: asyncio.Task[None] | None = None
        self._process: ProcessHandle | None = None
        self._exit_waiter: asyncio.Task[int] | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._last_memory = 0

    @property
    def name(self) -> str:
        return self.unit.name

    @property
    def active(self) -> bool:
        """True while a run task exists (starting, running, backing off)."""
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the service's run task if it is not already running."""
        if self.active:
            return
        self.status.restarts = 0
        # Said at once, so whoever asked sees the start, never the state before it.
        self._set(State.STARTING, detail="starting")
        self._task = asyncio.create_task(self._run(), name=f"service:{self.name}")

    async def stop(self) -> None:
        """Stop the service: stop signal to its process group, SIGKILL after the grace."""
        task = self._task
        if task is None or task.done():
            if self.status.state in (State.FAILED, State.BACKOFF):
                self._set(State.STOPPED, detail="stopped on request")
            return
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_future()
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._stopping = None

    # -- the state machine ---------------------------------------------------------

    async def _run(self) -> None:
        crashes = 0
        delay = self._timing.backoff_initial
        try:
            while True:
                await self._wait_for_dependencies()
                outcome, ready_since = await self._one_life()
                if outcome is None:
                    return
                code = self._process.returncode if self._process else None
                reason = self._describe_end(outcome, code)
                stable = ready_since is not None and (
                    self._clock.now() - ready_since >= self._timing.stable_after)
                if stable:
                    crashes, delay = 0, self._timing.backoff_initial
                if not self._should_restart(outcome, code):
                    if outcome is _Outcome.EXITED and code == 0:
                        self._set(State.STOPPED, detail="exited cleanly")
                    else:
                        self._fail(reason)
                    return
                crashes += 1
                if crashes > self.unit.spec.max_restarts:
                    self._fail(reason if crashes == 1
                               else f"crashed {crashes} times in a row; last: {reason}")
                    return
                self.status.restarts += 1
                # A service that ran well and crashed once is restarted at once; only
                # crashes in a row wait, longer each time.
                wait = 0.0 if stable else delay
                self._set(State.BACKOFF, detail=f"restarting in {wait:g} s", reason=reason)
                await self._clock.sleep(wait)
                if not stable:
                    delay = min(delay * self._timing.backoff_factor, self._timing.backoff_cap)
        except asyncio.CancelledError:
            await self._terminate_on_request()
            raise
        except Exception as error:
            # A bug must never leave a service stuck in a state nobody can leave.
            log.exception("service %s: unexpected error", self.name)
            await self._end_process()
            self._fail(f"internal error: {error!r} (please report it with "
                       "`coursestack doctor --bundle`)")

    async def _one_life(self) -> tuple[_Outcome | None, float | None]:
        """Prepare, launch, wait until ready, watch; None means 'failed for good'."""
        self._set(State.STARTING, detail="preparing")
        try:
            await self.unit.prepare()
            spec = self.unit.launch_spec()
        except UserError as error:
            self._fail(error.render())
            return None, None
        try:
            self._process = await self._supervisor.launcher.launch(spec)
        except OSError as error:
            self._fail(f"cannot start {spec.argv[0]}: {error.strerror or error}")
            return None, None
        self._exit_waiter = asyncio.create_task(self._process.wait())
        self.status.pid = self._process.pid
        self.status.started_at = self._clock.wall()
        self._supervisor.notify_spawned(self.name, self._process.pid, spec)
        self._set(State.STARTING, detail="waiting until it answers")
        outcome = await self._until_ready()
        if outcome is not _Outcome.READY:
            await self._end_process()
            return outcome, None
        loop = asyncio.get_running_loop()

        def report(text: str) -> None:
            # Kinds report progress from worker threads (seeding runs in one).
            loop.call_soon_threadsafe(self._set, State.STARTING, text)

        try:
            await self.unit.after_ready(report)
        except UserError as error:
            await self._end_process()
            self._fail(error.render())
            return None, None
        ready_since = self._clock.now()
        self.status.ready_at = self._clock.wall()
        self.status.heartbeat = self._clock.wall()
        self._set(State.READY)
        outcome = await self._watch()
        await self._end_process()
        return outcome, ready_since

    async def _until_ready(self) -> _Outcome:
        started = self._clock.now()
        while True:
            if self._exited():
                return _Outcome.EXITED
            elapsed = self._clock.now() - started
            if elapsed > self.unit.spec.start_timeout:
                return _Outcome.TIMEOUT
            if await self._probe():
                return _Outcome.READY
            interval = (self._timing.fast_probe_interval
                        if elapsed < self._timing.fast_probe_period
                        else self._timing.slow_probe_interval)
            if await self._sleep_or_exit(interval):
                return _Outcome.EXITED

    async def _watch(self) -> _Outcome:
        failures = 0
        over_memory = 0
        limit = self.unit.spec.liveness_failures
        memory_limit = self.unit.spec.memory_limit_bytes()
        while True:
            if await self._sleep_or_exit(self.unit.spec.probe_interval):
                return _Outcome.EXITED
            if memory_limit is not None and self.status.pid is not None:
                used = self._supervisor.memory_of(self.status.pid) or 0
                over_memory = over_memory + 1 if used > memory_limit else 0
                if over_memory >= 3:
                    self._last_memory = used
                    return _Outcome.MEMORY
            if await self._probe():
                failures = 0
                self.status.heartbeat = self._clock.wall()
                if self.status.state is State.UNHEALTHY:
                    self._set(State.READY)
                continue
            if self._exited():
                return _Outcome.EXITED
            failures += 1
            if failures >= limit:
                return _Outcome.LIVENESS
            self._set(State.UNHEALTHY, detail=f"health probe failed ({failures}/{limit})")

    async def _probe(self) -> bool:
        try:
            return await asyncio.wait_for(self.unit.probe(), self._timing.probe_timeout)
        except (TimeoutError, OSError):
            return False

    async def _sleep_or_exit(self, seconds: float) -> bool:
        """Sleep, but wake early if the process exits; True if it has exited."""
        waiter = self._exit_waiter
        if waiter is None or waiter.done():
            return True
        sleeper = asyncio.ensure_future(self._clock.sleep(seconds))
        await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not sleeper.done():
            sleeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sleeper
        return waiter.done()

    def _exited(self) -> bool:
        return self._exit_waiter is None or self._exit_waiter.done()

    async def _end_process(self) -> None:
        """Make sure the current process group is gone (stop signal, then SIGKILL)."""
        process, waiter = self._process, self._exit_waiter
        if process is None or waiter is None:
            return
        if not waiter.done():
            process.signal_group(self.unit.stop_signal)
            if not await self._wait_exit(self.unit.stop_timeout):
                process.signal_group(9)
                await asyncio.shield(waiter)
        # Children that outlive their leader (kernels, backends) share its group.
        process.signal_group(9)
        self.status.pid = None

    async def _wait_exit(self, seconds: float) -> bool:
        waiter = self._exit_waiter
        assert waiter is not None
        sleeper: asyncio.Future[None] = asyncio.ensure_future(self._clock.sleep(seconds))
        racing: list[asyncio.Future[Any]] = [sleeper, asyncio.shield(waiter)]
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        sleeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sleeper
        return waiter.done()

    async def _terminate_on_request(self) -> None:
        if self._process is not None and not self._exited():
            self._set(State.STOPPING, detail="stopping")
            # Shielded: a second stop request must not abandon a half-stopped process.
            await asyncio.shield(self._end_process())
        elif self._process is not None:
            self._process.signal_group(9)
        self._process = None
        self.status.pid = None
        self._set(State.STOPPED, detail="stopped on request")

    async def _wait_for_dependencies(self) -> None:
        for dependency, condition in self.unit.spec.depends_on.items():
            if not self._supervisor.satisfied(dependency, condition):
                self._set(State.STARTING, detail=f"waiting for {dependency}")
                await self._supervisor.wait_until(dependency, condition)

    def _should_restart(self, outcome: _Outcome, code: int | None) -> bool:
        policy = self.unit.spec.restart
        if policy is RestartPolicy.NEVER:
            return False
        if policy is RestartPolicy.ALWAYS:
            return True
        return not (outcome is _Outcome.EXITED and code == 0)

    def _describe_end(self, outcome: _Outcome, code: int | None) -> str:
        if outcome is _Outcome.TIMEOUT:
            return f"not ready after {self.unit.spec.start_timeout:g} s"
        if outcome is _Outcome.MEMORY:
            return (f"used {self._last_memory / 2**20:.0f} MB, above its memory_limit of "
                    f"{self.unit.spec.memory_limit}")
        if outcome is _Outcome.LIVENESS:
            return (f"stopped answering its health probe "
                    f"({self.unit.spec.liveness_failures} failures in a row)")
        explained = self.unit.explain_exit(code)
        if explained:
            return explained
        if code is not None and code < 0:
            return f"killed by signal {-code}"
        return f"exited with code {code}"

    def _fail(self, reason: str) -> None:
        self.status.last_log = self.unit.log_tail(self._timing.failure_log_lines)
        self._set(State.FAILED, detail="", reason=reason)

    def _set(self, state: State, detail: str = "", reason: str | None = None) -> None:
        previous = self.status.state
        if reason is not None:
            self.status.reason = reason
        if state is State.READY:
            self.status.reason = ""
        changed = previous is not state or self.status.detail != detail
        self.status.state = state
        self.status.detail = detail
        if previous is not state:
            self.status.since = self._clock.wall()
        if changed:
            self._supervisor.publish(Event(self._clock.wall(), self.name, state, previous,
                                           detail, self.status.reason))


Listener = Callable[[Event], None]


class Supervisor:
    """Owns every service of one instance."""

    def __init__(self, units: Iterable[Unit], launcher: Launcher,
                 clock: Clock | None = None, timing: Timing | None = None,
                 memory_of: Callable[[int], int | None] = process_tree_memory) -> None:
        self.clock: Clock = clock or RealClock()
        self.memory_of = memory_of
        self.timing = timing or Timing()
        self.launcher = launcher
        self.services: dict[str, Service] = {}
        self.history: deque[Event] = deque(maxlen=1000)
        self._listeners: list[Listener] = []
        self._spawn_listeners: list[Callable[[str, int, LaunchSpec], None]] = []
        self._changed = asyncio.Condition()
        self._background: set[asyncio.Future[None]] = set()
        for unit in units:
            self.services[unit.name] = Service(unit, self)

    # -- events --------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def on_spawn(self, listener: Callable[[str, int, LaunchSpec], None]) -> None:
        """Call `listener(name, pid, spec)` whenever a service process is started."""
        self._spawn_listeners.append(listener)

    def notify_spawned(self, name: str, pid: int, spec: LaunchSpec) -> None:
        for listener in self._spawn_listeners:
            listener(name, pid, spec)

    def publish(self, event: Event) -> None:
        self.history.append(event)
        for listener in list(self._listeners):
            listener(event)
        task = asyncio.ensure_future(self._wake_waiters())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _wake_waiters(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- dependencies ----------------------------------------------------------------

    def satisfied(self, name: str, condition: DependencyCondition) -> bool:
        """True if service `name` meets `condition` now."""
        service = self.services[name]
        state = service.status.state
        if condition is DependencyCondition.STARTED:
            return state in (State.READY, State.UNHEALTHY) or (
                state is State.STARTING and service.status.pid is not None)
        return state in (State.READY, State.UNHEALTHY)

    async def wait_until(self, name: str, condition: DependencyCondition) -> None:
        """Wait until service `name` meets `condition`."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.satisfied(name, condition))

    def closure(self, names: Iterable[str]) -> set[str]:
        """`names` plus everything they depend on."""
        return dependency_closure(
            {n: s.unit.spec.depends_on for n, s in self.services.items()}, names)

    def waves(self) -> list[list[str]]:
        return dependency_waves(
            {n: list(s.unit.spec.depends_on) for n, s in self.services.items()})

    # -- commands ----------------------------------------------------------------------

    def start(self, names: Iterable[str]) -> None:
        """Start services and whatever they depend on; each waits for its dependencies."""
        for name in sorted(self.closure(names)):
            self.services[name].start()

    async def stop(self, names: Iterable[str]) -> None:
        """Stop the named services, dependents before their dependencies."""
        chosen = set(names)
        for wave in reversed(self.waves()):
            await asyncio.gather(*(self.services[n].stop() for n in wave if n in chosen))

    async def stop_all(self) -> None:
        """Stop everything in reverse dependency order."""
        await self.stop(self.services)

    async def restart(self, name: str) -> None:
        """Stop one service, then start it (and its dependencies) again."""
        await self.services[name].stop()
        self.start([name])

    async def wait_settled(self, names: Iterable[str], condition: Callable[[State], bool],
                           ) -> None:
        """Wait until every named service is in a state accepted by `condition`."""
        chosen = list(names)
        async with self._changed:
            await self._changed.wait_for(
                lambda: all(condition(self.services[n].status.state) for n in chosen))

    def replace_units(self, units: Iterable[Unit], removed: Iterable[str]) -> None:
        """Supervise `units` (new, or replacing a stopped service of the same name) and
        forget the stopped services `removed`: the course spec changed."""
        for unit in units:
            self.services[unit.name] = Service(unit, self)
        for name in removed:
            del self.services[name]

    def statuses(self) -> list[ServiceStatus]:
        """Every service's status, in start order."""
        return [self.services[name].status for wave in self.waves() for name in wave]

