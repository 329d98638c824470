"""Sources of course material: folder, zip (path and URL), git (dulwich), and their faults."""

from __future__ import annotations

import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dulwich import porcelain
from dulwich.repo import Repo

from content_helpers import Course, action_of
from coursestack.content.sources import SourceError


def make_zip(files: dict[str, str], top: str = "") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(top + name, text)
    return buffer.getvalue()


def commit(repo_path: Path, files: dict[str, str], message: str = "change") -> str:
    """Commit `files` to the repository with dulwich (no git program)."""
    for name, text in files.items():
        path = repo_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with Repo(str(repo_path)) as repo:
        porcelain.add(repo, [str(repo_path / name) for name in files])
        sha = porcelain.commit(
            repo,
            message=message.encode(),
            author=b"Course <c@example.org>",
            committer=b"Course <c@example.org>",
        )
    return bytes(sha).decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local web server for a folder: (base URL, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_zip_file_with_a_top_folder(tmp_path: Path) -> None:
    course = Course(tmp_path, source="../course.zip")
    (tmp_path / "course.zip").write_bytes(
        make_zip({"lab.txt": "1", "data/a.csv": "x"}, top="course-main/")
    )
    course.update()
    assert course.read("lab.txt") == "1"
    assert course.read("data/a.csv") == "x"


def test_zip_url(tmp_path: Path, served: tuple[str, Path]) -> None:
    url, folder = served
    (folder / "release.zip").write_bytes(make_zip({"lab.txt": "from the web"}))
    course = Course(tmp_path, source=f"{url}/release.zip")
    course.update()
    assert course.read("lab.txt") == "from the web"


def test_unreachable_source_changes_nothing(tmp_path: Path, served: tuple[str, Path]) -> None:
    url, _ = served
    course = Course(tmp_path, source=f"{url}/missing.zip")
    with pytest.raises(SourceError, match="HTTP 404"):
        course.update()
    closed = Course(tmp_path / "b", source="http://127.0.0.1:9/course.zip")
    with pytest.raises(SourceError, match="cannot reach") as error:
        closed.update()
    assert "nothing was changed" in error.value.render()
    assert not closed.notebooks.exists()


def test_corrupt_zip_changes_nothing(tmp_path: Path) -> None:
    course = Course(tmp_path, source="../course.zip")
    (tmp_path / "course.zip").write_bytes(make_zip({"lab.txt": "1"}))
    course.update()
    course.write("lab.txt", "mine")
    good = make_zip({"lab.txt": "2", "new.txt": "n"})
    (tmp_path / "course.zip").write_bytes(good[: len(good) // 2])
    with pytest.raises(SourceError, match="damaged"):
        course.update()
    assert course.files() == {"lab.txt"} and course.read("lab.txt") == "mine"


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    course = Course(tmp_path, source="../course.zip")
    (tmp_path / "course.zip").write_bytes(make_zip({"../../evil.txt": "x"}))
    with pytest.raises(SourceError, match="outside its folder"):
        course.update()
    assert not (tmp_path / "evil.txt").exists()


def test_git_repository_branch_tag_and_updates(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    porcelain.init(str(repo_path))
    commit(repo_path, {"lab.txt": "1", "README.md": "r"})
    course = Course(tmp_path, source="../repo")
    report = course.update()
    assert course.read("lab.txt") == "1"
    assert report.release.startswith("git ")
    commit(repo_path, {"lab.txt": "2"})
    course.update()
    assert course.read("lab.txt") == "2"
    assert not course.exists(".git")


def test_git_tag_ref(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    porcelain.init(str(repo_path))
    commit(repo_path, {"lab.txt": "week 1"})
    with Repo(str(repo_path)) as repo:
        porcelain.tag_create(repo, b"week1")
    commit(repo_path, {"lab.txt": "week 2 draft"})
    course = Course(tmp_path, source="../repo", extra='ref = "week1"\n')
    course.update()
    assert course.read("lab.txt") == "week 1"


def test_git_ref_that_does_not_exist(tmp_path: Path) -> None:
    repo_path = tmp_path / "repo"
    porcelain.init(str(repo_path))
    commit(repo_path, {"lab.txt": "1"})
    course = Course(tmp_path, source="../repo", extra='ref = "no-such-branch"\n')
    with pytest.raises(SourceError, match="no branch, tag or commit 'no-such-branch'") as error:
        course.update()
    assert "master" in error.value.hint or "main" in error.value.hint
    assert not course.notebooks.exists()


def test_git_url_unreachable(tmp_path: Path) -> None:
    course = Course(tmp_path, source="http://127.0.0.1:9/course.git")
    with pytest.raises(SourceError, match="cannot fetch"):
        course.update()


def test_missing_folder_source(tmp_path: Path) -> None:
    course = Course(tmp_path, source="../nowhere")
    with pytest.raises(SourceError, match="does not exist"):
        course.update()


def test_folder_source_skips_checkpoints(tmp_path: Path) -> None:
    course = Course(tmp_path)
    course.push("lab.txt", "1")
    course.push(".ipynb_checkpoints/lab-checkpoint.txt", "x")
    report = course.update()
    assert course.files() == {"lab.txt"}
    assert action_of(report, "lab.txt") == "added"
