"""`coursestack doctor`: each check finds what it should, in plain words, with a next step."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coursestack.doctor import (
    Finding,
    check_clock,
    check_daemon_stopped,
    check_free_disk,
    check_locale,
    check_memory,
    check_ports,
    check_program,
    check_python,
    check_recent_failures,
    check_service,
    check_state_folder,
    check_timezone,
    run_doctor,
    summary,
    worst,
)
from coursestack.instances import Instance
from coursestack.procs import process_identity
from coursestack.spec import load_spec
from coursestack.state import StateFolder, atomic_write_json
from coursestack.units import MB
from support import cli

HOUR = 3600.0


def write_course(folder: Path, services: str, budget: str = "") -> Path:
    spec = folder / "course.toml"
    spec.write_text(f'[course]\nname = "doc-test"\n{budget}\n\n{services}', encoding="utf-8")
    return spec


def set_up(folder: Path, spec: Path, name: str = "doc-test") -> Instance:
    """An instance record pointing at `spec`, as `up` writes it (nothing started)."""
    state = StateFolder(folder / "state")
    state.create()
    atomic_write_json(state.instance_file, {"name": name, "spec": str(spec)})
    return Instance(name, state)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


# -- single checks --------------------------------------------------------------------------


def test_python_version() -> None:
    assert check_python().status == "ok"
    old = check_python((3, 9, 2))
    assert old.status == "fail" and "3.9.2 is too old" in old.what and "3.11" in old.next_step


def test_disk_thresholds(workdir: Path) -> None:
    assert check_free_disk(workdir).status == "ok"
    huge = 1 << 60
    low = check_free_disk(workdir, warn_below=huge, fail_below=1)
    assert low.status == "warn" and "free" in low.what
    out = check_free_disk(workdir / "not" / "yet", warn_below=huge, fail_below=huge)
    assert out.status == "fail" and "PostgreSQL stops" in out.what and out.next_step


def test_secrets_readable_by_others_are_reported(workdir: Path) -> None:
    state = StateFolder(workdir / "state")
    state.create()
    secrets = state.run / "secrets.json"
    atomic_write_json(secrets, {"x": "y"}, 0o600)
    assert [f.status for f in check_state_folder(state)] == ["ok"]
    os.chmod(secrets, 0o644)
    (finding,) = check_state_folder(state)
    assert finding.status == "warn" and str(secrets) in finding.what
    assert finding.next_step == f"chmod 600 {secrets}"


def test_missing_program_says_how_to_install_it(workdir: Path) -> None:
    spec = load_spec(
        write_course(
            workdir,
            (
                '[services.db]\nkind = "postgres"\nbinaries = "/nonexistent/pg/bin"\n\n'
                '[services.tool]\nkind = "command"\ncommand = "no-such-program-xyz --go"\n'
                'probe = { type = "none" }\nstart = "manual"\n'
            ),
        )
    )
    db = check_program("db", spec.services["db"], spec)
    assert db.status == "fail" and "no `postgres` program in /nonexistent/pg/bin" in db.what
    assert "pgserver" in db.next_step
    tool = check_program("tool", spec.services["tool"], spec)
    # A service that only starts on request cannot break `up`: a warning, not a failure.
    assert tool.status == "warn" and "'no-such-program-xyz' not found" in tool.what
    assert "only starts on request" in tool.what


def test_found_program_reports_its_version(workdir: Path) -> None:
    spec = load_spec(write_course(workdir, '[services.db]\nkind = "postgres"\n'))
    found = check_program("db", spec.services["db"], spec)
    assert found.status == "ok" and "PostgreSQL" in found.what


def test_port_taken_by_another_program_names_it(workdir: Path, listener: socket.socket) -> None:
    taken = listener.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    spec_path = write_course(
        workdir,
        (
            f'[dashboard]\nport = {free}\n\n[services.web]\nkind = "command"\n'
            f'command = "python -m http.server {{port}}"\nport = {taken}\n'
        ),
    )
    instance = set_up(workdir, spec_path)
    findings = {f.check: f for f in check_ports(load_spec(spec_path), instance, alive=False)}
    assert findings["port:dashboard"].status == "ok"
    assert findings["port:dashboard"].what == f"Port {free} (dashboard) is free."
    web = findings["port:web"]
    me = os.path.basename(sys.executable)
    assert web.status == "warn", web
    assert f"Port {taken} (web) is taken by `" in web.what
    assert f"(pid {os.getpid()}); coursestack will use another port" in web.what
    assert me[:6] in web.what
    assert web.next_step == "nothing to do"


def test_port_held_by_a_process_a_dead_daemon_left(workdir: Path) -> None:
    """A service left running by a daemon killed with -9: doctor says `down` stops it."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        spec_path = write_course(
            workdir, (f'[services.web]\nkind = "command"\ncommand = "x"\nport = {port}\n')
        )
        instance = set_up(workdir, spec_path)
        atomic_write_json(
            instance.state.run / "pids.json",
            {"web": {"pid": child.pid, "created": process_identity(child.pid)}},
        )
        atomic_write_json(instance.state.daemon_file, {"pid": 999999999, "url": "x"})
        findings = {f.check: f for f in check_ports(load_spec(spec_path), instance, False)}
        web = findings["port:web"]
        assert web.status == "warn" and "left running by this instance's daemon" in web.what
        assert "coursestack down" in web.next_step
        stopped = check_daemon_stopped(instance)
        assert stopped.status == "warn" and "stopped without cleaning up" in stopped.what
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_memory_headroom(workdir: Path) -> None:
    spec = load_spec(
        write_course(workdir, '[services.db]\nkind = "postgres"\n', 'memory_budget = "10M"')
    )
    short = check_memory(spec, available=20 * MB)
    assert short[0].status == "fail"
    assert short[0].what == "The course needs about 60 MB of memory but only 20 MB is free."
    tight = check_memory(spec, available=100 * MB)
    assert tight[0].status == "warn" and "little room" in tight[0].what
    plenty = check_memory(spec, available=8192 * MB)
    assert plenty[0].status == "ok"
    # The budget of 10M is smaller than PostgreSQL alone: the course team should know.
    assert plenty[1].check == "memory-budget" and plenty[1].status == "warn"
    running = check_memory(spec, measured={"db": 50 * MB}, available=8192 * MB)
    assert running[0].status == "ok" and "uses 50 MB" in running[0].what


