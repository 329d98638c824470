"""Fixtures for the authoring tests: drafts built in code, and the OU schema."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from authoring_fixtures import MARKDOWN, build_rich_docx, make_png


@pytest.fixture
def rich_docx(tmp_path: Path) -> Path:
    """Path of a .docx built by `build_rich_docx`."""
    return build_rich_docx(tmp_path / "week1.docx", tmp_path)


@pytest.fixture
def course_folder(tmp_path: Path) -> Path:
    """A course folder: metadata file, a rich .docx and a Markdown draft."""
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "metadata").write_text(
        "# course-wide metadata\n"
        "courseCode :: TM351;;\n"
        "Course title :: Data management and analysis;;\n"
        "lead-author :: A. Author;;\n"
        "target_words :: 400;;\n",
        encoding="utf-8",
    )
    build_rich_docx(folder / "week1.docx", tmp_path)
    (folder / "week2.md").write_text(MARKDOWN, encoding="utf-8")
    (folder / "red.png").write_bytes(make_png())
    return folder


@pytest.fixture(scope="session")
def schema_path() -> Path:
    """The OU schema from the installed ou-xml-validator package."""
    from coursestack.authoring.ouxml_check import find_schema

    return find_schema()


@pytest.fixture(scope="session")
def assert_valid(schema_path: Path) -> Callable[[bytes], None]:
    """Assert that XML bytes pass the XSD (lxml and xmlschema) and our VLE rules."""
    import xmlschema

    from coursestack.authoring.ouxml_check import check_xml

    xs = xmlschema.XMLSchema(str(schema_path))

    def check(data: bytes) -> None:
        problems = check_xml(data, "test.xml", schema_path)
        assert problems == [], "\n".join(p.render() for p in problems)
        errors = list(xs.iter_errors(data.decode("utf-8")))
        assert errors == [], "\n".join(str(e) for e in errors[:3])

    return check
