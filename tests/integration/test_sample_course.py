"""The embedded sample course: every notebook runs in a real kernel against the running
course (PostgreSQL, the MongoDB stand-in), and its outputs say what they should."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from coursestack.instances import Instance

pytestmark = pytest.mark.slow


def run_notebook(instance: Instance, name: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Execute a notebook of the instance's course; return each code cell's output text."""
    connections = json.loads(instance.state.connections_file.read_text())["services"]
    folder = Path(connections["jupyter"]["notebooks"])
    # The kernel sees what a kernel started by the course's Jupyter sees.
    monkeypatch.setenv("COURSESTACK_CONNECTIONS", str(instance.state.connections_file))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    notebook = nbformat.read(folder / name, as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return [_text(cell) for cell in notebook.cells if cell.cell_type == "code"]


def _text(cell: Any) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            parts.append(output["text"])
        elif output["output_type"] in ("execute_result", "display_data"):
            data = output["data"]
            parts.append(data.get("text/plain", ""))
            if "image/png" in data:
                parts.append("<image/png>")
        elif output["output_type"] == "error":
            parts.append("ERROR " + output["ename"])
    return "\n".join(parts)


def test_self_test_notebook_says_everything_works(
    sample_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = run_notebook(sample_instance, "00-self-test.ipynb", monkeypatch)
    report = outputs[1]
    assert "OK    postgres: PostgreSQL answers; the teaching table anscombe has 44 rows" in report
    assert (
        "OK    mongo: MongoDB-compatible stand-in, not MongoDB answers; the collection "
        "nobel_prizes has 10 documents"
    ) in report
    assert "All checks passed" in report
    assert "FAIL" not in report


def test_anscombe_notebook_reshapes_and_plots(
    sample_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = run_notebook(sample_instance, "01-anscombe.ipynb", monkeypatch)
    assert "(44, 3)" in outputs[1]  # 11 rows x 4 data sets, long form
    table = outputs[2]
    for dataset in ("I", "II", "III", "IV"):
        row = re.search(rf"^{dataset}\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", table, re.M)
        assert row is not None, table
        mean_x, mean_y, var_x, var_y, corr = (float(v) for v in row.groups())
        assert (mean_x, var_x) == (9.0, 11.0)
        assert abs(mean_y - 7.50) <= 0.01 and abs(var_y - 4.12) <= 0.01
        assert abs(corr - 0.82) <= 0.01
    assert "<image/png>" in outputs[3]


def test_sql_notebook_queries_the_seeded_database(
    sample_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = run_notebook(sample_instance, "02-sql-postgres.ipynb", monkeypatch)
    port = json.loads(sample_instance.state.connections_file.read_text())["services"]["postgres"][
        "port"
    ]
    assert outputs[0].strip() == f"127.0.0.1 {port} teaching"
    assert re.search(r"Asia\s+4\s+3230\.0", outputs[1])
    assert outputs[2].splitlines()[0].split()[0] == "Ireland"


def test_documents_notebook_queries_the_seeded_collection(
    sample_instance: Instance, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = run_notebook(sample_instance, "03-documents-mongodb.ipynb", monkeypatch)
    assert "not MongoDB" in outputs[0] and "nobel_prizes" in outputs[0]
    assert outputs[1].splitlines() == [
        "1945 Alexander Fleming, Ernst Chain, Howard Florey",
        "1962 Francis Crick, James Watson, Maurice Wilkins",
        "1983 Barbara McClintock",
    ]
    assert outputs[2].strip() == "Marie Curie appears in 2 prizes"


def test_seeded_tables_have_types_from_the_schema_and_indexes(sample_instance: Instance) -> None:
    import psycopg

    info = json.loads(sample_instance.state.connections_file.read_text())["services"]["postgres"]
    with psycopg.connect(info["url"]) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 'countries'"
            ).fetchall()
        )
        indexes = [
            r[0]
            for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'countries'")
        ]
    assert types["code"] == "character" and types["year"] == "integer"
    assert types["population_millions"] == "numeric"
    assert any("(region)" in definition for definition in indexes)
    assert os.environ.get("COURSESTACK_CONNECTIONS") is None  # monkeypatch cleaned up
