"""Edit a course spec file the way a person would: comments, order and bytes kept.

The composer sends the course as plain data (what `tomllib` reads from the file, edited);
`compose` writes that data back into the file's own text with `tomlkit`, touching only
the keys whose values changed, so a spec written by hand keeps its comments and layout,
and saving it unchanged gives the same bytes. `check_text` runs the real spec loader and
returns its problems with line and key; `save` writes atomically, only a valid spec,
only over the version the editor started from, and keeps the previous file as
`course.toml.bak`.
"""

from __future__ import annotations

import hashlib
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import InlineTable, Item, Table

from coursestack.errors import SpecError, UserError
from coursestack.spec import CourseSpec, parse_spec
from coursestack.state import atomic_write_bytes

#: Top-level keys written as `[table]`s; deeper tables become inline `{ ... }`.
SECTIONS = ("course", "dashboard", "logs", "services")
BACKUP_SUFFIX = ".bak"

_save_lock = threading.Lock()


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec, where an editor can point at it."""

    line: int
    key: str
    message: str
    hint: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "key": self.key, "message": self.message, "hint": self.hint}


@dataclass(frozen=True)
class Checked:
    """What the spec loader said about a text: the course, or its problems."""

    spec: CourseSpec | None
    problems: list[SpecProblem]
    #: The text as data (None if it is not TOML): what the composer edits.
    data: dict[str, Any] | None


class SpecConflict(UserError):
    """The spec file changed since the editor read it (another tab, or a text editor)."""

    exit_code = 2

    def __init__(self, current_text: str, current_version: str) -> None:
        super().__init__(
            "the course spec changed on disk since it was opened",
            hint="reload it to see the other change, or save again over it",
        )
        self.current_text = current_text
        self.current_version = current_version


@dataclass(frozen=True)
class Saved:
    """A spec written to disk."""

    path: Path
    version: str
    backup: Path | None
    changed: bool


def version_of(data: bytes) -> str:
    """A short content hash: the version an editor must name to save over a file."""
    return hashlib.sha256(data).hexdigest()[:20]


def read_spec_text(path: Path) -> tuple[str, str]:
    """The file's text exactly as stored (no newline translation), and its version."""
    data = path.read_bytes()
    return data.decode("utf-8"), version_of(data)


def check_text(text: str, path: Path) -> Checked:
    """Run the real loader on `text` (as if read from `path`): the course or its problems."""
    try:
        data: dict[str, Any] | None = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None
    except RecursionError:  # arrays nested thousands deep: no spec, and no TOML we read
        return Checked(
            None,
            [
                SpecProblem(
                    1,
                    "",
                    "not valid TOML: nested too deeply",
                    "a course spec nests a few levels at most",
                )
            ],
            None,
        )
    try:
        return Checked(parse_spec(text, path), [], data)
    except SpecError as error:
        problems = [SpecProblem(*problem) for problem in error.problems] or [
            SpecProblem(1, "", error.message, error.hint)
        ]
        return Checked(None, problems, data)


# -- writing data back into TOML text ------------------------------------------------------


def compose(base_text: str, data: Mapping[str, Any]) -> str:
    """`base_text` changed so that it reads as `data`; untouched keys keep their bytes."""
    document = tomlkit.parse(base_text)
    _merge(document, data, depth=0, path=())
    return tomlkit.dumps(document)


def _plain(value: Any) -> Any:
    return value.unwrap() if isinstance(value, Item) else value


def _same(current: Any, wanted: Any) -> bool:
    plain = _plain(current)
    if isinstance(plain, bool) or isinstance(wanted, bool):
        return plain is wanted
    # JSON has one kind of number: 90 from the page equals 90.0 in the file.
    return bool(plain == wanted)


def _merge(table: Any, wanted: Mapping[str, Any], depth: int, path: tuple[str, ...]) -> None:
    for key in [key for key in table if key not in wanted]:
        del table[key]
    for key, value in wanted.items():
        here = (*path, key)
        if key in table:
            current = table[key]
            if isinstance(value, Mapping) and isinstance(current, Table | InlineTable):
                _merge(current, value, depth + 1, here)
                continue
            if _same(current, value):
                continue
        table[key] = _new_item(value, here)


def _new_item(value: Any, path: tuple[str, ...]) -> Any:
    """A new value: sections and services as `[tables]`, anything deeper inline."""
    if not isinstance(value, Mapping):
        return value
    as_table = (len(path) == 1 and path[0] in SECTIONS) or (
        len(path) == 2 and path[0] == "services"
    )
    container: Any = (
        tomlkit.table(is_super_table=path == ("services",)) if as_table else tomlkit.inline_table()
    )
    for key, inner in value.items():
        container[key] = _new_item(inner, (*path, key))
    return container


# -- saving --------------------------------------------------------------------------------


def save(path: Path, text: str, expected_version: str) -> Saved:
    """Write `text` over `path` if it is a valid spec and the file is still at
    `expected_version`; the previous file is kept as `<name>.bak`.

    Raises SpecError (nothing written) or SpecConflict (nothing written)."""
    with _save_lock:
        current_text, current_version = read_spec_text(path)
        if current_version != expected_version:
            raise SpecConflict(current_text, current_version)
        checked = check_text(text, path)
        if checked.spec is None:
            problems = "; ".join(
                f"line {p.line}: {p.key}: {p.message}".replace(": : ", ": ")
                for p in checked.problems
            )
            error = SpecError(f"not saved, the spec has problems: {problems}", where=str(path))
            error.problems = tuple((p.line, p.key, p.message, p.hint) for p in checked.problems)
            raise error
        data = text.encode("utf-8")
        if data == current_text.encode("utf-8"):
            return Saved(path, current_version, None, changed=False)
        mode = path.stat().st_mode & 0o777
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        atomic_write_bytes(backup, current_text.encode("utf-8"), mode)
        atomic_write_bytes(path, data, mode)
        return Saved(path, version_of(data), backup, changed=True)
