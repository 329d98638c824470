"""Seed data: type inference and readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from coursestack.errors import UserError
from coursestack.seeding import infer_types, plan_table, read_documents


def test_types_are_inferred_and_widened() -> None:
    rows = iter(
        [
            ["1", "2.5", "true", "2024-01-02", "x", ""],
            ["2", "3", "false", "2024-01-03T10:00:00", "7", ""],
        ]
    )
    assert infer_types(rows, 6) == [
        "bigint",
        "double precision",
        "boolean",
        "timestamp",
        "text",
        "text",
    ]


def test_csv_header_problems_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UserError, match="empty CSV file") as caught:
        plan_table(empty)
    assert caught.value.where == f"{empty}:1"
    repeated = tmp_path / "rep.csv"
    repeated.write_text("a,a\n1,2\n")
    with pytest.raises(UserError, match="repeated column"):
        plan_table(repeated)


def test_json_errors_name_the_line(tmp_path: Path) -> None:
    lines = tmp_path / "docs.jsonl"
    lines.write_text('{"a": 1}\n{"a": 2,}\n')
    with pytest.raises(UserError, match="invalid JSON") as caught:
        read_documents(lines)
    assert caught.value.where == f"{lines}:2"
    array = tmp_path / "docs.json"
    array.write_text('[{"a": 1},\n {"a": 2}\n 3]')
    with pytest.raises(UserError) as caught:
        read_documents(array)
    assert caught.value.where == f"{array}:3"
    good = tmp_path / "ok.json"
    good.write_text('{"b": 2}')
    assert read_documents(good) == [{"b": 2}]
