"""The update rules, and the scenarios of nbgitpuller's own tests
(jupyterhub/nbgitpuller tests/test_gitpuller.py) ported to coursestack's updates.

Where nbgitpuller's behaviour differs by design, the test says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from content_helpers import Course, action_of, notebook, sources_of


def test_first_update_delivers_into_the_notebooks_folder(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("README.md", "1")
    course.push("week1/lab.ipynb", notebook("x = 1"))
    report = course.update()
    assert course.read("README.md") == "1"
    assert sources_of(course.read("week1/lab.ipynb")) == ["x = 1"]
    assert action_of(report, "week1/lab.ipynb") == "added"
    record = course.state.root / "content" / "record.json"
    assert record.exists(), "the delivery record is kept in the state folder"


def test_simple_push_pull(tmp_path: Path) -> None:
    """nbgitpuller test_simple_push_pull: changes, new files and removals upstream.

    Differs by design: a file removed upstream stays in the student's folder (the issue's
    rule "deleted upstream → the student's copy stays"); nbgitpuller deletes it.
    """
    course = Course(tmp_path)
    course.push("README.md", "1")
    course.update()
    course.push("README.md", "2")
    assert action_of(course.update(), "README.md") == "updated"
    assert course.read("README.md") == "2"
    course.push("another-file", "3")
    course.update()
    assert course.read("another-file") == "3"
    course.remove_upstream("another-file")
    report = course.update()
    assert action_of(report, "another-file") == "gone-upstream"
    assert course.read("another-file") == "3"
    # Gone from the record: the next update does not mention it again.
    assert "another-file" not in {entry.path for entry in course.update().entries}


def test_merging_simple(tmp_path: Path) -> None:
    """nbgitpuller test_merging_simple: a local change is preferred, later changes to
    other files still arrive, and the local change survives further upstream changes."""
    course = Course(tmp_path)
    course.push("README.md", "1")
    course.update()
    course.write("README.md", "2")
    course.push("README.md", "3")
    report = course.update()
    assert course.read("README.md") == "2"
    assert action_of(report, "README.md") == "beside"
    beside = [name for name in course.files() if name.startswith("README_updated-")]
    assert len(beside) == 1 and course.read(beside[0]) == "3"
    course.push("another-file", "4")
    course.update()
    assert course.read("another-file") == "4"
    course.push("README.md", "5")
    course.update()
    assert course.read("README.md") == "2"


def test_untracked_puller(tmp_path: Path) -> None:
    """nbgitpuller test_untracked_puller: a new upstream file whose name a student file
    has: the student's is renamed with a timestamp, the course's takes the name."""
    course = Course(tmp_path)
    course.push("README.md", "1")
    course.update()
    course.push("another-file", "2")
    course.write("another-file", "3")
    report = course.update()
    assert course.read("another-file") == "2"
    renamed = [name for name in course.files() if name.startswith("another-file_yours-")]
    assert len(renamed) == 1 and course.read(renamed[0]) == "3"
    assert action_of(report, "another-file") == "renamed"


def test_reset_file(tmp_path: Path) -> None:
    """nbgitpuller test_reset_file: deleted files come back, unicode names too."""
    course = Course(tmp_path)
    course.push("README.md", "1")
    course.push("unicode🙂.txt", "2")
    course.update()
    os.remove(course.notebooks / "README.md")
    os.remove(course.notebooks / "unicode🙂.txt")
    report = course.update()
    assert course.read("README.md") == "1"
    assert course.read("unicode🙂.txt") == "2"
    assert action_of(report, "README.md") == "restored"


def test_reset_file_after_changes(tmp_path: Path) -> None:
    """nbgitpuller test_reset_file_after_changes: deleting a kept file gets the latest."""
    course = Course(tmp_path)
    course.push("README.md", "original")
    course.update()
    course.write("README.md", "local change")
    course.push("README.md", "remote change")
    course.update()
    assert course.read("README.md") == "local change"
    os.remove(course.notebooks / "README.md")
    course.update()
    assert course.read("README.md") == "remote change"


def test_delete_conflicted_file(tmp_path: Path) -> None:
    """nbgitpuller test_delete_conflicted_file: after deleting a kept file, updates go on."""
    course = Course(tmp_path)
    course.push("README.md", "hello")
    course.update()
    course.write("README.md", "student changed")
    course.update()
    assert course.read("README.md") == "student changed"
    os.remove(course.notebooks / "README.md")
    course.push("new_file.txt", "hello world")
    course.update()
    assert course.read("new_file.txt") == "hello world"
    assert course.read("README.md") == "hello"


def test_delete_remotely_modify_locally(tmp_path: Path) -> None:
    """nbgitpuller test_delete_remotely_modify_locally and test_diverged: removed
    upstream, edited here: the student's copy stays."""
    course = Course(tmp_path)
    course.push("README.md", "new")
    course.update()
    course.write("README.md", "conflict")
    course.remove_upstream("README.md")
    report = course.update()
    assert course.read("README.md") == "conflict"
    assert action_of(report, "README.md") == "gone-upstream"


