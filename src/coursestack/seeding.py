"""Seed data: read once on a service's first start, recorded with a checksum.

A seed is applied at most once: the checksum of its files is kept in the service's data
folder (`seeded.json`), so a changed seed is reported, never silently re-applied
(`coursestack reset NAME` starts a service again from its seed). Errors name the file
and the line, and nothing of a failed seed is kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from coursestack import nofollow
from coursestack.errors import UserError
from coursestack.state import read_json

_SAMPLE_ROWS = 10_000


def seed_checksum(files: Sequence[Path], service: str) -> str:
    """SHA-256 over the seed files' bytes (a missing file is a clear error)."""
    digest = hashlib.sha256()
    for path in files:
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        except OSError as error:
            raise UserError(
                f"cannot read seed file: {error.strerror}",
                where=str(path),
                hint=f"fix the path in services.{service}.seed "
                "(paths are relative to the course spec)",
            ) from None
        digest.update(path.name.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class SeedLedger:
    """The record of a service's applied seed."""

    path: Path

    def applied(self) -> dict[str, Any] | None:
        # It lives in the service's data folder, which the service account may change:
        # read and written relative to that folder, never through a link.
        try:
            with nofollow.folder(self.path.parent) as folder:
                data = nofollow.read_file(folder, self.path.name)
        except (FileNotFoundError, nofollow.UnsafePath):
            return None
        try:
            record = json.loads(data) if data is not None else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return record if isinstance(record, dict) and record.get("checksum") else None

    def record(self, checksum: str, files: Sequence[Path]) -> None:
        document = {
            "checksum": checksum,
            "files": [str(f) for f in files],
            "applied": datetime.now().isoformat(timespec="seconds"),
        }
        with nofollow.folder(self.path.parent) as folder:
            nofollow.write_file(
                folder, self.path.name, (json.dumps(document, indent=2) + "\n").encode(), 0o644
            )


# -- JSON documents (MongoDB) ------------------------------------------------------------


def read_documents(path: Path) -> list[dict[str, Any]]:
    """Documents of a .json (an array or one object) or .jsonl file; errors name the line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        documents = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                raise UserError(
                    f"invalid JSON: {error.msg}",
                    where=f"{path}:{number}",
                    hint="each line of a .jsonl file is one JSON object",
                ) from None
            if not isinstance(value, dict):
                raise UserError(
                    "a line is not a JSON object",
                    where=f"{path}:{number}",
                    hint="each line of a .jsonl file is one JSON object",
                )
            documents.append(value)
        return documents
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(
            f"invalid JSON: {error.msg}",
            where=f"{path}:{error.lineno}",
            hint="fix the JSON; a .json seed holds an array of objects",
        ) from None
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise UserError(
                f"item {index} is not a JSON object",
                where=str(path),
                hint="a .json seed holds an array of objects",
            )
    return items


# -- CSV tables (PostgreSQL) ---------------------------------------------------------------


@dataclass(frozen=True)
class TablePlan:
    """How a CSV file becomes a table: its name, columns with types, indexes."""

    table: str
    columns: list[tuple[str, str]]
    indexes: list[list[str]]


_INTEGER = re.compile(r"^[+-]?\d{1,18}$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?)$")


def _kind_of(value: str) -> str:
    if _INTEGER.match(value):
        return "bigint"
    if _NUMBER.match(value):
        return "double precision"
    if value.lower() in ("true", "false"):
        return "boolean"
    try:
        date.fromisoformat(value)
        return "date"
    except ValueError:
        pass
    try:
        datetime.fromisoformat(value)
        return "timestamp"
    except ValueError:
        return "text"


_WIDER = {
    ("bigint", "double precision"): "double precision",
    ("double precision", "bigint"): "double precision",
    ("date", "timestamp"): "timestamp",
    ("timestamp", "date"): "timestamp",
}


def infer_types(rows: Iterator[list[str]], width: int) -> list[str]:
    """Column types from sample rows: bigint, double precision, boolean, date, timestamp or
    text; empty cells are NULL and say nothing."""
    types: list[str | None] = [None] * width
    for row in rows:
        for index, value in enumerate(row[:width]):
            if value == "":
                continue
            found = _kind_of(value)
            current = types[index]
            if current is None or current == found:
                types[index] = found
            else:
                types[index] = _WIDER.get((current, found), "text")
    return [t or "text" for t in types]


def plan_table(path: Path) -> TablePlan:
    """Read a CSV's header (and a sample, or its `<name>.schema.json`) into a TablePlan.

    The schema file, when present, looks like
    `{"table": "t", "columns": {"id": "integer", ...}, "indexes": [["id"], ["a", "b"]]}`.
    """
    schema_file = path.with_suffix(".schema.json")
    schema = read_json(schema_file, {}) if schema_file.exists() else {}
    if not isinstance(schema, dict):
        raise UserError(
            "schema file must be a JSON object",
            where=str(schema_file),
            hint='{"columns": {"name": "type"}, "indexes": [["name"]]}',
        )
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise UserError(
                "empty CSV file: no header row",
                where=f"{path}:1",
                hint="the first row names the columns",
            ) from None
        names = [name.strip() for name in header]
        if any(not name for name in names) or len(set(names)) != len(names):
            raise UserError(
                "the header row has an empty or repeated column name",
                where=f"{path}:1",
                hint="give every column a unique name",
            )
        given = schema.get("columns") or {}
        if given:
            missing = [n for n in names if n not in given]
            if missing:
                raise UserError(
                    f"schema names no type for {', '.join(missing)}",
                    where=str(schema_file),
                    hint="add each CSV column",
                )
            types = [str(given[n]) for n in names]
        else:
            sample = (row for _, row in zip(range(_SAMPLE_ROWS), reader, strict=False))
            types = infer_types(sample, len(names))
    indexes = [list(i) if isinstance(i, list) else [str(i)] for i in schema.get("indexes", [])]
    table = str(schema.get("table") or re.sub(r"\W", "_", path.stem).lower())
    return TablePlan(table, list(zip(names, types, strict=True)), indexes)


def copy_error_line(context: str | None) -> int | None:
    """The CSV line of a COPY error (PostgreSQL says 'COPY t, line N')."""
    found = re.search(r"line (\d+)", context or "")
    return int(found.group(1)) if found else None
