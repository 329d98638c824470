"""Property tests of the notebook merge: random edits on both sides.

- no cell the student wrote is ever lost;
- every change of the course arrives, unless the same cell was changed on both sides
  (the only case allowed to be unclean: then the student's file stays untouched);
- every notebook written is valid (nbformat).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coursestack.content.decide import Action, Sides, decide
from coursestack.content.notebooks import merge_notebook


@dataclass
class Side:
    """One side's copy, with what it did to each base cell."""

    cells: list[tuple[int | None, str]]
    changed: dict[int, str] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    added: list[str] = field(default_factory=list)


Edit = tuple[str, int, int]  # (operation, position, tag)
edits = st.lists(
    st.tuples(
        st.sampled_from(["edit", "insert", "delete", "replace"]),
        st.integers(0, 20),
        st.integers(0, 10**6),
    ),
    max_size=6,
)


def apply_edits(base: list[str], operations: list[Edit], who: str) -> Side:
    side = Side([(index, source) for index, source in enumerate(base)])
    for number, (operation, position, tag) in enumerate(operations):
        if operation == "insert":
            source = f"{who}_new_{number}_{tag} = {number}\nprint('{who} cell {number}')"
            side.cells.insert(position % (len(side.cells) + 1), (None, source))
            side.added.append(source)
            continue
        if not side.cells:
            continue
        index = position % len(side.cells)
        origin, source = side.cells[index]
        if operation == "delete":
            del side.cells[index]
            if origin is None:
                side.added.remove(source)
            else:
                side.deleted.add(origin)
                side.changed.pop(origin, None)
            continue
        new_source = (
            f"{source}\n# {who} note {number}_{tag}"
            if operation == "edit"
            else f"{who}_value_{number}_{tag} = {tag}"
        )
        side.cells[index] = (origin, new_source)
        if origin is None:
            side.added[side.added.index(source)] = new_source
        else:
            side.changed[origin] = new_source
    return side


def as_notebook(base_book: Any, side: Side) -> bytes:
    book = copy.deepcopy(base_book)
    by_origin = {index: cell for index, cell in enumerate(base_book.cells)}
    cells = []
    for origin, source in side.cells:
        if origin is None:
            cells.append(nbformat.v4.new_code_cell(source))
        else:
            cell = copy.deepcopy(by_origin[origin])
            cell.source = source
            cells.append(cell)
    book.cells = cells
    return nbformat.writes(book).encode()


def base_notebook(size: int) -> tuple[list[str], Any]:
    sources = [
        f"def step_{index}(data):\n    total_{index} = sum(data) * {index}\n"
        f"    return total_{index}"
        for index in range(size)
    ]
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    return sources, book


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(1, 8), student_edits=edits, course_edits=edits)
def test_random_edits_on_both_sides(
    size: int, student_edits: list[Edit], course_edits: list[Edit]
) -> None:
    sources, book = base_notebook(size)
    student = apply_edits(sources, student_edits, "student")
    course = apply_edits(sources, course_edits, "course")
    base_bytes = nbformat.writes(book).encode()
    student_bytes = as_notebook(book, student)
    course_bytes = as_notebook(book, course)

    touched_by_student = set(student.changed) | student.deleted
    touched_by_course = set(course.changed) | course.deleted
    both_deleted = student.deleted & course.deleted
    same_cell_both = (touched_by_student & touched_by_course) - both_deleted

    result = merge_notebook(base_bytes, student_bytes, course_bytes)
    if not same_cell_both:
        assert result.clean, f"no cell changed on both sides, yet: {result.reason}"
    if not result.clean:
        assert same_cell_both, result.reason
        # Unclean: the update keeps the student's file as it is, the course's beside it.
        decision = decide(
            Sides("lab.ipynb", Path("/x/lab.ipynb"), base_bytes, student_bytes, course_bytes),
            lambda path, label: path.with_name("beside"),
        )
        assert decision.action is Action.BESIDE
        assert decision.writes == [(Path("/x/beside"), course_bytes)]
        return
    assert result.merged is not None
    merged = nbformat.reads(result.merged.decode(), as_version=4)
    nbformat.validate(merged)
    merged_sources = [cell.source for cell in merged.cells]
    # No cell the student wrote is lost.
    for source in [*student.changed.values(), *student.added]:
        assert source in merged_sources
    # Every change of the course arrives.
    for source in course.added:
        assert source in merged_sources
    for origin, source in course.changed.items():
        if origin not in touched_by_student:
            assert source in merged_sources
    for origin in course.deleted - touched_by_student:
        assert sources[origin] not in merged_sources
    # And the student's own deletions stand.
    for origin in student.deleted - touched_by_course:
        assert sources[origin] not in merged_sources
    # Untouched cells stay, once.
    for origin, source in enumerate(sources):
        if origin not in touched_by_student | touched_by_course:
            assert merged_sources.count(source) == 1