def test_diverged_reverse(tmp_path: Path) -> None:
    """nbgitpuller test_diverged_reverse: deleted here, edited upstream: the latest
    version comes back."""
    course = Course(tmp_path)
    course.push("README.md", "new")
    course.update()
    os.remove(course.notebooks / "README.md")
    course.push("README.md", "conflicting change")
    course.update()
    assert course.read("README.md") == "conflicting change"


def test_diverged_multiple(tmp_path: Path) -> None:
    """nbgitpuller test_diverged_multiple: A changed on both sides, B edited here and
    removed upstream: both of the student's versions stay."""
    course = Course(tmp_path)
    course.push("AFILE.txt", "new")
    course.push("BFILE.txt", "new")
    course.update()
    course.push("AFILE.txt", "changed remotely")
    course.remove_upstream("BFILE.txt")
    course.write("AFILE.txt", "edited")
    course.write("BFILE.txt", "edited")
    course.update()
    assert course.read("AFILE.txt") == "edited"
    assert course.read("BFILE.txt") == "edited"


def test_delete_locally_and_remotely(tmp_path: Path) -> None:
    """nbgitpuller test_delete_locally_and_remotely: gone on both sides stays gone."""
    course = Course(tmp_path)
    course.push("README.md", "1")
    course.update()
    os.remove(course.notebooks / "README.md")
    course.remove_upstream("README.md")
    course.push("another_file.txt", "2")
    report = course.update()
    assert not course.exists("README.md")
    assert course.read("another_file.txt") == "2"
    assert action_of(report, "README.md") == "gone-both"


