"""A course with a `[content]` source folder, and notebooks to edit, for update tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat

from coursestack.content.report import Report
from coursestack.content.update import run_update
from coursestack.spec import CourseSpec, load_spec
from coursestack.state import StateFolder


class Course:
    """A course folder (spec + notebooks), its upstream folder and its state folder."""

    def __init__(self, root: Path, source: str = "../upstream", extra: str = "") -> None:
        self.root = root
        self.upstream = root / "upstream"
        self.upstream.mkdir(parents=True, exist_ok=True)
        self.folder = root / "course"
        self.folder.mkdir(exist_ok=True)
        self.notebooks = self.folder / "notebooks"
        self.state = StateFolder(root / "state")
        (self.folder / "course.toml").write_text(
            f'[course]\nname = "demo"\n\n[content]\nsource = "{source}"\n{extra}\n'
            '[services.jupyter]\nkind = "jupyter"\n',
            encoding="utf-8",
        )

    @property
    def spec(self) -> CourseSpec:
        return load_spec(self.folder / "course.toml")

    def update(self, check: bool = False) -> Report:
        return run_update(self.spec, self.state, check=check)

    def push(self, name: str, content: str | bytes) -> None:
        """The course team changes a file of the release."""
        path = self.upstream / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)

    def remove_upstream(self, name: str) -> None:
        (self.upstream / name).unlink()

    def write(self, name: str, content: str | bytes) -> None:
        """The student changes a file in their notebooks folder."""
        path = self.notebooks / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    def read(self, name: str) -> str:
        return (self.notebooks / name).read_text(encoding="utf-8")

    def exists(self, name: str) -> bool:
        return (self.notebooks / name).exists()

    def files(self) -> set[str]:
        return {
            path.relative_to(self.notebooks).as_posix()
            for path in self.notebooks.rglob("*")
            if path.is_file()
        }


def action_of(report: Report, path: str) -> str:
    """What the report says was done to `path`."""
    return next(entry.action for entry in report.entries if entry.path == path)


def notebook(*sources: str, outputs: dict[int, str] | None = None) -> str:
    """A notebook of code cells with the given sources (and stream outputs)."""
    book = nbformat.v4.new_notebook()
    for index, source in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        cell["id"] = f"cell-{index}"
        if outputs and index in outputs:
            cell.outputs = [nbformat.v4.new_output("stream", text=outputs[index])]
        book.cells.append(cell)
    return str(nbformat.writes(book))


def sources_of(text: str) -> list[str]:
    book: Any = nbformat.reads(text, as_version=4)
    return [cell.source for cell in book.cells]
