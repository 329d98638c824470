"""Property test of whole updates: random changes to files on both sides, then an update.

Whatever the student and the course did, after the update: every file content the student
wrote is still in the folder (in place, or renamed), every content the course changed is
there (in place, or beside the student's), and a file the student did not write holds
the course's version (restored if they had deleted it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from content_helpers import Course

NAMES = ["a.txt", "b.txt", "c.csv", "week1/d.txt", "week1/e.txt"]
operation = st.tuples(st.sampled_from(["edit", "delete", "create"]), st.sampled_from(NAMES))


@settings(max_examples=40, deadline=None)
@given(
    initial=st.sets(st.sampled_from(NAMES), min_size=1),
    student_ops=st.lists(operation, max_size=5),
    course_ops=st.lists(operation, max_size=5),
)
def test_random_file_changes_on_both_sides(
    initial: set[str], student_ops: list[tuple[str, str]], course_ops: list[tuple[str, str]]
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        course = Course(Path(scratch))
        for name in initial:
            course.push(name, f"course v1 of {name}")
        course.update()
        student_wrote: dict[str, str] = {}
        for number, (op, name) in enumerate(student_ops):
            if op == "delete":
                if course.exists(name):
                    (course.notebooks / name).unlink()
                student_wrote.pop(name, None)
            else:
                text = f"student {number} wrote {name}"
                course.write(name, text)
                student_wrote[name] = text
        course_changed: dict[str, str] = {}
        for number, (op, name) in enumerate(course_ops):
            if op == "delete":
                if (course.upstream / name).exists():
                    course.remove_upstream(name)
                course_changed.pop(name, None)
            else:
                text = f"course {number} wrote {name}"
                course.push(name, text)
                course_changed[name] = text
        course.update()
        contents = {course.read(name) for name in course.files()}
        for name, text in student_wrote.items():
            assert text in contents, f"the student's {name} was lost"
        delivered = {
            path.relative_to(course.upstream).as_posix(): path.read_text()
            for path in course.upstream.rglob("*")
            if path.is_file()
        }
        for name, text in course_changed.items():
            assert text in contents, f"the course's change to {name} did not arrive"
        for name, text in delivered.items():
            if name not in student_wrote:  # untouched or deleted (restored) by the student
                assert course.read(name) == text
