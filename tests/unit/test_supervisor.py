"""The supervisor's state machine, driven by a fake clock and scripted processes."""

from __future__ import annotations

import asyncio
import itertools
import signal

from coursestack.supervisor import State, Supervisor, Timing
from fakes import (
    CrashesOnceLauncher,
    CrashingLauncher,
    FakeClock,
    FakeLauncher,
    FallsIllUnit,
    GoesMuteUnit,
    KilledLauncher,
    NeverReadyUnit,
    ReportsFromAThreadUnit,
    ReportsOnTheLoopUnit,
    ScriptedUnit,
    SigtermDeafLauncher,
    StubbornLauncher,
)


def build(
    *units: ScriptedUnit, launcher: FakeLauncher | None = None, clock: FakeClock | None = None
) -> tuple[Supervisor, FakeLauncher]:
    launcher = launcher or FakeLauncher()
    launcher.clock = units[0].clock
    supervisor = Supervisor(units, launcher, clock=units[0].clock, timing=Timing())
    return supervisor, launcher


def states(supervisor: Supervisor) -> dict[str, State]:
    return {name: s.status.state for name, s in supervisor.services.items()}


async def test_dependent_waits_for_ready_and_independents_start_together() -> None:
    clock = FakeClock()
    db = ScriptedUnit("db", clock, ready_after=3.0)
    cache = ScriptedUnit("cache", clock, ready_after=1.0)
    app = ScriptedUnit("app", clock, ready_after=1.0, depends_on=["db"])
    supervisor, launcher = build(db, cache, app)
    supervisor.start(["app", "cache"])
    await clock.advance(0.01)
    assert [n for n, _ in launcher.launched] == ["cache", "db"]  # together, app waits
    assert supervisor.services["app"].status.detail == "waiting for db"
    await clock.advance(2.0)
    assert states(supervisor) == {"db": State.STARTING, "cache": State.READY, "app": State.STARTING}
    await clock.advance(1.1)
    assert supervisor.services["db"].status.state is State.READY
    assert launcher.count("app") == 1 and app.launched_at is not None
    assert app.launched_at >= db.launched_at + 3.0  # type: ignore[operator]
    await clock.advance(1.1)
    assert states(supervisor) == {n: State.READY for n in ("db", "cache", "app")}
    await supervisor.stop_all()


async def test_started_condition_does_not_wait_for_ready() -> None:
    clock = FakeClock()
    db = ScriptedUnit("db", clock, ready_after=10.0)
    app = ScriptedUnit("app", clock, depends_on={"db": "started"})
    supervisor, launcher = build(db, app)
    supervisor.start(["app"])
    await clock.advance(0.5)
    assert launcher.count("app") == 1
    assert supervisor.services["db"].status.state is State.STARTING
    await supervisor.stop_all()


async def test_crash_is_restarted_with_exponential_backoff_then_fails() -> None:
    clock = FakeClock()
    unit = ScriptedUnit("flaky", clock, ready_after=0.0, max_restarts=3)
    launcher = CrashingLauncher(exit_code=3)
    supervisor, _ = build(unit, launcher=launcher)
    supervisor.start(["flaky"])
    launches_at = []
    for _ in range(40):
        before = launcher.count("flaky")
        await clock.advance(0.25)
        if launcher.count("flaky") > before:
            launches_at.append(clock.now())
    status = supervisor.services["flaky"].status
    assert status.state is State.FAILED
    assert launcher.count("flaky") == 4  # first start + 3 restarts
    gaps = [round(b - a) for a, b in itertools.pairwise(launches_at)]
    assert gaps == [1, 2, 4]
    assert "failed to start 4 times in a row" in status.reason
    assert "exited with code 3" in status.reason
    assert status.last_log == ["flaky: last words"]
    assert status.restarts == 3
    events = [e for e in supervisor.history if e.service == "flaky"]
    assert [e.state for e in events if e.state is State.BACKOFF] == [State.BACKOFF] * 3


async def test_backoff_resets_after_a_stable_period() -> None:
    clock = FakeClock()
    unit = ScriptedUnit("svc", clock, ready_after=0.0, max_restarts=2, stable_after=30)
    supervisor, launcher = build(unit)
    supervisor.start(["svc"])
    for _ in range(5):  # five crashes, each after a long stable run: never "failed"
        await clock.advance(60.0)
        launcher.last("svc").exit(1)
        before = clock.now()
        await clock.advance(0.01)  # restarted at once: it had been running well
        assert launcher.last("svc").launched_at == before
    assert supervisor.services["svc"].status.state is State.READY
    assert launcher.count("svc") == 6
    # Crashing again right away is a crash in a row: that one waits.
    launcher.last("svc").exit(1)
    await clock.advance(0.5)
    assert launcher.count("svc") == 6
    await clock.advance(1.0)
    assert launcher.count("svc") == 7
    await supervisor.stop_all()


