"""The asyncio supervisor: dependency waves, readiness probes, restart backoff, stop order.

One `Service` per spec entry runs a small explicit state machine:

    stopped -> starting -> ready <-> unhealthy
                  ^          |  (process exits, start times out, or liveness fails:
                  |          v   `stopping` while a live process gets its grace period)
                backoff <- crash -----> failed (a crash loop, see below)
    any running state -> stopping -> stopped (on request)

When to restart and when a crash loop ends in `failed` (which keeps its reason) is the
policy of systemd and supervisord, in `restarts.py`.

(Over 600 lines on purpose: a Service's state machine and the Supervisor that orders the
services' starts and stops, under one stop deadline, read best together.)

`ready` is decided by the unit's probe, never by a sleep; a dependent waits for its
dependency's condition (ready, or merely started). The supervisor knows nothing of kinds:
it runs `Unit`s, and gets time from a `Clock` and processes from a `Launcher`, so tests
drive the whole machine with a fake clock and fake processes in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from coursestack.errors import UserError
from coursestack.procs import Launcher, LaunchSpec, ProcessHandle, process_tree_memory
from coursestack.restarts import RestartBudget
from coursestack.spec import (
    DependencyCondition,
    RestartPolicy,
    ServiceSpec,
    StartPolicy,
    dependency_closure,
    dependency_waves,
)
from coursestack.units import format_size

log = logging.getLogger("coursestack.supervisor")
#: Sizes in a note ("3.2 MB"): a change of figure alone is not news worth an event.
_FIGURES = re.compile(r"[0-9.]+ (bytes|KB|MB|GB)")


class State(StrEnum):
    """Where a service is in its life."""

    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    FAILED = "failed"
    STOPPING = "stopping"


RUNNING_STATES = frozenset(
    {State.STARTING, State.READY, State.UNHEALTHY, State.BACKOFF, State.STOPPING}
)


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
    probe_timeout: float = 10.0
    #: After SIGKILL: how long to wait for the processes to be gone.
    kill_wait: float = 5.0
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
    #: Something to know that is not a state: output dropped, log not writable.
    note: str = ""

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
        return {
            "time": self.time,
            "service": self.service,
            "state": str(self.state),
            "previous": str(self.previous),
            "detail": self.detail,
            "reason": self.reason,
        }


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
        self.status = ServiceStatus(name=unit.name, kind=unit.spec.kind, since=self._clock.wall())
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
        timing = self._timing
        budget = RestartBudget(
            self.unit.spec, timing.backoff_initial, timing.backoff_factor, timing.backoff_cap
        )
        try:
            while True:
                await self._wait_for_dependencies()
                budget.started(self._clock.now())
                outcome, ready_since = await self._one_life()
                if outcome is None:
                    return
                code = self._process.returncode if self._process else None
                reason = self._describe_end(outcome, code)
                if not self._should_restart(outcome, code):
                    if outcome is _Outcome.EXITED and code == 0:
                        self._set(State.STOPPED, detail="exited cleanly")
                    else:
                        self._fail(reason)
                    return
                verdict = budget.after_crash(self._clock.now(), ready_since, reason)
                if verdict.wait is None:
                    self._fail(verdict.why)
                    return
                self.status.restarts += 1
                self._set(State.BACKOFF, detail=f"restarting in {verdict.wait:g} s", reason=reason)
                await self._clock.sleep(verdict.wait)
        except asyncio.CancelledError:
            await self._terminate_on_request()
            raise
        except Exception as error:
            # A bug must never leave a service stuck in a state nobody can leave.
            log.exception("service %s: unexpected error", self.name)
            await self._end_process("stopping after an internal error")
            self._fail(
                f"internal error: {error!r} (please report it with `coursestack doctor --bundle`)"
            )

    async def _one_life(self) -> tuple[_Outcome | None, float | None]:
        """Prepare, launch, wait until ready, watch; None means 'failed for good'."""
        self._set(State.STARTING, detail="preparing")
        try:
            self._supervisor.notify_starting(self.name)
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
            await self._end_process(f"stopping: {self._describe_end(outcome, None)}")
            return outcome, None
        loop = asyncio.get_running_loop()

        def report(text: str) -> None:
            # Kinds report progress from the loop (PostgreSQL's seeding) or from worker
            # threads (MongoDB's); from the loop it must land before after_ready returns.
            try:
                in_loop = asyncio.get_running_loop() is loop
            except RuntimeError:  # a worker thread has no running loop
                in_loop = False
            if in_loop:
                self._set(State.STARTING, text)
            else:
                loop.call_soon_threadsafe(self._set, State.STARTING, text)

        try:
            await self.unit.after_ready(report)
        except UserError as error:
            await self._end_process("stopping: setting up failed")
            self._fail(error.render())
            return None, None
        ready_since = self._clock.now()
        self.status.ready_at = self._clock.wall()
        self.status.heartbeat = self._clock.wall()
        self._set(State.READY)
        outcome = await self._watch()
        await self._end_process(f"stopping to restart: {self._describe_end(outcome, None)}")
        return outcome, ready_since

    async def _until_ready(self) -> _Outcome:
        started = self._clock.now()
        while True:
            if self._exited():
                return _Outcome.EXITED
            elapsed = self._clock.now() - started
            if elapsed > self.unit.spec.start_timeout:
                return _Outcome.TIMEOUT
            self._take_note()
            if await self._probe():
                return _Outcome.READY
            interval = (
                self._timing.fast_probe_interval
                if elapsed < self._timing.fast_probe_period
                else self._timing.slow_probe_interval
            )
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
            self._take_note()
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
            self._set(State.UNHEALTHY, detail=f"health probe failed ({failures}/{limit})")
            if failures >= limit:
                return _Outcome.LIVENESS

    async def _probe(self) -> bool:
        """One probe, within its time limit: a probe that times out or raises has failed."""
        try:
            return await asyncio.wait_for(self.unit.probe(), self._timing.probe_timeout)
        except (TimeoutError, OSError):
            return False
        except Exception:  # a probe's bug is a failed probe, not a dead supervisor
            log.exception("service %s: the probe raised", self.name)
            return False

    def _take_note(self) -> None:
        """Copy what the log pump reports into the status; say so when its gist changes."""
        note = self._process.output_note() if self._process is not None else ""
        previous, self.status.note = self.status.note, note
        if _FIGURES.sub("N", note) != _FIGURES.sub("N", previous):  # not at every byte
            self._supervisor.publish(
                Event(
                    self._clock.wall(),
                    self.name,
                    self.status.state,
                    self.status.state,
                    note or "output written again",
                    self.status.reason,
                )
            )

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

    async def _end_process(self, why: str = "stopping") -> None:
        """Make sure every process of the service is gone: the stop signal, the grace
        period (shown as `stopping`), then SIGKILL to all it started. Every wait has a
        limit, and the supervisor's stop deadline shortens them."""
        process, waiter = self._process, self._exit_waiter
        if process is None or waiter is None:
            return
        if not waiter.done():
            self._set(State.STOPPING, detail=why)
            process.signal_group(self.unit.stop_signal)
            grace_ends = self._clock.now() + self._supervisor.grace_left(self.unit.stop_timeout)
            if await self._wait_exit(grace_ends - self._clock.now()):
                # The leader is gone; what it started may still be saving its work (a
                # launcher script exits before its JVM): the rest of the grace is theirs.
                all_gone = asyncio.ensure_future(process.all_exited())
                await self._within(all_gone, max(0.0, grace_ends - self._clock.now()))
                all_gone.cancel()
            else:
                process.kill_all()
                await self._wait_exit(
                    self._supervisor.grace_left(self._timing.kill_wait, reserve=0.0)
                )
        # Children that outlive their leader (kernels, backends, a setsid child).
        process.kill_all()
        self.status.pid = None

    async def _wait_exit(self, seconds: float) -> bool:
        waiter = self._exit_waiter
        assert waiter is not None
        await self._within(asyncio.shield(waiter), seconds)
        return waiter.done()

    async def _within(self, awaited: asyncio.Future[Any], seconds: float) -> None:
        """Wait for `awaited`, at most `seconds` of the supervisor's clock."""
        sleeper: asyncio.Future[None] = asyncio.ensure_future(self._clock.sleep(seconds))
        await asyncio.wait([sleeper, awaited], return_when=asyncio.FIRST_COMPLETED)
        sleeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sleeper

    async def _terminate_on_request(self) -> None:
        if self._process is not None and not self._exited():
            # Shielded: a second stop request must not abandon a half-stopped process.
            await asyncio.shield(self._end_process("stopping"))
        elif self._process is not None:
            self._process.kill_all()
        self._process = None
        self.status.pid = None
        self._set(State.STOPPED, detail="stopped on request")

    def kill_now(self) -> None:
        """SIGKILL all the service's processes at once, without waiting."""
        if self._process is not None:
            self._process.kill_all()

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
            return (
                f"used {format_size(self._last_memory)}, above its memory_limit of "
                f"{self.unit.spec.memory_limit}"
            )
        if outcome is _Outcome.LIVENESS:
            return (
                f"stopped answering its health probe "
                f"({self.unit.spec.liveness_failures} failures in a row)"
            )
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
            self._supervisor.publish(
                Event(self._clock.wall(), self.name, state, previous, detail, self.status.reason)
            )


