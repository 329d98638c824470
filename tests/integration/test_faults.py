"""Faults real laptops and cheap hosts produce, with real processes: each is survived
and nothing committed is lost. (docs/reliability.md lists them with what was kept.)"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pymongo
import pytest

from coursestack.instances import sample_course_source
from support import ACCOUNTS_SEEN, cli, open_folder, wait_for

pytestmark = pytest.mark.slow


def status(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        cli("status", "--json", "--state", str(state), check=False).stdout
    )
    return data


def services(state: Path) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in status(state).get("services", [])}


def connections(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "connections.json").read_text())["services"]
    return data


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def course_copy(folder: Path, edit: Any = None) -> Path:
    shutil.copytree(sample_course_source(), folder / "course")
    spec = folder / "course" / "course.toml"
    if edit is not None:
        spec.write_text(edit(spec.read_text()))
    return spec


@pytest.fixture
def instance() -> Iterator[Path]:
    folder = open_folder("faults-")
    spec = course_copy(folder)
    cli("up", str(spec), "--state", str(folder / "state"))
    yield folder / "state"
    cli("down", "--state", str(folder / "state"), check=False)


def test_kill_9_each_service_in_turn_repeatedly(instance: Path) -> None:
    with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
        conn.execute("INSERT INTO students_notes (note) VALUES ('survives')")
    client: Any = pymongo.MongoClient(connections(instance)["mongo"]["url"])
    client["teaching"].notes.insert_one({"note": "survives"})
    client.close()
    names = ["postgres", "mongo", "jupyter"]
    for _ in range(2):
        for name in names:
            victim = services(instance)[name]["pid"]
            os.kill(victim, signal.SIGKILL)
            wait_for(
                lambda n=name, v=victim: (
                    services(instance)[n]["state"] == "ready" and services(instance)[n]["pid"] != v
                ),
                what=f"{name} back",
            )
    found = services(instance)
    # Each of our kills is seen, named and healed. A loaded machine may add a restart of
    # its own (a probe that timed out), so the counts are "at least", never exact.
    assert all(found[name]["restarts"] >= 2 for name in names), found
    lines = (instance / "logs" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    for name in names:
        killed = [
            e
            for e in events
            if e["service"] == name
            and e["state"] == "backoff"
            and "killed by signal 9" in e["reason"]
        ]
        assert len(killed) == 2, (name, killed)
    with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
        assert conn.execute(
            "SELECT count(*) FROM students_notes WHERE note = 'survives'"
        ).fetchone() == (1,)
    client = pymongo.MongoClient(connections(instance)["mongo"]["url"])
    assert client["teaching"].notes.count_documents({"note": "survives"}) == 1
    client.close()


def _start_up_in_background(spec: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "coursestack", "up", str(spec), "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_daemon_when(state: Path, condition: Any) -> list[int]:
    """Wait for `condition(services)`, then kill -9 the daemon; return the service pids."""
    wait_for(lambda: (state / "run" / "daemon.json").exists(), what="daemon")
    daemon_pid = json.loads((state / "run" / "daemon.json").read_text())["pid"]
    wait_for(lambda: condition(services(state)), timeout=60, what="the moment to strike")
    pids = [s["pid"] for s in services(state).values() if s["pid"]]
    os.kill(daemon_pid, signal.SIGKILL)
    return pids


def test_kill_9_of_the_daemon_while_starting(workdir: Path) -> None:
    spec, state = course_copy(workdir), workdir / "state"
    up = _start_up_in_background(spec, state)
    pids = _kill_daemon_when(
        state, lambda s: s and s["postgres"]["pid"] and s["jupyter"]["state"] != "ready"
    )
    up.communicate(timeout=60)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="no orphans")
    try:
        cli("up", str(spec), "--state", str(state))
        assert all(
            s["state"] == "ready" for s in services(state).values() if s["start"] == "always"
        )
        with psycopg.connect(connections(state)["postgres"]["url"]) as conn:
            assert conn.execute("SELECT count(*) FROM anscombe").fetchone() == (44,)
    finally:
        cli("down", "--state", str(state), check=False)


def test_kill_9_of_the_daemon_while_seeding_is_not_taken_as_seeded(workdir: Path) -> None:
    def slow_seed(text: str) -> str:
        return text.replace(
            'seed = ["seed/teaching.sql", "seed/countries.csv"]',
            'seed = ["seed/teaching.sql", "seed/slow.sql", "seed/countries.csv"]',
        )

    spec, state = course_copy(workdir, slow_seed), workdir / "state"
    slow = spec.parent / "seed" / "slow.sql"
    # Long enough that however slowly the test sees the moment, it is still seeding (the
    # kill ends the sleep: PostgreSQL's fast shutdown cancels it).
    slow.write_text("INSERT INTO students_notes (note) VALUES ('seeded');\nSELECT pg_sleep(600);\n")
    up = _start_up_in_background(spec, state)
    pids = _kill_daemon_when(state, lambda s: s and "slow.sql" in s["postgres"]["detail"])
    up.communicate(timeout=60)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="no orphans")
    assert not (state / "data" / "postgres" / "seeded.json").exists()
    slow.write_text("INSERT INTO students_notes (note) VALUES ('seeded');\n")
    try:
        cli("up", str(spec), "--state", str(state))
        with psycopg.connect(connections(state)["postgres"]["url"]) as conn:
            assert conn.execute("SELECT count(*) FROM students_notes").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM countries").fetchone() == (18,)
            assert conn.execute("SELECT count(*) FROM coursestack.seed").fetchone() == (1,)
    finally:
        cli("down", "--state", str(state), check=False)


def test_hard_stop_of_everything_while_postgres_writes(instance: Path) -> None:
    url = connections(instance)["postgres"]["url"]
    committed: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                for number in range(1_000_000):
                    if stop.is_set():
                        return
                    conn.execute("INSERT INTO students_notes (note) VALUES (%s)", (f"w{number}",))
                    committed.append(number)  # only after the server said COMMIT
        except psycopg.Error:
            return  # the power went

    thread = threading.Thread(target=writer)
    thread.start()
    wait_for(lambda: len(committed) > 200, what="writes")
    # A power cut: the daemon and every service process die at the same instant.
    doomed = [json.loads((instance / "run" / "daemon.json").read_text())["pid"]]
    for service in services(instance).values():
        if service["pid"]:
            doomed += [
                service["pid"],
                *(c.pid for c in psutil.Process(service["pid"]).children(True)),
            ]
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop.set()
    thread.join(timeout=30)
    cli("up", "--state", str(instance))
    with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
        kept = {
            row[0] for row in conn.execute("SELECT note FROM students_notes WHERE note LIKE 'w%'")
        }
    missing = [n for n in committed if f"w{n}" not in kept]
    assert not missing, f"{len(missing)} committed rows lost"


def test_preferred_port_stolen_between_two_runs(instance: Path) -> None:
    port = services(instance)["postgres"]["port"]
    cli("down", "--state", str(instance))
    thief = socket.socket()
    thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    thief.bind(("127.0.0.1", port))
    thief.listen()
    try:
        cli("up", "--state", str(instance))
        moved = services(instance)["postgres"]["port"]
        assert moved != port and connections(instance)["postgres"]["port"] == moved
        with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
            assert conn.execute("SELECT count(*) FROM anscombe").fetchone() == (44,)
    finally:
        thief.close()


def test_two_ups_at_once_one_wins_the_other_says_why(workdir: Path) -> None:
    spec, state = course_copy(workdir), workdir / "state"
    first = _start_up_in_background(spec, state)
    second = _start_up_in_background(spec, state)
    try:
        results = [p.communicate(timeout=180) for p in (first, second)]
        codes = [first.returncode, second.returncode]
        assert 0 in codes, results
        said = [out + err for out, err in results]
        # The loser either saw the winner's daemon ("already running", exit 0) or lost the
        # race for the lock ("already runs this instance", exit 1); never a traceback.
        assert any(
            "already running" in text or "already runs this instance" in text for text in said
        ), said
        assert not any("Traceback" in text for text in said)
        daemons = [
            p
            for p in psutil.process_iter(["cmdline"])
            if "daemon" in (p.info["cmdline"] or []) and str(state) in (p.info["cmdline"] or [])
        ]
        assert len(daemons) == 1
        assert all(
            s["state"] == "ready" for s in services(state).values() if s["start"] == "always"
        )
    finally:
        cli("down", "--state", str(state), check=False)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    folder = open_folder("disk-")
    mount = folder / "mnt"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {result.stderr.strip()}")
    yield mount
    for record in mount.glob("*/run/account.json"):  # the session removes it later
        with contextlib.suppress(OSError, ValueError, KeyError):
            ACCOUNTS_SEEN.add(str(json.loads(record.read_text())["name"]))
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_gives_a_clear_error_and_recovers_when_space_returns(
    small_disk: Path, workdir: Path
) -> None:
    spec = workdir / "course.toml"
    spec.write_text('[course]\nname = "full"\n[services.db]\nkind = "postgres"\nmax_restarts = 0\n')
    state = small_disk / "state"
    result = cli("up", str(spec), "--state", str(state), check=False)
    try:
        assert result.returncode == 1
        assert "initdb failed" in result.stderr
        assert "No space left on device" in result.stderr
        assert "Traceback" not in result.stderr
        cli("down", "--state", str(state), check=False)
        subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
        cli("up", str(spec), "--state", str(state))
        with psycopg.connect(connections(state)["db"]["url"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cli("down", "--state", str(state), check=False)


def test_read_only_state_folder_gives_a_clear_error_and_keeps_the_data(
    small_disk: Path, workdir: Path
) -> None:
    subprocess.run(["mount", "-o", "remount,size=400m", str(small_disk)], check=True)
    spec = workdir / "course.toml"
    spec.write_text('[course]\nname = "ro"\n[services.db]\nkind = "postgres"\n')
    state = small_disk / "state"
    cli("up", str(spec), "--state", str(state))
    with psycopg.connect(connections(state)["db"]["url"]) as conn:
        conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
    cli("down", "--state", str(state))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = cli("up", str(spec), "--state", str(state), check=False)
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    try:
        cli("up", str(spec), "--state", str(state))
        with psycopg.connect(connections(state)["db"]["url"]) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(1,)]
    finally:
        cli("down", "--state", str(state), check=False)


def test_corrupt_state_files_are_set_aside_with_a_warning_not_a_crash(instance: Path) -> None:
    with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
        conn.execute("INSERT INTO students_notes (note) VALUES ('before corruption')")
    cli("down", "--state", str(instance))
    for name in ("secrets.json", "ports.json", "pids.json"):
        (instance / "run" / name).write_bytes(b"\x00{not json")
    cli("up", "--state", str(instance))
    for name in ("secrets.json", "ports.json", "pids.json"):
        assert (instance / "run" / f"{name}.corrupt").exists()
    daemon_log = (instance / "logs" / "daemon.log").read_text()
    assert "secrets.json was corrupt; kept aside" in daemon_log
    assert "restored the instance's secrets" in daemon_log
    # The passwords came back from the second copy: the data is reachable as before.
    with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
        assert conn.execute(
            "SELECT count(*) FROM students_notes WHERE note = 'before corruption'"
        ).fetchone() == (1,)


# -- issue 10: nothing hangs, nothing stops silently ----------------------------------------


@pytest.fixture
def tiny_log_disk() -> Iterator[Path]:
    """A state folder whose logs live on a 2 MB filesystem of their own."""
    folder = open_folder("tiny-logs-")
    logs = folder / "state" / "logs"
    logs.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", str(logs)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {result.stderr.strip()}")
    yield folder / "state"
    cli("down", "--state", str(folder / "state"), check=False)
    subprocess.run(["umount", "-l", str(logs)], check=False)


def _in_a_thread(work: Any, limit: float = 60.0) -> Any:
    """Run `work()` in a thread; fail (instead of hanging) if it does not return."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed to the test below
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"{work.__name__} did not return: output blocked?"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_a_full_log_disk_never_blocks_postgres(tiny_log_disk: Path, workdir: Path) -> None:
    state, logs = tiny_log_disk, tiny_log_disk / "logs"
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "full-logs"\n[services.db]\nkind = "postgres"\nprobe_interval = 1\n'
    )
    cli("up", str(spec), "--state", str(state))
    url = connections(state)["db"]["url"]
    filler = logs / "filler"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:  # the disk is full once this raises ENOSPC
            handle.write(b"x" * 65536)
            handle.flush()
    loud = (
        "DO $$BEGIN FOR i IN 1..{n} LOOP RAISE WARNING '{tag} %', repeat('w', 500); END LOOP; END$$"
    )

    def warnings_and_a_failing_query(count: int, tag: str) -> str:
        with psycopg.connect(url) as conn:
            conn.execute(loud.format(n=count, tag=tag).encode())
            try:
                conn.execute("SELECT 1/0")
            except psycopg.errors.DivisionByZero as error:
                return str(error)
        return "no error"

    # While full: ~2.5 MB of warnings and errors, far more than a pipe holds (64 KB).
    assert (
        _in_a_thread(lambda: warnings_and_a_failing_query(5000, "while-full")) == "division by zero"
    )
    wait_for(
        lambda: "log not written" in services(state)["db"]["note"],
        timeout=30,
        what="the status to say the log is not written",
    )
    assert services(state)["db"]["state"] == "ready"
    filler.unlink()  # space is back
    assert _in_a_thread(lambda: warnings_and_a_failing_query(1000, "after")) == "division by zero"
    log = logs / "db.log"
    wait_for(
        lambda: (
            "after %" not in log.read_text(errors="replace")
            and log.read_text(errors="replace").count("WARNING:  after ") == 1000
        ),
        timeout=30,
        what="the 1,000 warnings in the log",
    )
    text = log.read_text(errors="replace")
    assert "[coursestack]" in text and "of output dropped between" in text
    assert "log file not writable: No space left on device" in text
    assert "coursestack health probe" not in text  # the probe's own lines are left out
    found = services(state)["db"]
    assert found["state"] == "ready" and "of output dropped" in found["note"]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_child_that_escapes_its_process_group_is_stopped_by_down(workdir: Path) -> None:
    # The leader starts a child in a session of its own (like PostgreSQL's backends and
    # Jupyter's kernels): a signal to the leader's group misses it, and it holds the pipe.
    marker = "314159"
    program = (
        "import subprocess, time\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "print('started', flush=True)\ntime.sleep(10000)\n"
    )
    (workdir / "escape.py").write_text(program)
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "escape"\ndown_timeout = 20\n'
        '[services.leader]\nkind = "command"\n'
        f'command = ["python3", "{workdir / "escape.py"}"]\n'
        'probe = { type = "none" }\n'
    )
    state = workdir / "state"
    cli("up", str(spec), "--state", str(state))

    def escaped() -> list[psutil.Process]:
        return [
            p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]
        ]

    wait_for(lambda: bool(escaped()), what="the escaped child")
    child = escaped()[0]
    assert os.getsid(child.pid) == child.pid  # really in a session of its own
    leader = services(state)["leader"]["pid"]
    cli("down", "--state", str(state), timeout=60)  # the CLI waits down_timeout + 15 s
    assert not alive(leader) and not alive(child.pid) and not escaped()


