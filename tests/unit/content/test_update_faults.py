"""Faults during updates: broken notebooks, read-only files, kill -9 half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from content_helpers import Course, notebook, sources_of
from coursestack.content.journal import PAUSE_VARIABLE


def test_student_notebook_not_valid_json(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("lab.ipynb", notebook("a = 1"))
    course.update()
    course.write("lab.ipynb", '{"cells": [')  # an editor accident
    course.push("lab.ipynb", notebook("a = 2"))
    report = course.update()
    assert course.read("lab.ipynb") == '{"cells": ['
    entry = next(entry for entry in report.entries if entry.path == "lab.ipynb")
    assert entry.action == "beside" and "your copy is not valid JSON" in entry.words
    assert sources_of(course.read(entry.other)) == ["a = 2"]


def test_course_notebook_not_valid_json(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("lab.ipynb", notebook("a = 1"))
    course.push("other.ipynb", notebook("b = 1"))
    course.update()
    course.write("lab.ipynb", notebook("a = 'mine'"))
    course.push("lab.ipynb", "not json at all")
    course.push("other.ipynb", "{broken")
    report = course.update()
    assert sources_of(course.read("lab.ipynb")) == ["a = 'mine'"]
    entry = next(entry for entry in report.entries if entry.path == "lab.ipynb")
    assert "the course's new version is not valid JSON" in entry.words
    # The student had not changed other.ipynb: it is the course's file, delivered as
    # it is, with a warning for the student to pass on.
    assert course.read("other.ipynb") == "{broken"
    assert any("other.ipynb is not valid JSON" in note for note in report.notes)


def test_read_only_student_file_is_never_replaced(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("answers.txt", "template")
    course.update()
    (course.notebooks / "answers.txt").chmod(0o444)
    course.push("answers.txt", "new template")
    report = course.update()
    assert course.read("answers.txt") == "template"
    entry = next(entry for entry in report.entries if entry.path == "answers.txt")
    assert entry.action == "beside" and "read-only" in entry.words
    assert course.read(entry.other) == "new template"
    assert oct((course.notebooks / "answers.txt").stat().st_mode & 0o777) == "0o444"


def test_write_failure_rolls_back_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while writing (disk full, say) puts back every file already written."""
    from coursestack.content import journal
    from coursestack.content.journal import UpdateFailed

    course = Course(tmp_path)
    for index in range(4):
        course.push(f"f{index}.txt", "old")
    course.update()
    for index in range(4):
        course.push(f"f{index}.txt", "new")
    real_write = journal.write_file
    calls = []

    def failing(path: Path, *args: object) -> None:
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_write(path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(journal, "write_file", failing)
    with pytest.raises(UpdateFailed, match="No space left") as error:
        course.update()
    assert "nothing was changed" in error.value.hint
    assert {course.read(f"f{index}.txt") for index in range(4)} == {"old"}
    monkeypatch.setattr(journal, "write_file", real_write)
    course.update()
    assert {course.read(f"f{index}.txt") for index in range(4)} == {"new"}


def _run_update(course: Course, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coursestack",
            "update",
            str(course.folder / "course.toml"),
            "--state",
            str(course.state.root),
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_update_killed_half_way_completes_next_time(tmp_path: Path) -> None:
    """kill -9 in the middle of writing: each file is wholly before or after, and the
    next update completes the interrupted one, so all are after."""
    course = Course(tmp_path)
    names = [f"lab{index}.ipynb" for index in range(8)]
    for name in names:
        course.push(name, notebook(f"# {name} v1", "x = 1", "y = 2"))
    course.update()
    course.write("lab3.ipynb", notebook("# lab3.ipynb v1", "x = 'student'", "y = 2"))
    for name in names:
        course.push(name, notebook(f"# {name} v2", "x = 1", "y = 2", "z = 3"))
    before = {name: course.read(name) for name in names}

    env = {**os.environ, PAUSE_VARIABLE: "4"}
    process = _run_update(course, env)
    marker = course.state.root / "content" / "journal.paused"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the update never reached its pause"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()

    halfway = {name: sources_of(course.read(name)) for name in names}
    firsts = {cells[0].split()[-1] for cells in halfway.values()}
    assert firsts == {"v1", "v2"}, "the pause came half-way: some files old, some new"
    for cells in halfway.values():
        assert cells[0].endswith("v1") or cells[-1] == "z = 3", "never half a file"

    env.pop(PAUSE_VARIABLE)
    marker.unlink()
    finished = _run_update(course, env)
    output, errors = finished.communicate(timeout=120)
    assert finished.returncode == 0, errors.decode()
    report = json.loads(output)
    assert report["finished_interrupted"] is True
    for name in names:
        cells = sources_of(course.read(name))
        assert cells[0] == f"# {name} v2" and cells[-1] == "z = 3"
    assert sources_of(course.read("lab3.ipynb"))[1] == "x = 'student'"
    assert before["lab0.ipynb"] != course.read("lab0.ipynb")
    assert not (course.state.root / "content" / "journal.json").exists()
    assert not [path for path in course.notebooks.iterdir() if path.name.startswith(".")]
    # And the delivery was recorded: nothing left to do.
    assert course.update().summary().startswith("Everything is up to date")


def test_update_cli_text_and_check(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("lab.txt", "1")
    base = [
        sys.executable,
        "-m",
        "coursestack",
        "update",
        str(course.folder),
        "--state",
        str(course.state.root),
    ]
    checked = subprocess.run([*base, "--check"], capture_output=True, text=True, check=True)
    assert "lab.txt: new from the course, will be added" in checked.stdout
    assert not course.notebooks.exists()
    done = subprocess.run(base, capture_output=True, text=True, check=True)
    assert "lab.txt: new from the course, added" in done.stdout
    assert course.read("lab.txt") == "1"
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "coursestack",
            "update",
            str(course.folder),
            "--state",
            str(tmp_path / "s2"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "COURSESTACK_HOME": str(tmp_path / "h")},
    )
    assert missing.returncode == 0
    (course.upstream / "lab.txt").unlink()
    course.upstream.rmdir()
    failed = subprocess.run(base, capture_output=True, text=True)
    assert failed.returncode == 1
    assert "does not exist" in failed.stderr and "Traceback" not in failed.stderr


def test_no_content_source(tmp_path: Path) -> None:
    from coursestack.content.update import NoContentSource, run_update
    from coursestack.spec import load_spec
    from coursestack.state import StateFolder

    spec = tmp_path / "course.toml"
    spec.write_text('[course]\nname = "x"\n[services.j]\nkind = "jupyter"\n')
    with pytest.raises(NoContentSource, match=r"no `\[content\]` source"):
        run_update(load_spec(spec), StateFolder(tmp_path / "state"))


def test_links_are_never_followed(tmp_path: Path) -> None:
    """A student's symbolic links (to a file or a folder outside the course) are neither
    read nor written through: run as root, that would leak or clobber other files."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the student's")
    course = Course(tmp_path)
    course.push("notes.txt", "1")
    course.push("week1/lab.txt", "1")
    course.update()
    (course.notebooks / "notes.txt").unlink()
    (course.notebooks / "notes.txt").symlink_to(outside / "secret.txt")
    (course.notebooks / "week1" / "lab.txt").unlink()
    (course.notebooks / "week1").rmdir()
    (course.notebooks / "week1").symlink_to(outside)
    course.push("notes.txt", "2")
    course.push("week1/lab.txt", "2")
    course.push("week1/secret.txt", "overwritten?")
    report = course.update()
    assert (outside / "secret.txt").read_text() == "not the student's"
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt"]
    assert (course.notebooks / "notes.txt").is_symlink()
    assert {entry.path: entry.action for entry in report.entries} == {
        "notes.txt": "skipped",
        "week1/lab.txt": "skipped",
        "week1/secret.txt": "skipped",
    }
    assert not [name for name in course.files() if "yours" in name or "updated" in name]