async def test_clean_exit_with_on_failure_stops_and_never_fails() -> None:
    clock = FakeClock()
    supervisor, launcher = build(ScriptedUnit("job", clock, ready_after=0.0))
    supervisor.start(["job"])
    await clock.advance(1.0)
    launcher.last("job").exit(0)
    await clock.advance(5.0)
    status = supervisor.services["job"].status
    assert status.state is State.STOPPED and status.detail == "exited cleanly"
    assert launcher.count("job") == 1


async def test_restart_never_leaves_a_crash_failed() -> None:
    clock = FakeClock()
    supervisor, launcher = build(ScriptedUnit("once", clock, ready_after=0.0, restart="never"))
    supervisor.start(["once"])
    await clock.advance(1.0)
    launcher.last("once").exit(-9)
    await clock.advance(5.0)
    status = supervisor.services["once"].status
    assert status.state is State.FAILED and status.reason == "killed by signal 9"
    assert launcher.count("once") == 1


async def test_start_timeout_counts_as_a_failed_start() -> None:
    clock = FakeClock()
    unit = NeverReadyUnit("slow", clock, start_timeout=5, max_restarts=0)
    supervisor, launcher = build(unit)
    supervisor.start(["slow"])
    await clock.advance(10.0)
    status = supervisor.services["slow"].status
    assert status.state is State.FAILED
    assert "not ready after 5 s" in status.reason
    assert launcher.last("slow").signals[0] == signal.SIGTERM


async def test_liveness_restarts_a_live_process_that_stops_answering() -> None:
    clock = FakeClock()
    unit = FallsIllUnit("hung", clock, probe_interval=1, liveness_failures=3)
    supervisor, launcher = build(unit)
    supervisor.start(["hung"])
    await clock.advance(1.0)
    first = launcher.last("hung")
    unit.fall_ill()
    await clock.advance(1.01)
    assert supervisor.services["hung"].status.state is State.UNHEALTHY
    assert supervisor.services["hung"].status.detail == "health probe failed (1/3)"
    await clock.advance(2.01)
    assert first.returncode is not None  # killed by us
    unit.recover()
    await clock.advance(2.0)
    status = supervisor.services["hung"].status
    assert status.state is State.READY and launcher.count("hung") == 2
    assert status.restarts == 1
    await supervisor.stop_all()


async def test_stop_runs_in_reverse_dependency_order_and_escalates_to_sigkill() -> None:
    clock = FakeClock()
    db = ScriptedUnit("db", clock, ready_after=0.0)
    app = ScriptedUnit("app", clock, ready_after=0.0, depends_on=["db"])
    stubborn = SigtermDeafLauncher()
    supervisor, launcher = build(db, app, launcher=stubborn)
    supervisor.start(["app"])
    await clock.advance(1.0)
    order: list[str] = []
    supervisor.add_listener(lambda e: order.append(e.service) if e.state is State.STOPPED else None)
    stopping = asyncio.ensure_future(supervisor.stop_all())
    await clock.advance(10.5)  # app's grace period passes: SIGKILL
    await clock.advance(10.5)
    await stopping
    assert order == ["app", "db"]
    assert launcher.last("app").signals[:2] == [signal.SIGTERM, signal.SIGKILL]
    assert states(supervisor) == {"db": State.STOPPED, "app": State.STOPPED}


async def test_stop_during_backoff_and_start_again() -> None:
    clock = FakeClock()
    unit = ScriptedUnit("svc", clock, ready_after=0.0)
    supervisor, _launcher = build(unit, launcher=CrashesOnceLauncher(exit_code=1))
    supervisor.start(["svc"])
    await clock.advance(0.1)
    assert supervisor.services["svc"].status.state is State.BACKOFF
    await supervisor.services["svc"].stop()
    assert supervisor.services["svc"].status.state is State.STOPPED
    supervisor.start(["svc"])
    await clock.advance(0.1)
    assert supervisor.services["svc"].status.state is State.READY
    await supervisor.stop_all()
    assert supervisor.services["svc"].status.state is State.STOPPED


