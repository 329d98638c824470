"""The SQL a CSV seed becomes for the official PostgreSQL image loads the same table as
coursestack's own loader: run it, in order with the SQL seed, on the sample instance's
real PostgreSQL and compare with the course database coursestack seeded."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from coursestack.export.common import ExportCourse
from coursestack.instances import Instance
from coursestack.spec import load_spec
from coursestack.state import Secrets

CHECK_DATABASE = "export_seed_check"

COLUMNS = (
    "SELECT column_name, data_type, numeric_precision, numeric_scale, "
    "character_maximum_length FROM information_schema.columns "
    "WHERE table_name = 'countries' ORDER BY ordinal_position"
)


def _connect(instance: Instance, database: str, superuser: bool) -> psycopg.Connection[Any]:
    connections = json.loads((instance.state.root / "connections.json").read_text())
    postgres = connections["services"]["postgres"]
    user, password = postgres["user"], postgres["password"]
    if superuser:
        user, password = "postgres", Secrets(instance.state).get("postgres.superuser-password")
    return psycopg.connect(
        host="127.0.0.1",
        port=postgres["port"],
        user=user,
        password=password,
        dbname=database,
        autocommit=True,
    )


@pytest.mark.slow
def test_csv_seed_as_sql_loads_what_coursestack_loads(sample_instance: Instance) -> None:
    spec = load_spec(sample_instance.state.course / "course.toml")
    official = ExportCourse.from_spec(spec).hints["postgres"].official
    assert official is not None
    with _connect(sample_instance, "postgres", superuser=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {CHECK_DATABASE}")
        admin.execute(f"CREATE DATABASE {CHECK_DATABASE}")
    try:
        with _connect(sample_instance, CHECK_DATABASE, superuser=True) as check:
            for init in official.init_files:  # in the order the image runs them
                text = (
                    init.text
                    if init.text is not None
                    else spec.resolve(init.source or "").read_text(encoding="utf-8")
                )
                for seed in init.reads:  # where compose mounts it -> where it is here
                    text = text.replace(f"/seed/{seed.rsplit('/', 1)[-1]}", str(spec.resolve(seed)))
                check.execute(text.encode())
            exported_columns = check.execute(COLUMNS).fetchall()
            exported_rows = check.execute("SELECT * FROM countries ORDER BY 1").fetchall()
            exported_indexes = check.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'countries'"
            ).fetchall()
        with _connect(sample_instance, "teaching", superuser=False) as course:
            assert course.execute(COLUMNS).fetchall() == exported_columns
            assert course.execute("SELECT * FROM countries ORDER BY 1").fetchall() == (
                exported_rows
            )
            indexes = course.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'countries'"
            ).fetchall()
            assert [i[0].replace(" teaching", "") for i in indexes] == [
                i[0].replace(f" {CHECK_DATABASE}", "") for i in exported_indexes
            ]
    finally:
        with _connect(sample_instance, "postgres", superuser=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {CHECK_DATABASE}")
