"""`up` forks its daemon (no second interpreter, no typer or rich in it) and hears
readiness over a pipe; the spawn path (Windows; forced here) still works."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from coursestack import daemon_start
from support import cli, wait_for

#: A service that is ready once the test creates the file `go`, so the test can look
#: at the daemon and `up` while `up` waits.
GATED = """[course]
name = "gated"
[services.gated]
kind = "command"
command = ["sleep", "600"]
probe = {{ type = "exec", command = ["test", "-e", "{go}"] }}
"""


def _record(state: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads((state / "run" / "daemon.json").read_text())
    except (OSError, ValueError):
        return None
    return record


def _pipes(pid: int) -> set[str]:
    """The pipes process `pid` holds open (as `pipe:[inode]`)."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("pipe:"):
            found.add(target)
    return found


@pytest.fixture
def gated(workdir: Path) -> Iterator[tuple[Path, Path, Path]]:
    go, state = workdir / "go", workdir / "state"
    spec = workdir / "course.toml"
    spec.write_text(GATED.format(go=go))
    yield spec, state, go
    cli("down", "--state", str(state), check=False)


def _up_in_background(spec: Path, state: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "coursestack", "up", str(spec), "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_up_starts_its_daemon_and_hears_readiness_over_a_pipe(
    gated: tuple[Path, Path, Path], method: str
) -> None:
    spec, state, go = gated
    up = _up_in_background(spec, state, COURSESTACK_DAEMON_START=method)
    try:
        wait_for(lambda: _record(state) is not None, what="the daemon's record")
        record = _record(state)
        assert record is not None
        pid = int(record["pid"])
        daemon = psutil.Process(pid)
        assert record["start_method"] == method
        # Forked (or spawned) by the `up` process itself, in a session of its own.
        assert daemon.ppid() == up.pid
        assert os.getsid(pid) == pid
        assert os.readlink(f"/proc/{pid}/exe") == os.readlink(f"/proc/{up.pid}/exe")
        # Named as before in `ps` (tools find daemons by this line).
        assert "daemon" in daemon.cmdline() and str(state) in daemon.cmdline()
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            assert "Umask:\t0077" in status.read()
        assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
        assert os.readlink(f"/proc/{pid}/fd/2") == str(state / "logs" / "daemon.log")
        # `up` waits on a pipe the daemon writes to; nothing else is shared.
        wait_for(lambda: _pipes(up.pid) & _pipes(pid), what="the readiness pipe")
        readiness_pipe = _pipes(up.pid) & _pipes(pid)
        assert up.poll() is None  # still waiting: gated is not ready
        go.touch()
        out, err = up.communicate(timeout=120)
        assert up.returncode == 0, err
        assert "gated" in out and "ready" in out and "Dashboard:" in out
        assert not (readiness_pipe & _pipes(pid))  # the daemon closed it once all were ready
        assert daemon.is_running()
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()


def test_a_service_that_fails_fails_up_at_once_with_its_reason(workdir: Path) -> None:
    spec, state = workdir / "course.toml", workdir / "state"
    spec.write_text(
        '[course]\nname = "halfbroken"\n'
        '[services.never]\nkind = "command"\ncommand = ["sleep", "600"]\n'
        'probe = { type = "exec", command = ["false"] }\n'
        '[services.broken]\nkind = "command"\n'
        'command = ["sh", "-c", "echo no-config-here >&2; exit 3"]\n'
        'probe = { type = "exec", command = ["false"] }\nmax_restarts = 0\n'
    )
    try:
        result = cli("up", str(spec), "--state", str(state), "--timeout", "600", check=False)
        assert result.returncode == 1
        assert "broken failed: exited with code 3" in result.stderr
        assert "no-config-here" in result.stderr
        assert "Traceback" not in result.stderr
        # `up` did not wait for the other one (it can never be ready).
        shown = json.loads(cli("status", "--json", "--state", str(state)).stdout)
        states = {s["name"]: s["state"] for s in shown["services"]}
        assert states == {"never": "starting", "broken": "failed"}
    finally:
        cli("down", "--state", str(state), check=False)


#: Runs `coursestack up` with the daemon replaced by a report of what the forked child
#: has: it writes the facts and exits (so `up` then says the daemon stopped).
_REPORT_CHILD = r"""
import json, os, signal, sys, threading
from coursestack import daemon_start

report = sys.argv.pop(1)

def report_instead(state_root, course, log_path, notify_fd):
    daemon_start.become_daemon(log_path, keep_fd=notify_fd)
    facts = {
        "pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0),
        "threads": threading.active_count(),
        "ui": sorted(m for m in sys.modules if m.split(".")[0] in
                     ("typer", "rich", "click", "coursestack.cli")),
        "cli": "coursestack.cli" in sys.modules,
        "spec_loaded": course.course.name,
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "notify_fd": notify_fd,
        "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
    }
    with open(report, "w") as out:
        json.dump(facts, out)
    return 0

daemon_start._run_forked_daemon = report_instead
from coursestack.entry import main
main()
"""


def test_the_forked_daemon_has_no_ui_libraries_thread_or_stray_descriptor(
    gated: tuple[Path, Path, Path], workdir: Path
) -> None:
    spec, state, _go = gated
    report = workdir / "report.json"
    up = subprocess.run(
        [sys.executable, "-c", _REPORT_CHILD, str(report), "up", str(spec), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != daemon_start.START_METHOD_VARIABLE},
    )
    facts = json.loads(report.read_text())
    assert facts["ui"] == [] and not facts["cli"]
    assert facts["spec_loaded"] == "gated"  # the CLI's spec, not loaded again
    assert facts["threads"] == 1
    assert facts["sid"] == facts["pid"]
    # Beyond stdio and the readiness pipe, only the listing's own (for /proc/self/fd).
    assert len(set(facts["fds"]) - {0, 1, 2, facts["notify_fd"]}) <= 1
    assert facts["sigterm_default"]
    # The CLI heard the pipe close without a verdict and says why.
    assert up.returncode == 1 and "the daemon stopped at once (exit 0)" in up.stderr


def test_no_fork_while_a_thread_runs(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    def no_fork() -> int:
        raise AssertionError("forked with a thread running")

    monkeypatch.setattr(os, "fork", no_fork)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(RuntimeError, match="threads running"):
            daemon_start.fork_daemon(workdir, None, workdir / "log")  # type: ignore[arg-type]
    finally:
        stop.set()
        thread.join()


def test_spawn_where_fork_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(daemon_start.START_METHOD_VARIABLE, "spawn")
    assert daemon_start.start_method() == "spawn"
    monkeypatch.delenv(daemon_start.START_METHOD_VARIABLE)
    assert daemon_start.start_method() == ("fork" if hasattr(os, "fork") else "spawn")
    assert signal.getsignal(signal.SIGTERM) is not None