def test_recent_failures_come_from_the_history() -> None:
    now = 1_800_000_000.0
    history: list[dict[str, Any]] = [
        {
            "time": now - 30 * HOUR,
            "service": "db",
            "state": "failed",
            "previous": "backoff",
            "reason": "too old to count",
        },
        {
            "time": now - 2 * HOUR,
            "service": "db",
            "state": "backoff",
            "previous": "ready",
            "reason": "exited with status 1",
        },
        {"time": now - 2 * HOUR + 5, "service": "db", "state": "starting", "previous": "backoff"},
        {
            "time": now - 1 * HOUR,
            "service": "db",
            "state": "backoff",
            "previous": "ready",
            "reason": "exited with status 1",
        },
        {
            "time": now - 60,
            "service": "db",
            "state": "failed",
            "previous": "backoff",
            "reason": "crashed 5 times in a row\nmore detail",
        },
        {"time": now - 60, "service": "notebooks", "state": "ready", "previous": "starting"},
        {"garbage": True},
    ]
    (finding,) = check_recent_failures(history, now=now)
    assert finding.status == "warn" and finding.check == "history:db"
    assert "db crashed 2 times, failed 1 times in the last 24 hours" in finding.what
    assert finding.what.endswith(": crashed 5 times in a row).")
    assert "coursestack logs db" in finding.next_step
    calm = check_recent_failures(history[-2:], now=now)
    assert [f.status for f in calm] == ["ok"]