async def test_memory_limit_restarts_a_service_over_it_three_probes_in_a_row() -> None:
    clock = FakeClock()
    unit = ScriptedUnit(
        "hog", clock, ready_after=0.0, probe_interval=1, memory_limit="100M", restart="never"
    )
    usage = {"bytes": 50 * 2**20}
    launcher = FakeLauncher()
    supervisor = Supervisor(
        [unit], launcher, clock=clock, timing=Timing(), memory_of=lambda pid: usage["bytes"]
    )
    supervisor.start(["hog"])
    await clock.advance(5.0)
    assert supervisor.services["hog"].status.state is State.READY
    usage["bytes"] = 300 * 2**20
    await clock.advance(2.05)
    assert supervisor.services["hog"].status.state is State.READY  # two samples: not yet
    await clock.advance(1.0)
    status = supervisor.services["hog"].status
    assert status.state is State.FAILED
    assert "used 300 MB, above its memory_limit of 100M" in status.reason
    assert launcher.last("hog").signals[0] == signal.SIGTERM


async def test_a_kill_storm_of_a_ready_service_never_ends_in_failed() -> None:
    clock = FakeClock()
    unit = ScriptedUnit("db", clock, ready_after=0.3)
    launcher = KilledLauncher(clock, lives=2.5)  # ready, then kill -9
    supervisor, _ = build(unit, launcher=launcher)
    supervisor.start(["db"])
    await clock.advance(2.6 * 12)
    status = supervisor.services["db"].status
    assert status.state is not State.FAILED, status.reason
    assert launcher.count("db") >= 12
    launch_times = [p.launched_at for _, p in launcher.launched]
    gaps = [b - a for a, b in itertools.pairwise(launch_times)]  # type: ignore[operator]
    assert max(gaps) < 2.6  # each restart at once: it had been ready for 2.2 s
    assert all(
        e.detail == "restarting in 0 s" for e in supervisor.history if e.state is State.BACKOFF
    )
    await supervisor.stop_all()


async def test_more_starts_than_burst_within_interval_is_a_crash_loop() -> None:
    clock = FakeClock()
    unit = ScriptedUnit("loop", clock, ready_after=0.1, stable_after=0.5, burst=5, interval=10)
    launcher = KilledLauncher(clock, lives=1.5)  # ready 1.4 s, then dies
    supervisor, _ = build(unit, launcher=launcher)
    supervisor.start(["loop"])
    await clock.advance(20.0)
    status = supervisor.services["loop"].status
    assert status.state is State.FAILED
    assert launcher.count("loop") == 5  # the sixth start within 10 s is refused
    assert status.reason == (
        "started 5 times within 10 s (burst = 5), a crash loop; last: killed by signal 9"
    )
    await clock.advance(60.0)
    assert supervisor.services["loop"].status.reason == status.reason  # failed keeps it


async def test_backoff_grows_between_quick_crashes_and_resets_when_stable() -> None:
    clock = FakeClock()
    unit = ScriptedUnit("svc", clock, ready_after=0.1, stable_after=2.0, max_restarts=5)
    launcher = KilledLauncher(clock, lives=[0.2, 0.2, 0.2, 5.0, 0.2, 99.0])
    supervisor, _ = build(unit, launcher=launcher)
    supervisor.start(["svc"])
    await clock.advance(40.0)
    waits = [e.detail for e in supervisor.history if e.state is State.BACKOFF]
    # Three quick crashes: 1, 2, 4 s; then one after 4.9 s ready: at once; then 1 s again.
    assert waits == [
        "restarting in 1 s",
        "restarting in 2 s",
        "restarting in 4 s",
        "restarting in 0 s",
        "restarting in 1 s",
    ]
    assert supervisor.services["svc"].status.state is State.READY
    await supervisor.stop_all()


async def test_a_start_that_never_gets_ready_fails_after_max_restarts_in_a_row() -> None:
    clock = FakeClock()
    unit = NeverReadyUnit("mute", clock, start_timeout=2, max_restarts=2)
    supervisor, launcher = build(unit)
    supervisor.start(["mute"])
    await clock.advance(60.0)
    status = supervisor.services["mute"].status
    assert status.state is State.FAILED and launcher.count("mute") == 3
    assert status.reason == "failed to start 3 times in a row; last: not ready after 2 s"