def test_ten_kill_9s_of_a_ready_postgres_end_with_it_ready_and_every_row(workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text('[course]\nname = "storm"\n[services.db]\nkind = "postgres"\n')
    state = workdir / "state"
    cli("up", str(spec), "--state", str(state))
    url = connections(state)["db"]["url"]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE acknowledged (n int PRIMARY KEY)")
    committed: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        number = 0
        while not stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True, connect_timeout=2) as conn:
                    while not stop.is_set():
                        conn.execute("INSERT INTO acknowledged VALUES (%s)", (number,))
                        committed.append(number)  # only once the server said COMMIT
                        number += 1
            except psycopg.Error:
                number += 1  # that one may or may not have been committed: skip it
                stop.wait(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    pause = random.Random(10)
    restarts_before = services(state)["db"]["restarts"]  # a port race at start is one
    try:
        for _ in range(10):
            wait_for(lambda: services(state)["db"]["state"] == "ready", what="ready")
            time.sleep(pause.uniform(2.0, 8.0))  # kills at least 2 s apart
            os.kill(services(state)["db"]["pid"], signal.SIGKILL)
        wait_for(lambda: services(state)["db"]["state"] == "ready", what="ready at the end")
        count = len(committed)
        wait_for(lambda: len(committed) > count, what="writes after the storm")
    finally:
        stop.set()
        thread.join(30)
    try:
        found = services(state)["db"]
        assert found["state"] == "ready", found
        assert found["restarts"] - restarts_before == 10, found
        with psycopg.connect(url) as conn:
            kept = {row[0] for row in conn.execute("SELECT n FROM acknowledged")}
        missing = [n for n in committed if n not in kept]
        assert not missing, f"{len(missing)} acknowledged rows lost"
    finally:
        cli("down", "--state", str(state), check=False)


def test_sigterm_to_a_daemon_in_the_middle_of_a_stop_ends_it(workdir: Path) -> None:
    program = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(10000)\n"
    )
    (workdir / "deaf.py").write_text(program)
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "deaf"\ndown_timeout = 600\n'
        '[services.deaf]\nkind = "command"\n'
        f'command = ["python3", "{workdir / "deaf.py"}"]\n'
        'probe = { type = "none" }\nstop_timeout = 500\n'
    )
    state = workdir / "state"
    cli("up", str(spec), "--state", str(state))
    deaf = services(state)["deaf"]["pid"]
    daemon = json.loads((state / "run" / "daemon.json").read_text())["pid"]
    down = subprocess.Popen(
        [sys.executable, "-m", "coursestack", "down", "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            lambda: services(state).get("deaf", {}).get("state") == "stopping",
            what="the stop to be under way",
        )
        os.kill(daemon, signal.SIGTERM)  # e.g. the machine shuts down, or a user's kill
        psutil.Process(daemon).wait(timeout=30)  # a daemon that ignored it would time out
        _out, err = down.communicate(timeout=60)
        assert down.returncode == 0, err
        assert not alive(deaf)
    finally:
        if down.poll() is None:
            down.kill()
        cli("down", "--state", str(state), check=False)
