"""The runtime end to end, with real PostgreSQL and Jupyter: ports, kernels, faults."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from coursestack.instances import Instance, sample_course_source
from coursestack.state import StateFolder
from kernel import run_cell
from support import cli, open_folder, wait_for

pytestmark = pytest.mark.slow


def status(instance: Instance) -> dict[str, Any]:
    result = cli("status", "--json", "--state", str(instance.state.root), check=False)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def services(instance: Instance) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in status(instance)["services"]}


def connections(instance: Instance) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(instance.state.connections_file.read_text())["services"]
    return data


def pg(instance: Instance) -> psycopg.Connection[Any]:
    info = connections(instance)["postgres"]
    return psycopg.connect(
        host=info["host"],
        port=info["port"],
        user=info["user"],
        password=info["password"],
        dbname=info["database"],
    )


@pytest.fixture(scope="module")
def occupied() -> Iterator[list[int]]:
    """Two listening sockets on the ports our course prefers."""
    sockets = []
    for _ in range(2):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        sockets.append(listener)
    yield [s.getsockname()[1] for s in sockets]
    for listener in sockets:
        listener.close()


@pytest.fixture(scope="module")
def course(occupied: list[int]) -> Iterator[Instance]:
    """A copy of the sample course whose preferred ports are taken by somebody else."""
    folder = open_folder("course-")
    shutil.copytree(sample_course_source(), folder / "course")
    spec = folder / "course" / "course.toml"
    text = spec.read_text().replace("port = 5432", f"port = {occupied[0]}")
    spec.write_text(text.replace("port = 8888", f"port = {occupied[1]}"))
    state = folder / "state"
    cli("up", str(spec), "--state", str(state), "--instance", "ports-taken")
    instance = Instance("ports-taken", StateFolder(state))
    yield instance
    cli("down", "--state", str(state), check=False)


def test_cell_in_real_kernel_reads_a_row_although_preferred_ports_are_taken(
    course: Instance, occupied: list[int]
) -> None:
    found = services(course)
    assert found["postgres"]["state"] == "ready" and found["jupyter"]["state"] == "ready"
    assert found["postgres"]["port"] != occupied[0]
    assert found["jupyter"]["port"] != occupied[1]
    jupyter = connections(course)["jupyter"]
    code = (
        "import coursestack, os\n"
        "with coursestack.connect('postgres') as conn:\n"
        "    row = conn.execute(\"SELECT x, y FROM anscombe WHERE dataset = 'IV' "
        'ORDER BY x DESC LIMIT 1").fetchone()\n'
        "print('row', row[0], row[1], 'port', os.environ['PGPORT'])"
    )
    output = run_cell(jupyter["url"], jupyter["token"], code)
    assert output.strip() == f"row 19 12.50 port {found['postgres']['port']}"


def test_services_do_not_run_as_root_and_secrets_are_private(course: Instance) -> None:
    found = services(course)
    for name in ("postgres", "jupyter"):
        owner = psutil.Process(found[name]["pid"]).uids().real
        assert owner != 0 or os.geteuid() != 0, f"{name} runs as root"
    for secret_file in ("run/secrets.json", "run/daemon.json"):
        assert (course.state.root / secret_file).stat().st_mode & 0o077 == 0
    assert course.state.connections_file.stat().st_mode & 0o007 == 0


def test_second_up_says_so_and_changes_nothing(course: Instance) -> None:
    before = {n: s["pid"] for n, s in services(course).items()}
    result = cli("up", "--state", str(course.state.root), "--instance", "ports-taken")
    assert "already running" in result.stdout and "nothing changed" in result.stdout
    assert {n: s["pid"] for n, s in services(course).items()} == before


def test_env_logs_list_and_connections(course: Instance) -> None:
    port = services(course)["postgres"]["port"]
    env = cli("env", "--state", str(course.state.root)).stdout
    assert f"export PGPORT={port}" in env and "DATABASE_URL=postgresql://student:" in env
    logs = cli("logs", "postgres", "--state", str(course.state.root), "-n", "200").stdout
    assert "database system is ready to accept connections" in logs
    listing = json.loads(cli("list", "--json").stdout)
    mine = [row for row in listing if row["state_folder"] == str(course.state.root)]
    assert mine and mine[0]["running"] and mine[0]["ready"] == 3  # openrefine: on demand
    shown = cli("connections", "--state", str(course.state.root)).stdout
    password = connections(course)["postgres"]["password"]
    assert password not in shown and "••••••" in shown
    bad = cli("logs", "nosuch", "--state", str(course.state.root), check=False)
    assert bad.returncode == 1 and "no service named 'nosuch'" in bad.stderr


def test_kill_9_of_postgres_is_restarted_and_keeps_data(course: Instance) -> None:
    with pg(course) as conn:
        conn.execute("INSERT INTO students_notes (note) VALUES ('before the crash')")
    victim = services(course)["postgres"]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: (
            services(course)["postgres"]["pid"] not in (None, victim)
            and services(course)["postgres"]["state"] == "ready"
        ),
        what="postgres back",
    )
    found = services(course)["postgres"]
    assert found["restarts"] >= 1
    assert "killed by signal 9" in found["reason"] or found["reason"] == ""
    with pg(course) as conn:
        notes = [r[0] for r in conn.execute("SELECT note FROM students_notes")]
    assert "before the crash" in notes


def test_a_port_stolen_while_a_service_is_stopped_moves_it_elsewhere(course: Instance) -> None:
    before = services(course)["postgres"]
    cli("stop", "postgres", "--state", str(course.state.root))
    thief = socket.socket()
    thief.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    thief.bind(("127.0.0.1", before["port"]))
    thief.listen()
    try:
        cli("start", "postgres", "--state", str(course.state.root))
        moved = services(course)["postgres"]["port"]
        assert moved != before["port"]
        assert connections(course)["postgres"]["port"] == moved
        with pg(course) as conn:
            assert conn.execute("SELECT count(*) FROM anscombe").fetchone() == (44,)
    finally:
        thief.close()


def test_kill_9_of_the_daemon_leaves_no_orphans_and_next_up_recovers(course: Instance) -> None:
    record = status(course)
    before = {n: s["pid"] for n, s in services(course).items() if s["pid"]}
    os.kill(record["pid"], signal.SIGKILL)
    # The kernel tells each service its daemon died; nothing keeps running unmanaged.
    wait_for(
        lambda: (
            not any(
                psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                for p in before.values()
            )
        ),
        timeout=60,
        what="services to stop",
    )
    cli("up", "--state", str(course.state.root), "--instance", "ports-taken")
    after = services(course)
    assert all(after[name]["state"] == "ready" for name in before)
    with pg(course) as conn:
        notes = [r[0] for r in conn.execute("SELECT note FROM students_notes")]
    assert "before the crash" in notes


def test_down_then_up_keeps_every_row_and_the_notebooks(course: Instance) -> None:
    notebook = Path(connections(course)["jupyter"]["notebooks"]) / "00-self-test.ipynb"
    original = notebook.read_bytes()
    with pg(course) as conn:
        conn.execute("INSERT INTO students_notes (note) VALUES ('kept across down/up')")
        count = conn.execute("SELECT count(*) FROM students_notes").fetchone()
    cli("down", "--state", str(course.state.root))
    assert not course.daemon_alive()
    assert cli("status", "--state", str(course.state.root), check=False).returncode == 3
    cli("up", "--state", str(course.state.root), "--instance", "ports-taken")
    with pg(course) as conn:
        assert conn.execute("SELECT count(*) FROM students_notes").fetchone() == count
        anscombe = conn.execute("SELECT count(*) FROM anscombe").fetchone()
    assert anscombe == (44,)  # seeded once, not again
    assert notebook.read_bytes() == original


def test_two_instances_of_one_course_run_side_by_side(
    course: Instance, sample_instance: Instance
) -> None:
    ours, theirs = services(course), services(sample_instance)
    running = [s for s in [*ours.values(), *theirs.values()] if s["start"] == "always"]
    assert running and all(s["state"] == "ready" for s in running)
    # Ports of running services never clash (a stopped on-demand one is moved on start).
    assert {s["port"] for s in ours.values() if s["pid"]}.isdisjoint(
        s["port"] for s in theirs.values() if s["pid"]
    )
    assert status(course)["url"] != status(sample_instance)["url"]


def test_a_crash_loop_ends_in_failed_with_its_reason(workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "crashy"\n[services.worker]\nkind = "command"\n'
        'command = ["sh", "-c", "echo boom-$$ >&2; exit 3"]\n'
        'probe = { type = "none" }\nmax_restarts = 1\nrestart = "always"\n'
    )
    result = cli("up", str(spec), "--state", str(workdir / "state"), check=False)
    try:
        assert result.returncode == 1
        assert (
            "worker failed: failed to start 2 times in a row; last: exited with code 3"
            in result.stderr
        )
        assert "boom-" in result.stderr  # its last log lines come with the failure
        assert "Traceback" not in result.stderr
    finally:
        cli("down", "--state", str(workdir / "state"), check=False)


def test_a_missing_binary_says_how_to_install_it(workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "nopg"\n[services.db]\nkind = "postgres"\n'
        'binaries = "/nonexistent/pg/bin"\n'
    )
    result = cli("up", str(spec), "--state", str(workdir / "state"), check=False)
    try:
        assert result.returncode == 1
        assert "no `postgres` program in /nonexistent/pg/bin" in result.stderr
        assert 'hint: point binaries at a PostgreSQL bin folder, or use "pgserver"' in (
            result.stderr
        )
        assert "Traceback" not in result.stderr
    finally:
        cli("down", "--state", str(workdir / "state"), check=False)


def test_system_postgres_can_be_chosen(workdir: Path) -> None:
    from coursestack.kinds.postgres import system_bin_dir

    if system_bin_dir() is None:
        pytest.skip("no system PostgreSQL on this machine (apt-get install postgresql)")
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "syspg"\n[services.db]\nkind = "postgres"\nbinaries = "system"\n'
    )
    state = workdir / "state"
    try:
        cli("up", str(spec), "--state", str(state))
        instance = Instance("syspg", StateFolder(state))
        info = connections(instance)["db"]
        with psycopg.connect(info["url"]) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        assert version is not None
    finally:
        cli("down", "--state", str(state), check=False)


@pytest.fixture(autouse=True, scope="module")
def _no_leftover_processes() -> Iterator[None]:
    """After this module, no postgres or jupyter of ours may be left running."""
    yield
    root = str(open_folder("probe-").parent)
    leftovers = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if root in cmdline and "sample-" not in cmdline and "daemon" not in cmdline:
            leftovers.append(cmdline)
    assert not leftovers, f"left running: {leftovers}"