Listener = Callable[[Event], None]


class Supervisor:
    """Owns every service of one instance."""

    def __init__(
        self,
        units: Iterable[Unit],
        launcher: Launcher,
        clock: Clock | None = None,
        timing: Timing | None = None,
        memory_of: Callable[[int], int | None] = process_tree_memory,
    ) -> None:
        self.clock: Clock = clock or RealClock()
        self.memory_of = memory_of
        self.timing = timing or Timing()
        self.launcher = launcher
        self.services: dict[str, Service] = {}
        self.history: deque[Event] = deque(maxlen=1000)
        self._listeners: list[Listener] = []
        self._spawn_listeners: list[Callable[[str, int, LaunchSpec], None]] = []
        self._start_hooks: list[Callable[[str], None]] = []
        self._changed = asyncio.Condition()
        self._background: set[asyncio.Future[None]] = set()
        #: While a stop with a deadline runs: when (clock.now()) everything must be gone.
        self._stop_deadline: float | None = None
        for unit in units:
            self.services[unit.name] = Service(unit, self)

    # -- events --------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` with every state change."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def before_start(self, hook: Callable[[str], None]) -> None:
        """Call `hook(name)` before each start of a service, before its kind prepares
        (the daemon moves a port another program took there)."""
        self._start_hooks.append(hook)

    def notify_starting(self, name: str) -> None:
        for hook in self._start_hooks:
            hook(name)

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
                state is State.STARTING and service.status.pid is not None
            )
        return state in (State.READY, State.UNHEALTHY)

    async def wait_until(self, name: str, condition: DependencyCondition) -> None:
        """Wait until service `name` meets `condition`."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.satisfied(name, condition))

    def closure(self, names: Iterable[str]) -> set[str]:
        """`names` plus everything they depend on."""
        return dependency_closure(
            {n: s.unit.spec.depends_on for n, s in self.services.items()}, names
        )

    def waves(self) -> list[list[str]]:
        return dependency_waves({n: list(s.unit.spec.depends_on) for n, s in self.services.items()})

    # -- commands ----------------------------------------------------------------------

    def start(self, names: Iterable[str]) -> None:
        """Start services and whatever they depend on; each waits for its dependencies."""
        for name in sorted(self.closure(names)):
            self.services[name].start()

    async def stop(self, names: Iterable[str], deadline: float | None = None) -> None:
        """Stop the named services, dependents before their dependencies.

        With `deadline` (seconds), the whole stop takes at most that long: later waves
        get what is left of it, and the grace periods shrink so that the SIGKILLs and
        their waits fit in.
        """
        chosen = set(names)
        if deadline is not None:
            self._stop_deadline = self.clock.now() + deadline
        try:
            for wave in reversed(self.waves()):
                await asyncio.gather(*(self.services[n].stop() for n in wave if n in chosen))
        finally:
            self._stop_deadline = None

    async def stop_all(self, deadline: float | None = None) -> None:
        """Stop everything in reverse dependency order (within `deadline` seconds)."""
        await self.stop(self.services, deadline)

    def grace_left(self, wanted: float, reserve: float | None = None) -> float:
        """`wanted` seconds, or less if a stop deadline leaves less (minus `reserve`,
        kept for the SIGKILLs that follow)."""
        if self._stop_deadline is None:
            return wanted
        keep = self.timing.kill_wait if reserve is None else reserve
        return max(0.0, min(wanted, self._stop_deadline - self.clock.now() - keep))

    def kill_everything(self) -> None:
        """SIGKILL every process of every service now (the last resort of a stop)."""
        for service in self.services.values():
            service.kill_now()

    async def restart(self, name: str) -> None:
        """Stop one service, then start it (and its dependencies) again."""
        await self.services[name].stop()
        self.start([name])

    async def wait_settled(
        self,
        names: Iterable[str],
        condition: Callable[[State], bool],
    ) -> None:
        """Wait until every named service is in a state accepted by `condition`."""
        chosen = list(names)
        async with self._changed:
            await self._changed.wait_for(
                lambda: all(condition(self.services[n].status.state) for n in chosen)
            )

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