def test_unchanged_upstream_keeps_the_students_version(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("data.csv", "a,b\n")
    course.update()
    course.write("data.csv", "a,b\n1,2\n")
    report = course.update()
    assert course.read("data.csv") == "a,b\n1,2\n"
    assert action_of(report, "data.csv") == "kept"
    assert report.summary().startswith("Everything is up to date")


def test_first_update_of_a_folder_with_material(tmp_path: Path) -> None:
    """No record yet: identical files count as delivered, differing ones as edits."""
    course = Course(tmp_path)
    course.write("same.txt", "course text")
    course.write("edited.txt", "student text")
    course.push("same.txt", "course text")
    course.push("edited.txt", "course text")
    report = course.update()
    assert action_of(report, "same.txt") == "unchanged"
    assert action_of(report, "edited.txt") == "beside"
    assert course.read("edited.txt") == "student text"
    # Now recorded: the next course change to same.txt simply arrives.
    course.push("same.txt", "course text 2")
    course.update()
    assert course.read("same.txt") == "course text 2"


def test_student_edits_cell_2_course_edits_cell_5_and_adds_a_cell(tmp_path: Path) -> None:
    """The issue's named case: one valid notebook with all three changes."""
    cells = [f"x{i} = {i}" for i in range(1, 7)]
    course = Course(tmp_path)
    course.push("lab.ipynb", notebook(*cells))
    course.update()
    student = list(cells)
    student[1] = "x2 = 'the student'"
    course.write("lab.ipynb", notebook(*student))
    upstream = list(cells)
    upstream[4] = "x5 = 'the course'"
    upstream.append("x7 = 'new from the course'")
    course.push("lab.ipynb", notebook(*upstream))
    report = course.update()
    assert action_of(report, "lab.ipynb") == "merged"
    merged = sources_of(course.read("lab.ipynb"))
    assert merged == [
        "x1 = 1",
        "x2 = 'the student'",
        "x3 = 3",
        "x4 = 4",
        "x5 = 'the course'",
        "x6 = 6",
        "x7 = 'new from the course'",
    ]
    assert report.notebooks_changed
    assert any("Reload Notebook from Disk" in line for line in report.lines())


def test_same_cell_changed_on_both_sides_is_put_beside(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("lab.ipynb", notebook("a = 1", "b = 2"))
    course.update()
    course.write("lab.ipynb", notebook("a = 'mine'", "b = 2"))
    course.push("lab.ipynb", notebook("a = 'theirs'", "b = 2"))
    report = course.update()
    assert action_of(report, "lab.ipynb") == "beside"
    assert sources_of(course.read("lab.ipynb")) == ["a = 'mine'", "b = 2"]
    beside = [name for name in course.files() if name.startswith("lab_updated-")]
    assert len(beside) == 1 and beside[0].endswith(".ipynb")
    assert sources_of(course.read(beside[0])) == ["a = 'theirs'", "b = 2"]
    entry = next(entry for entry in report.entries if entry.path == "lab.ipynb")
    assert "both changed cell 1" in entry.words


def test_conflicting_outputs_are_dropped(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("lab.ipynb", notebook("a = 1", "print(a)"))
    course.update()
    course.write(
        "lab.ipynb", notebook("a = 1", "print(a)", "mine = 3", outputs={1: "student run\n"})
    )
    course.push("lab.ipynb", notebook("a = 1", "print(a)", outputs={1: "course run\n"}))
    report = course.update()
    assert action_of(report, "lab.ipynb") == "merged"
    import nbformat

    merged = nbformat.reads(course.read("lab.ipynb"), as_version=4)
    nbformat.validate(merged)
    assert merged.cells[1].outputs == []
    assert [cell.source for cell in merged.cells] == ["a = 1", "print(a)", "mine = 3"]


def test_check_changes_nothing(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("README.md", "1")
    report = course.update(check=True)
    assert not course.notebooks.exists() or not course.files()
    assert action_of(report, "README.md") == "added"
    assert "would change" in report.summary()
    assert not (course.state.root / "content" / "record.json").exists()


def test_changed_file_is_backed_up_first(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("README.md", "1")
    course.push("other.txt", "x")
    course.update()
    course.write("other.txt", "mine")
    course.push("other.txt", "course")
    course.push("README.md", "2")
    report = course.update()
    backup = Path(report.backup)
    assert (backup / "README.md").read_text() == "1"


def test_course_folder_release_delivers_spec_and_seed(tmp_path: Path) -> None:
    """A release holding a course.toml is a whole course folder: spec and seed files go
    next to the spec, the notebooks folder into the notebooks folder."""
    course = Course(tmp_path)
    spec_text = (course.folder / "course.toml").read_text()
    course.push("course.toml", spec_text)
    course.push("seed/people.sql", "create table people (name text);")
    course.push("notebooks/lab.ipynb", notebook("x = 1"))
    course.update()
    assert (course.folder / "seed" / "people.sql").exists()
    assert course.exists("lab.ipynb")
    new_spec = spec_text.replace('kind = "jupyter"\n', 'kind = "jupyter"\n') + (
        '\n[services.db]\nkind = "postgres"\nseed = ["seed/people.sql"]\n'
    )
    course.push("course.toml", new_spec)
    course.push("seed/people.sql", "create table people (name text, age int);")
    report = course.update()
    assert action_of(report, "course.toml") == "updated"
    assert "[services.db]" in (course.folder / "course.toml").read_text()
    notes = "\n".join(report.notes)
    assert "when the course next starts" in notes
    assert "coursestack reset db" in notes and "not seeded again" in notes


def test_invalid_course_toml_in_the_release_changes_nothing(tmp_path: Path) -> None:
    import pytest

    from coursestack.content.sources import SourceError

    course = Course(tmp_path)
    course.push("course.toml", "[course\nname=")
    course.push("notebooks/lab.ipynb", notebook("x = 1"))
    with pytest.raises(SourceError, match=r"course\.toml is not valid"):
        course.update()
    assert not course.notebooks.exists()


def test_changed_files_get_a_clearly_later_modification_time(tmp_path: Path) -> None:
    """JupyterLab warns before saving over a file changed on disk by comparing times
    (with some tolerance): an update must move the time on by at least a second."""
    course = Course(tmp_path)
    course.push("lab.ipynb", notebook("a = 1"))
    course.update()
    path = course.notebooks / "lab.ipynb"
    before = path.stat().st_mtime
    os.utime(path, (before + 30, before + 30))  # a clock that ran ahead, say
    course.push("lab.ipynb", notebook("a = 2"))
    course.update()
    assert path.stat().st_mtime >= before + 31


def test_files_keep_their_permissions(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("run.sh", "echo 1")
    course.update()
    (course.notebooks / "run.sh").chmod(0o750)
    course.push("run.sh", "echo 2")
    course.update()
    assert course.read("run.sh") == "echo 2"
    assert (course.notebooks / "run.sh").stat().st_mode & 0o777 == 0o750


def test_on_up_update_returns_the_spec_this_start_uses(tmp_path: Path) -> None:
    """`up` updates first; a course.toml it delivers is the one this start uses (the
    daemon reads the file), and an unreachable source is only a warning."""
    import io

    from rich.console import Console

    from coursestack.content.command import update_before_start

    course = Course(tmp_path)
    old_spec = (course.folder / "course.toml").read_text()
    course.push("course.toml", old_spec)
    course.update()
    course.push(
        "course.toml", old_spec.replace('name = "demo"', 'name = "demo"\ntitle = "Week 2 edition"')
    )
    course.push("notebooks/lab.ipynb", notebook("x = 1"))
    output = io.StringIO()
    spec = update_before_start(course.spec, course.state, Console(file=output, width=200))
    assert spec.course.title == "Week 2 edition"
    assert "lab.ipynb: new from the course, added" in output.getvalue()
    for path in list(course.upstream.rglob("*"))[::-1]:
        path.unlink() if path.is_file() else path.rmdir()
    course.upstream.rmdir()
    offline = io.StringIO()
    same = update_before_start(spec, course.state, Console(file=offline, width=200))
    assert same is spec
    assert "warning: the course material was not updated" in offline.getvalue()
