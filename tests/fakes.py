"""Test doubles for the supervisor, named for what they stage: a fake clock that only
moves when told; launchers whose processes crash, are killed or ignore stop signals; and
units that get ready, never do, fall ill or go mute on cue."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

from coursestack.procs import LaunchSpec, ProcessHandle
from coursestack.spec import CommandService, ServiceSpec


class FakeClock:
    """Virtual time: `advance()` wakes sleepers in order, letting tasks run in between."""

    def __init__(self) -> None:
        self.time = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self.time

    def wall(self) -> float:
        return 1_700_000_000.0 + self.time

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.time + seconds, next(self._order), future))
        await future

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        target = self.time + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self.time = max(self.time, when)
            if not future.done():
                future.set_result(None)
            await self.settle()
        self.time = target
        await self.settle()


class FakeProcess:
    """A process that exits when told to, or on the signals it honours."""

    _pids = itertools.count(1000)

    def __init__(self, honours: set[int]) -> None:
        self.pid = next(self._pids)
        self.signals: list[int] = []
        self.launched_at: float | None = None
        #: What its log pump would report ("" if nothing was dropped).
        self.note = ""
        self._honours = honours
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def exit(self, code: int) -> None:
        if not self._exit.done():
            self._exit.set_result(code)

    def signal_group(self, signum: int) -> None:
        self.signals.append(signum)
        if signum in self._honours or signum == signal.SIGKILL:
            self.exit(-signum)

    def kill_all(self) -> None:
        self.signal_group(signal.SIGKILL)

    async def all_exited(self) -> None:
        await self.wait()

    def output_note(self) -> str:
        return self.note


class FakeLauncher:
    """Starts FakeProcesses that run until told to exit and stop on SIGTERM or SIGINT."""

    #: The stop signals its processes obey (SIGKILL always works).
    honours: frozenset[int] = frozenset({signal.SIGTERM, signal.SIGINT})

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.launched: list[tuple[str, FakeProcess]] = []

    async def launch(self, spec: LaunchSpec) -> ProcessHandle:
        process = FakeProcess(set(self.honours))
        process.launched_at = self.clock.now() if self.clock else None
        name = spec.argv[0]
        self.launched.append((name, process))
        self.script(name, process)
        return process

    def script(self, name: str, process: FakeProcess) -> None:
        """What befalls each process once launched: nothing, here."""

    def last(self, name: str) -> FakeProcess:
        return [p for n, p in self.launched if n == name][-1]

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.launched if n == name)


class SigtermDeafLauncher(FakeLauncher):
    """Processes that ignore SIGTERM (SIGINT and SIGKILL still stop them)."""

    honours = frozenset({signal.SIGINT})


class StubbornLauncher(FakeLauncher):
    """Processes that ignore every stop signal: only SIGKILL, after the grace, ends them."""

    honours = frozenset()


class CrashingLauncher(FakeLauncher):
    """Every process exits with `exit_code` the moment it starts (a program that dies on
    its first line)."""

    def __init__(self, exit_code: int, clock: FakeClock | None = None) -> None:
        super().__init__(clock)
        self.exit_code = exit_code

    def script(self, name: str, process: FakeProcess) -> None:
        process.exit(self.exit_code)


class CrashesOnceLauncher(CrashingLauncher):
    """The first process exits with `exit_code` at once; the ones after it run."""

    def script(self, name: str, process: FakeProcess) -> None:
        if len(self.launched) == 1:
            process.exit(self.exit_code)


class KilledLauncher(FakeLauncher):
    """Each process dies of SIGKILL (a kill -9 from outside, or a crash) some seconds
    after its launch: `lives` is one figure for every process, or one per launch in turn."""

    def __init__(self, clock: FakeClock, lives: float | Iterable[float]) -> None:
        super().__init__(clock)
        self._lives = itertools.repeat(lives) if isinstance(lives, int | float) else iter(lives)

    def script(self, name: str, process: FakeProcess) -> None:
        assert self.clock is not None
        clock, life = self.clock, next(self._lives)

        async def later() -> None:
            await clock.sleep(life)
            process.exit(-signal.SIGKILL)

        task = asyncio.ensure_future(later())
        _scripts.add(task)
        task.add_done_callback(_scripts.discard)


#: Tasks of scripted deaths, kept so that they are not collected before they run.
_scripts: set[asyncio.Future[None]] = set()


class ScriptedUnit:
    """A service whose probe answers "ready" `ready_after` seconds after each launch."""

    stop_signal = signal.SIGTERM
    stop_timeout = 10.0

    def __init__(
        self, name: str, clock: FakeClock, ready_after: float = 1.0, **settings: object
    ) -> None:
        self.name = name
        self.spec: ServiceSpec = CommandService.model_validate(
            {"kind": "command", "command": [name], "probe": {"type": "none"}, **settings}
        )
        self.clock = clock
        self.ready_after = ready_after
        self.launched_at: float | None = None
        self.prepared = 0

    async def prepare(self) -> None:
        self.prepared += 1

    def launch_spec(self) -> LaunchSpec:
        self.launched_at = self.clock.now()
        return LaunchSpec(argv=[self.name], env={}, cwd=Path("/"), log_file=Path("/dev/null"))

    async def probe(self) -> bool:
        if self.launched_at is None:
            return False
        return self.clock.now() - self.launched_at >= self.ready_after

    async def after_ready(self, report: Callable[[str], None]) -> None:
        return None

    def log_tail(self, lines: int) -> list[str]:
        return [f"{self.name}: last words"]

    def explain_exit(self, code: int | None) -> str | None:
        return None


class NeverReadyUnit(ScriptedUnit):
    """A service whose process runs but never answers its probe."""

    def __init__(self, name: str, clock: FakeClock, **settings: object) -> None:
        super().__init__(name, clock, ready_after=float("inf"), **settings)


class FallsIllUnit(ScriptedUnit):
    """Ready as a ScriptedUnit; from `fall_ill()` until `recover()` its probe says no."""

    def __init__(self, name: str, clock: FakeClock, **settings: object) -> None:
        super().__init__(name, clock, ready_after=0.0, **settings)
        self._ill = False

    def fall_ill(self) -> None:
        self._ill = True

    def recover(self) -> None:
        self._ill = False

    async def probe(self) -> bool:
        return not self._ill and await super().probe()


class GoesMuteUnit(ScriptedUnit):
    """Ready as a ScriptedUnit; from `go_mute()` until `recover()` its probe never returns
    (a server that accepts the connection but does not answer)."""

    def __init__(self, name: str, clock: FakeClock, **settings: object) -> None:
        super().__init__(name, clock, ready_after=0.0, **settings)
        self._mute = False

    def go_mute(self) -> None:
        self._mute = True

    def recover(self) -> None:
        self._mute = False

    async def probe(self) -> bool:
        if self._mute:
            await asyncio.get_running_loop().create_future()
        return await super().probe()


class ReportsOnTheLoopUnit(ScriptedUnit):
    """Once ready, reports progress from the event loop and returns at once (a seed that
    changed and is not re-applied)."""

    async def after_ready(self, report: Callable[[str], None]) -> None:
        report("seed files changed; not re-applied")


class ReportsFromAThreadUnit(ScriptedUnit):
    """Once ready, reports progress from a worker thread (a seed being loaded)."""

    async def after_ready(self, report: Callable[[str], None]) -> None:
        await asyncio.to_thread(report, "seeding in a thread")
