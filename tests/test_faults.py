"""Faults real laptops and cheap hosts produce, with real processes: each is survived
and nothing committed is lost. (docs/reliability.md lists them with what was kept.)"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
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
        cli("status", "--json", "--state", str(state), check=False).stdout)
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
            wait_for(lambda n=name, v=victim: services(instance)[n]["state"] == "ready"
                     and services(instance)[n]["pid"] != v, what=f"{name} back")
    found = services(instance)
    assert all(found[name]["restarts"] == 2 for name in names), found
    lines = (instance / "logs" / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    for name in names:
        backoffs = [e for e in events if e["service"] == name and e["state"] == "backoff"]
        assert len(backoffs) == 2 and "killed by signal 9" in backoffs[0]["reason"]
    with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
        assert conn.execute("SELECT count(*) FROM students_notes WHERE note = 'survives'"
                            ).fetchone() == (1,)
    client = pymongo.MongoClient(connections(instance)["mongo"]["url"])
    assert client["teaching"].notes.count_documents({"note": "survives"}) == 1
    client.close()


def _start_up_in_background(spec: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "coursestack", "up", str(spec),
                             "--state", str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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
    pids = _kill_daemon_when(state, lambda s: s and s["postgres"]["pid"]
                             and s["jupyter"]["state"] != "ready")
    up.communicate(timeout=60)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="no orphans")
    try:
        cli("up", str(spec), "--state", str(state))
        assert all(s["state"] == "ready" for s in services(state).values()
                   if s["start"] == "always")
        with psycopg.connect(connections(state)["postgres"]["url"]) as conn:
            assert conn.execute("SELECT count(*) FROM anscombe").fetchone() == (44,)
    finally:
        cli("down", "--state", str(state), check=False)


def test_kill_9_of_the_daemon_while_seeding_is_not_taken_as_seeded(workdir: Path) -> None:
    def slow_seed(text: str) -> str:
        return text.replace('seed = ["seed/teaching.sql", "seed/countries.csv"]',
                            'seed = ["seed/teaching.sql", "seed/slow.sql", '
                            '"seed/countries.csv"]')
    spec, state = course_copy(workdir, slow_seed), workdir / "state"
    (spec.parent / "seed" / "slow.sql").write_text(
        "INSERT INTO students_notes (note) VALUES ('seeded');\nSELECT pg_sleep(4);\n")
    up = _start_up_in_background(spec, state)
    pids = _kill_daemon_when(state, lambda s: s and "slow.sql" in s["postgres"]["detail"])
    up.communicate(timeout=60)
    wait_for(lambda: not any(alive(p) for p in pids), timeout=30, what="no orphans")
    assert not (state / "data" / "postgres" / "seeded.json").exists()
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
                    conn.execute("INSERT INTO students_notes (note) VALUES (%s)",
                                 (f"w{number}",))
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
            doomed += [service["pid"], *(c.pid for c in
                                         psutil.Process(service["pid"]).children(True))]
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    stop.set()
    thread.join(timeout=30)
    cli("up", "--state", str(instance))
    with psycopg.connect(connections(instance)["postgres"]["url"]) as conn:
        kept = {row[0] for row in conn.execute(
            "SELECT note FROM students_notes WHERE note LIKE 'w%'")}
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
        assert any("already running" in text or "already runs this instance" in text
                   for text in said), said
        assert not any("Traceback" in text for text in said)
        daemons = [p for p in psutil.process_iter(["cmdline"])
                   if "daemon" in (p.info["cmdline"] or []) and str(state) in
                   (p.info["cmdline"] or [])]
        assert len(daemons) == 1
        assert all(s["state"] == "ready" for s in services(state).values()
                   if s["start"] == "always")
    finally:
        cli("down", "--state", str(state), check=False)


@pytest.fixture
def small_disk() -> Iterator[Path]:
    folder = open_folder("disk-")
    mount = folder / "mnt"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs",
                             str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {result.stderr.strip()}")
    yield mount
    for record in mount.glob("*/run/account.json"):  # the session removes it later
        with contextlib.suppress(OSError, ValueError, KeyError):
            ACCOUNTS_SEEN.add(str(json.loads(record.read_text())["name"]))
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_gives_a_clear_error_and_recovers_when_space_returns(
        small_disk: Path, workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text('[course]\nname = "full"\n[services.db]\nkind = "postgres"\n'
                    'max_restarts = 0\n')
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
        small_disk: Path, workdir: Path) -> None:
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
        assert conn.execute("SELECT count(*) FROM students_notes WHERE note = "
                            "'before corruption'").fetchone() == (1,)
