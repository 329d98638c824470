"""The daemon's own PostgreSQL client against a real server (the pgserver wheel's), and the
daemon that uses it: logged in, seeded and probed without psycopg ever loading."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from coursestack.instances import Instance
from coursestack.kinds import postgres_wire as wire
from coursestack.state import Secrets, StateFolder
from support import cli, open_folder, wait_for

pytestmark = pytest.mark.slow

T = TypeVar("T")

COURSE = """\
[course]
name = "wire"

[services.db]
kind = "postgres"
seed = ["seed/people.csv"]
probe_interval = 1
"""


@pytest.fixture(scope="module")
def course() -> Iterator[Path]:
    """A course with one PostgreSQL service, started cold (initdb, role, seed)."""
    folder = open_folder("wire-")
    (folder / "seed").mkdir()
    (folder / "course.toml").write_text(COURSE)
    (folder / "seed" / "people.csv").write_text("name,age\nAda,36\nAnon,\n")
    cli("up", str(folder / "course.toml"), "--state", str(folder / "state"))
    yield folder
    cli("down", "--state", str(folder / "state"), check=False)


def database(course: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((course / "state" / "connections.json").read_text())
    return dict(data["services"]["db"])


def superuser_password(course: Path) -> str:
    return Secrets(StateFolder(course / "state")).get("db.superuser-password")


def run(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(work())


def course_session(course: Path, password: str | None = None) -> Awaitable[wire.Connection]:
    info = database(course)
    return wire.connect(
        "127.0.0.1",
        info["port"],
        info["user"],
        info["password"] if password is None else password,
        info["database"],
    )


def test_seeded_rows_read_back_as_text_with_nulls(course: Path) -> None:
    async def work() -> list[wire.Result]:
        async with await course_session(course) as session:
            return await session.execute(
                "SELECT name, age FROM people ORDER BY name; SELECT 1 AS one, NULL AS none"
            )

    people, constants = run(work)
    assert people.columns == ["name", "age"] and people.command == "SELECT 2"
    assert people.rows == [("Ada", "36"), ("Anon", None)]  # an empty CSV cell is NULL
    assert constants.rows == [("1", None)]


def test_a_wrong_password_is_refused_without_echoing_it(course: Path) -> None:
    async def work() -> None:
        await course_session(course, password="not-the-password-41")

    with pytest.raises(wire.ServerError) as caught:
        run(work)
    assert caught.value.sqlstate == "28P01"
    assert "password authentication failed" in caught.value.message
    assert "not-the-password-41" not in str(caught.value)


def test_the_superuser_logs_in_with_scram(course: Path) -> None:
    async def work() -> tuple[list[tuple[str | None, ...]], dict[str, str]]:
        async with await wire.connect(
            "127.0.0.1",
            database(course)["port"],
            "postgres",
            superuser_password(course),
            "postgres",
        ) as session:
            rows = await session.fetch(
                "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                f"WHERE rolname = {wire.quote_literal(database(course)['user'])}"
            )
            return rows, session.parameters

    rows, parameters = run(work)
    assert rows == [("t",)]  # the course role's password was set as a verifier
    assert parameters["server_encoding"] == "UTF8" and parameters["server_version"]


def test_an_error_mid_script_undoes_the_script_and_keeps_the_session(course: Path) -> None:
    script = (
        "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\n"
        "SELEC oops;\nINSERT INTO half VALUES (2);"
    )

    async def work() -> tuple[wire.ServerError, list[tuple[str | None, ...]]]:
        async with await course_session(course) as session:
            with pytest.raises(wire.ServerError) as caught:
                await session.execute(script)
            assert session.transaction_status == "I"
            return caught.value, await session.fetch("SELECT to_regclass('half') IS NULL")

    error, rows = run(work)
    assert error.sqlstate == "42601" and 'at or near "SELEC"' in error.message
    assert error.position == script.index("SELEC") + 1
    assert rows == [("t",)]


def test_quoted_values_and_names_come_back_unchanged(course: Path) -> None:
    values = [
        "it's",
        "back\\slash",
        "\u00fc \u20ac \U0001f600",
        "'; DROP TABLE people; --",
        "E'\\x41'",
        "$$",
        "",
    ]
    name = 'odd "name"; --'

    async def work() -> tuple[list[str | None], list[tuple[str | None, ...]]]:
        async with await course_session(course) as session:
            echoed = []
            for value in values:
                echoed.append((await session.fetch("SELECT " + wire.quote_literal(value)))[0][0])
            table = wire.quote_identifier(name)
            await session.execute(
                f"CREATE TEMP TABLE {table} (v text); "
                f"INSERT INTO {table} VALUES ({wire.quote_literal(name)})"
            )
            return echoed, await session.fetch(f"SELECT v FROM {table}")

    echoed, rows = run(work)
    assert echoed == values
    assert rows == [(name,)]


def test_copy_streams_chunks_and_reports_a_bad_row_by_line(course: Path) -> None:
    body = b"".join(b"%d,name %d,\n" % (n, n) for n in range(5000))
    chunks = [body[i : i + 997] for i in range(0, len(body), 997)]  # rows cut mid-way

    async def blocks(data: list[bytes]) -> Any:
        for block in data:
            yield block

    async def work() -> tuple[
        str,
        list[tuple[str | None, ...]],
        wire.ServerError,
        wire.ServerError,
        list[tuple[str | None, ...]],
    ]:
        async with await course_session(course) as session:
            await session.execute("CREATE TEMP TABLE loaded (id int, name text, note text)")
            tag = await session.copy_in("COPY loaded FROM STDIN (FORMAT csv)", chunks)
            counted = await session.fetch("SELECT count(*), count(note), max(id) FROM loaded")
            bad = b"1,a,\n2,b,\nthree,c,\n" + b"4,d,\n" * 100_000
            with pytest.raises(wire.ServerError) as refused:
                await session.copy_in(
                    "COPY loaded FROM STDIN (FORMAT csv)",
                    blocks([bad[i : i + 4096] for i in range(0, len(bad), 4096)]),
                )
            with pytest.raises(wire.ServerError) as missing:
                await session.copy_in("COPY nowhere FROM STDIN", [b"1\n"])
            return (
                tag,
                counted,
                refused.value,
                missing.value,
                await session.fetch("SELECT count(*) FROM loaded"),
            )

    tag, counted, refused, missing, after = run(work)
    assert tag == "COPY 5000"
    assert counted == [("5000", "0", "4999")]  # empty unquoted CSV fields are NULL
    assert refused.sqlstate == "22P02" and refused.context is not None
    assert "line 3" in refused.context
    assert missing.sqlstate == "42P01"
    assert after == [("5000",)]  # the failed COPY added nothing; the session still works


def test_a_source_that_fails_mid_copy_ends_the_copy_not_the_session(course: Path) -> None:
    async def failing() -> Any:
        yield b"1,a\n"
        raise OSError("disk went away")

    async def work() -> tuple[list[tuple[str | None, ...]], str]:
        async with await course_session(course) as session:
            await session.execute("CREATE TEMP TABLE partial (id int, name text)")
            with pytest.raises(OSError, match="disk went away"):
                await session.copy_in("COPY partial FROM STDIN (FORMAT csv)", failing())
            return await session.fetch("SELECT count(*) FROM partial"), session.transaction_status

    assert run(work) == ([("0",)], "I")


def test_a_server_that_ends_the_session_is_a_clear_error(course: Path) -> None:
    async def work() -> None:
        async with await course_session(course) as session:
            await session.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(wire.ConnectionLost, match="terminating connection"):
        run(work)


def test_the_probe_line_stays_out_of_the_log_and_others_do_not(course: Path) -> None:
    log = course / "state" / "logs" / "db.log"

    async def work() -> None:
        async with await wire.connect(
            "127.0.0.1",
            database(course)["port"],
            "postgres",
            superuser_password(course),
            "postgres",
        ) as session:
            await session.execute("DO $$BEGIN RAISE LOG 'wire test line'; END$$")

    run(work)
    wait_for(
        lambda: "wire test line" in log.read_text(errors="replace"),
        timeout=30,
        what="our own LOG line in the server's log",
    )
    time.sleep(2)  # probe_interval = 1: at least one more probe since
    assert "coursestack health probe" not in log.read_text(errors="replace")
    status = json.loads(cli("status", "--json", "--state", str(course / "state")).stdout)
    assert status["services"][0]["state"] == "ready"


def psycopg_libraries(pid: int) -> list[str]:
    """psycopg's (or libpq's) shared libraries mapped into process `pid`."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted(
        {line.split()[-1] for line in maps.splitlines() if "psycopg" in line or "libpq" in line}
    )


def test_the_check_sees_psycopg_where_it_is_loaded() -> None:
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import psycopg, sys; psycopg.pq.version(); print(flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:
        assert child.stdout is not None
        child.stdout.readline()
        try:
            assert psycopg_libraries(child.pid)
        finally:
            child.kill()


def test_the_daemon_never_loads_psycopg(course: Path) -> None:
    assert psycopg_libraries(int(StateFolder(course / "state").daemon()["pid"])) == []


def test_the_sample_courses_daemon_never_loads_psycopg(sample_instance: Instance) -> None:
    assert psycopg_libraries(int(sample_instance.state.daemon()["pid"])) == []
