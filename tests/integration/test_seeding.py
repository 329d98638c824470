"""Real seeds that fail half-way: the error names file and line, nothing is kept, the
service is failed, not looping."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymongo
import pytest

from support import cli, open_folder

COURSE = """\
[course]
name = "seedy"

[services.db]
kind = "postgres"
seed = ["seed/schema.sql", "seed/people.csv"]
max_restarts = 3

[services.docs]
kind = "mongodb-lite"
seed = ["seed/good.json", "seed/things.jsonl"]
"""


@pytest.fixture
def seedy() -> Iterator[Path]:
    folder = open_folder("seedy-")
    (folder / "seed").mkdir()
    (folder / "course.toml").write_text(COURSE)
    (folder / "seed" / "schema.sql").write_text("CREATE TABLE marker (id int);\n")
    (folder / "seed" / "people.csv").write_text("name,age\nAda,36\nAlan,41\n")
    (folder / "seed" / "good.json").write_text('[{"n": 1}, {"n": 2}]')
    (folder / "seed" / "things.jsonl").write_text('{"t": 1}\n{"t": 2}\n')
    yield folder
    cli("down", "--state", str(folder / "state"), check=False)


def up(folder: Path) -> Any:
    return cli(
        "up",
        str(folder / "course.toml"),
        "--state",
        str(folder / "state"),
        check=False,
        timeout=120,
    )


def status(folder: Path) -> dict[str, Any]:
    data = json.loads(cli("status", "--json", "--state", str(folder / "state"), check=False).stdout)
    return {s["name"]: s for s in data["services"]}


def connections(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "state" / "connections.json").read_text())
    return data["services"]


def test_malformed_csv_row_stops_the_seed_and_keeps_nothing(seedy: Path) -> None:
    (seedy / "seed" / "people.csv").write_text("name,age\nAda,36\nAlan,41,extra\nGrace,45\n")
    result = up(seedy)
    assert result.returncode == 1
    assert f"{seedy}/seed/people.csv:3" in result.stderr
    assert "extra data after last expected column" in result.stderr
    db = status(seedy)["db"]
    assert db["state"] == "failed" and db["restarts"] == 0  # reported, not crash-looped
    assert not (seedy / "state" / "data" / "db" / "seeded.json").exists()
    # Fixed, the whole seed applies from scratch: the failed one left no table behind.
    (seedy / "seed" / "people.csv").write_text("name,age\nAda,36\nAlan,41\n")
    cli("start", "db", "--state", str(seedy / "state"))
    with psycopg.connect(connections(seedy)["db"]["url"]) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (2,)
        assert conn.execute("SELECT count(*) FROM marker").fetchone() == (0,)


def test_sql_error_names_the_line(seedy: Path) -> None:
    (seedy / "seed" / "schema.sql").write_text(
        "CREATE TABLE marker (id int);\n\nINSERT INTO marker VALUES (1);\nSELEC oops;\n"
    )
    result = up(seedy)
    assert result.returncode == 1
    assert f"{seedy}/seed/schema.sql:4" in result.stderr
    assert 'syntax error at or near "SELEC"' in result.stderr
    (seedy / "seed" / "schema.sql").write_text("CREATE TABLE marker (id int);\n")
    cli("start", "db", "--state", str(seedy / "state"))
    with psycopg.connect(connections(seedy)["db"]["url"]) as conn:
        assert conn.execute("SELECT count(*) FROM marker").fetchone() == (0,)


def test_invalid_json_seed_names_the_line_and_loads_nothing(seedy: Path) -> None:
    (seedy / "seed" / "things.jsonl").write_text('{"t": 1}\n{"t": 2\n')
    result = up(seedy)
    assert result.returncode == 1
    assert f"{seedy}/seed/things.jsonl:2: invalid JSON" in result.stderr
    assert status(seedy)["docs"]["state"] == "failed"
    assert status(seedy)["db"]["state"] == "ready"  # the other service is unaffected
    (seedy / "seed" / "things.jsonl").write_text('{"t": 1}\n{"t": 2}\n')
    cli("start", "docs", "--state", str(seedy / "state"))
    client: Any = pymongo.MongoClient(connections(seedy)["docs"]["url"])
    try:
        database = client["seedy"]
        assert database.good.count_documents({}) == 2  # once, not twice
        assert database.things.count_documents({}) == 2
    finally:
        client.close()


def test_changed_seed_is_reported_not_reapplied(seedy: Path) -> None:
    assert up(seedy).returncode == 0
    cli("down", "--state", str(seedy / "state"))
    (seedy / "seed" / "people.csv").write_text("name,age\nAda,36\nAlan,41\nGrace,45\n")
    assert up(seedy).returncode == 0
    assert "seed files changed since first start" in status(seedy)["db"]["detail"] or any(
        "seed files changed" in line
        for line in (seedy / "state" / "logs" / "events.jsonl").read_text().splitlines()
    )
    with psycopg.connect(connections(seedy)["db"]["url"]) as conn:
        assert conn.execute("SELECT count(*) FROM people").fetchone() == (2,)