async def test_liveness_restart_shows_the_last_failure_and_stopping_in_its_grace() -> None:
    clock = FakeClock()
    unit = FallsIllUnit("hung", clock, probe_interval=1, liveness_failures=3)
    stubborn = StubbornLauncher()  # the grace runs out
    supervisor, launcher = build(unit, launcher=stubborn)
    supervisor.start(["hung"])
    await clock.advance(1.0)
    unit.fall_ill()
    await clock.advance(3.05)
    status = supervisor.services["hung"].status
    assert status.state is State.STOPPING
    assert status.detail == (
        "stopping to restart: stopped answering its health probe (3 failures in a row)"
    )
    details = [e.detail for e in supervisor.history if e.state is State.UNHEALTHY]
    assert details == [f"health probe failed ({n}/3)" for n in (1, 2, 3)]
    await clock.advance(10.0)  # the grace period ends: SIGKILL, then a new start
    unit.recover()
    await clock.advance(2.0)
    assert launcher.count("hung") == 2 and status.state is State.READY
    await stop_in_fake_time(supervisor, clock)


async def stop_in_fake_time(supervisor: Supervisor, clock: FakeClock) -> None:
    """Stop everything while moving the fake clock (grace periods pass)."""
    stopping = asyncio.ensure_future(supervisor.stop_all())
    while not stopping.done():
        await clock.advance(0.5)
    await stopping


async def test_stop_with_a_deadline_ends_every_wave_by_it() -> None:
    clock = FakeClock()
    units = [
        ScriptedUnit("db", clock, ready_after=0.0),
        ScriptedUnit("app", clock, ready_after=0.0, depends_on=["db"]),
        ScriptedUnit("web", clock, ready_after=0.0, depends_on=["app"]),
    ]
    stubborn = StubbornLauncher()  # each would take its whole 10 s grace
    supervisor, launcher = build(*units, launcher=stubborn)
    supervisor.start(["web"])
    await clock.advance(1.0)
    started = clock.now()
    stopping = asyncio.ensure_future(supervisor.stop_all(deadline=12.0))
    while not stopping.done():
        await clock.advance(0.5)
    assert clock.now() - started <= 12.0
    assert states(supervisor) == {n: State.STOPPED for n in ("db", "app", "web")}
    assert all(signal.SIGKILL in p.signals for _, p in launcher.launched)


async def test_what_the_log_pump_dropped_is_shown() -> None:
    clock = FakeClock()
    supervisor, launcher = build(ScriptedUnit("talker", clock, ready_after=0.0, probe_interval=1))
    supervisor.start(["talker"])
    await clock.advance(1.0)
    launcher.last("talker").note = "log not written (No space left on device); 2 MB ..."
    await clock.advance(1.1)
    assert supervisor.services["talker"].status.note.startswith("log not written")
    assert any(e.detail.startswith("log not written") for e in supervisor.history)
    await supervisor.stop_all()


async def test_a_probe_that_never_returns_counts_as_failed() -> None:
    clock = FakeClock()
    unit = GoesMuteUnit("mute", clock, probe_interval=1, liveness_failures=2)
    launcher = FakeLauncher(clock=clock)
    supervisor = Supervisor([unit], launcher, clock=clock, timing=Timing(probe_timeout=0.01))
    supervisor.start(["mute"])
    await clock.advance(0.5)
    assert supervisor.services["mute"].status.state is State.READY
    unit.go_mute()
    for _ in range(3):  # each probe waits its (real, 10 ms) time limit
        await clock.advance(1.0)
        await asyncio.sleep(0.05)
    details = [e.detail for e in supervisor.history if e.state is State.UNHEALTHY]
    assert details[:2] == ["health probe failed (1/2)", "health probe failed (2/2)"]
    assert launcher.count("mute") == 2  # restarted: a hung probe is no answer
    unit.recover()
    await stop_in_fake_time(supervisor, clock)


async def test_progress_reported_after_ready_never_outlives_the_ready_state() -> None:
    clock = FakeClock()
    on_loop = ReportsOnTheLoopUnit("postgres", clock)
    in_thread = ReportsFromAThreadUnit("mongo", clock)
    supervisor, _ = build(on_loop, in_thread)
    supervisor.start(["postgres", "mongo"])
    for _ in range(20):
        await clock.advance(0.2)
        await asyncio.sleep(0.01)  # lets the thread's report land
    assert states(supervisor) == {"postgres": State.READY, "mongo": State.READY}
    await supervisor.stop_all()
