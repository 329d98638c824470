"""One kind, one place: the layers above the kinds never name a kind or test for one."""

from __future__ import annotations

import re
from pathlib import Path

import coursestack
from coursestack.registry import BUILTIN

SOURCE = Path(coursestack.__file__).parent
#: Where kind-specific knowledge must not be (issue 11): the kinds' verbs answer instead.
PLACES = ("backup", "doctor*", "plan*", "cli*", "web")


def _files() -> list[Path]:
    found: list[Path] = []
    for pattern in PLACES:
        for path in SOURCE.glob(pattern):
            found += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return found


def test_the_places_exist() -> None:
    names = {path.name for path in _files()}
    assert {"service.py", "doctor.py", "plan.py", "cli.py", "client.py", "app.py"} <= names


def test_no_isinstance_on_kinds_above_the_kinds() -> None:
    pattern = re.compile(r"isinstance\(.*Kind")
    hits = [
        f"{path}:{number}"
        for path in _files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


def test_no_kind_name_as_a_string_above_the_kinds() -> None:
    names = "|".join(re.escape(name) for name in BUILTIN)
    pattern = re.compile(rf"""["']({names})["']""")
    hits = [
        f"{path}:{number}: {line.strip()}"
        for path in _files()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