@pytest.mark.parametrize(
    ("state", "status", "words"),
    [
        ("ready", "ok", "db is ready"),
        ("failed", "fail", "db has failed: port in use"),
        ("backoff", "warn", "crashed and will be restarted"),
        ("unhealthy", "warn", "does not answer its health checks"),
        ("stopped", "warn", "db is stopped."),
    ],
)
def test_service_states_in_plain_words(state: str, status: str, words: str) -> None:
    finding = check_service(
        {
            "name": "db",
            "state": state,
            "reason": "port in use\ntrace",
            "detail": "",
            "port": 5432,
            "restarts": 1,
            "start": "always",
        }
    )
    assert finding.status == status and words in finding.what
    assert (finding.next_step != "") == (status != "ok")


def test_stopped_on_request_service_is_fine() -> None:
    finding = check_service({"name": "refine", "state": "stopped", "start": "on-demand"})
    assert finding.status == "ok" and "starts on request" in finding.what


def test_clock() -> None:
    now = time.time()
    assert check_clock(now, now - 86400)[0].status == "ok"
    behind = check_clock(now - 5 * 86400, now)[0]
    assert behind.status == "fail" and "before coursestack was installed" in behind.what
    jumped = check_clock(now, now - 86400, [{"time": now + 3600}])[0]
    assert jumped.status == "warn" and "the clock went back" in jumped.what


def test_time_zone() -> None:
    assert check_timezone({})[0].status == "ok"
    assert check_timezone({"TZ": "Europe/London"})[0].status == "ok"
    assert check_timezone({"TZ": "UTC0"})[0].status == "ok"  # a POSIX TZ rule
    bad = check_timezone({"TZ": "Mars/Olympus_Mons"})[0]
    assert bad.status == "warn" and "TZ=Mars/Olympus_Mons" in bad.what and bad.next_step


def test_locale() -> None:
    base = {"PATH": os.environ.get("PATH", "")}
    good = check_locale({**base, "LANG": "C.UTF-8"})[0]
    assert good.status == "ok" and "UTF-8" in good.what
    missing = check_locale({**base, "LC_ALL": "xx_NOWHERE.UTF-8"})[0]
    assert missing.status == "warn" and "not installed" in missing.what
    assert "LANG=C.UTF-8" in missing.next_step


def test_summary_points_at_the_first_failure() -> None:
    findings = [
        Finding("ok", "a", "fine"),
        Finding("warn", "b", "hm", "look"),
        Finding("fail", "c", "broken", "fix c"),
        Finding("fail", "d", "also", "fix d"),
    ]
    assert worst(findings) == "fail" and worst(findings[:2]) == "warn"
    assert summary(findings) == "2 problem(s) found. Start here: fix c"
    assert summary(findings[:1]) == "Everything looks fine."


# -- the whole doctor -----------------------------------------------------------------------


def test_doctor_command_fails_with_next_steps_for_a_broken_course(workdir: Path) -> None:
    spec = write_course(workdir, '[services.db]\nkind = "postgres"\nbinaries = "/nope"\n')
    instance = set_up(workdir, spec)
    result = cli("doctor", "--state", str(instance.state.root), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL db (postgres) cannot start: no `postgres` program in /nope" in result.stdout
    assert "next:" in result.stdout and "Start here:" in result.stdout
    assert "Traceback" not in result.stderr
    data = json.loads(
        cli("doctor", "--json", "--state", str(instance.state.root), check=False).stdout
    )
    assert data["status"] == "fail"
    assert {"status", "check", "what", "next_step"} <= set(data["findings"][0])


def test_doctor_names_spec_mistakes(workdir: Path) -> None:
    spec = write_course(workdir, '[services.db]\nkind = "postgress"\n')
    instance = set_up(workdir, spec)
    findings = run_doctor(instance)
    (problem,) = [f for f in findings if f.check == "spec"]
    assert problem.status == "fail" and "unknown kind 'postgress'" in problem.what
    assert f"{spec}:" in problem.what
