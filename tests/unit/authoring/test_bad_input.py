"""Bad input: each gives a clear message with file and place, the other documents of the
folder are still exported, and the exit status says something failed."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from docx import Document as new_docx
from typer.testing import CliRunner

from coursestack.authoring.cli import author_app


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "course"
    folder.mkdir()
    (folder / "metadata").write_text("courseCode :: TM351;;\ncourseTitle :: Data;;\n")
    (folder / "good.md").write_text("# Fine\n\nAll good here.\n")
    return folder


def _run(folder: Path) -> tuple[int, str, set[str]]:
    out = folder.parent / "out.zip"
    result = CliRunner().invoke(author_app, ["ouxml", str(folder), "-o", str(out)])
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
    return result.exit_code, result.output, names


def _assert_good_still_exported(names: set[str]) -> None:
    assert "good/good.xml" in names


def test_corrupt_docx(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 this is not really a zip")
    code, output, names = _run(folder)
    assert code == 1
    assert "broken.docx: error: is not a readable .docx" in output
    _assert_good_still_exported(names)
    assert not any(n.startswith("broken/") for n in names)


def test_password_protected_docx(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    # Encrypted Office files are OLE compound files, whatever their extension says.
    (folder / "secret.docx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504)
    code, output, names = _run(folder)
    assert code == 1
    assert "secret.docx: error: is password-protected" in output
    _assert_good_still_exported(names)


def test_empty_document(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    new_docx().save(str(folder / "empty.docx"))
    code, output, names = _run(folder)
    assert code == 1
    assert "empty.docx: error: document is empty" in output
    _assert_good_still_exported(names)


def test_skipped_heading_level(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    doc = new_docx()
    doc.add_heading("Week one", level=1)
    doc.add_paragraph("Intro.")
    doc.add_heading("Too deep", level=3)
    doc.add_paragraph("Body.")
    doc.save(str(folder / "skip.docx"))
    code, output, names = _run(folder)
    assert code == 1
    assert 'skip.docx (paragraph 3 "Too deep"): error: heading level 3' in output
    assert "follows level 1: a heading level is skipped" in output
    _assert_good_still_exported(names)


def test_unreadable_image(tmp_path: Path, png: bytes) -> None:
    folder = _folder(tmp_path)
    image = tmp_path / "pic.png"
    image.write_bytes(png)
    doc = new_docx()
    doc.add_heading("Pictures", level=1)
    doc.add_paragraph("Look:")
    doc.add_picture(str(image))
    good = tmp_path / "pic.docx"
    doc.save(str(good))
    # Replace the embedded picture's bytes with garbage, as a damaged file would have.
    bad = folder / "pic.docx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.startswith("word/media/"):
                data = b"not an image at all"
            dst.writestr(info, data)
    code, output, names = _run(folder)
    assert code == 1
    assert "pic.docx (paragraph 3): error: image" in output
    assert "cannot be read" in output
    _assert_good_still_exported(names)


def test_markdown_image_missing(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "img.md").write_text("# A\n\nText.\n\n![gone](missing.png)\n")
    code, output, names = _run(folder)
    assert code == 1
    assert "img.md (line 5): error: image 'missing.png' cannot be read" in output
    _assert_good_still_exported(names)


def test_unknown_rendering_in_a_metadata_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    sub = folder / "odd"
    sub.mkdir()
    (sub / "metadata").write_text("# block metadata\nRendering :: Web page;;\n")
    (sub / "doc.md").write_text("# One\n\nText.\n")
    code, output, names = _run(folder)
    assert code == 1
    assert f"{sub / 'metadata'} (line 2): error: unknown Rendering 'Web page'" in output
    _assert_good_still_exported(names)
    assert "odd-doc/odd-doc.xml" not in names


def test_unknown_rendering_in_front_matter(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "fm.md").write_text("---\nrendering: Glossy print\n---\n# One\n\nText.\n")
    code, output, names = _run(folder)
    assert code == 1
    assert "fm.md front matter): error: unknown Rendering 'Glossy print'" in output
    _assert_good_still_exported(names)


def test_broken_metadata_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "metadata").write_text(
        "courseCode :: TM351;;\ncourseTitle :: Data\nauthor :: Ann;;\njust some words;;\n"
    )
    (folder / "second.md").write_text("# Two\n\nMore.\n")
    code, output, names = _run(folder)
    assert code == 1
    meta = folder / "metadata"
    assert f"{meta} (line 2): error: record 'courseTitle' runs into the next one" in output
    assert f"{meta} (line 4): error: record 'just some words' has no '::'" in output
    assert output.count("runs into the next one") == 1  # reported once, not per document
    # The records that could be read are still used for every document.
    _assert_good_still_exported(names)
    assert "second/second.xml" in names


def test_missing_course_code(tmp_path: Path) -> None:
    folder = tmp_path / "nocode"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\nText.\n")
    code, output, _ = _run(folder)
    assert code == 1 and "no course code" in output


@pytest.mark.parametrize("style", ["Question", "Answer"])
def test_activity_parts_without_heading_still_valid(
    tmp_path: Path,
    style: str,
    assert_valid: Callable[[bytes], None],
    docx_styles: Callable[..., None],
) -> None:
    folder = _folder(tmp_path)
    (folder / "good.md").unlink()
    doc = new_docx()
    docx_styles(doc, "Question", "Answer")
    doc.add_heading("One", level=1)
    doc.add_paragraph("Only this part.", style=style)
    doc.save(str(folder / "act.docx"))
    code, output, names = _run(folder)
    assert code == 0, output
    assert ("activity part has no question" in output) == (style == "Answer")
    with zipfile.ZipFile(folder.parent / "out.zip") as zf:
        data = zf.read("act/act.xml")
    assert_valid(data)
    assert b"<Question>" in data and names >= {"act/act.xml"}
