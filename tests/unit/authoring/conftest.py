"""Fixtures for the authoring tests: drafts built in code, and the OU schema.

The suite runs with `--import-mode=importlib`, so helpers are offered as fixtures rather
than imported from a sibling module.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from docx import Document as new_docx
from docx.enum.style import WD_STYLE_TYPE
from docx.shared import Inches


def make_png(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG made by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def add_styles(doc: object, *names: str) -> None:
    """Add paragraph styles (Question, Answer, ...) that Word's default template lacks."""
    styles = doc.styles  # type: ignore[attr-defined]
    existing = {s.name for s in styles}
    for name in names:
        if name not in existing:
            styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)


def build_rich_docx(path: Path, tmp: Path) -> Path:
    """A week's draft with every feature the exporter handles."""
    doc = new_docx()
    add_styles(
        doc,
        "Activity Heading",
        "Question",
        "Answer",
        "Discussion",
        "Box Heading",
        "Box",
        "Code",
        "Metadata",
    )
    doc.add_paragraph("Week 1: Getting started", style="Title")
    doc.add_paragraph("unitTitle :: Getting started with data;;", style="Metadata")
    doc.add_heading("Introduction", level=1)
    p = doc.add_paragraph("This week is ")
    p.add_run("important").bold = True
    p.add_run(" and ")
    p.add_run("fun").italic = True
    p.add_run(". Run ")
    code = p.add_run("print(42)")
    code.font.name = "Courier New"
    p.add_run(".")
    doc.add_heading("What you will learn", level=2)
    doc.add_paragraph("tables", style="List Bullet")
    doc.add_paragraph("rows", style="List Bullet 2")
    doc.add_paragraph("columns", style="List Bullet 2")
    doc.add_paragraph("queries", style="List Bullet")
    doc.add_paragraph("first step", style="List Number")
    doc.add_paragraph("sub step", style="List Number 2")
    doc.add_heading("Data", level=3)
    doc.add_paragraph("Table 1 Some numbers", style="Caption")
    table = doc.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Name"
    table.cell(0, 1).text = "Value"
    table.cell(1, 0).text = "alpha"
    table.cell(1, 1).text = "1"
    image = tmp / "red.png"
    image.write_bytes(make_png())
    doc.add_picture(str(image), width=Inches(1))
    doc.add_paragraph("Figure 1 A red square", style="Caption")
    doc.add_paragraph("SELECT *", style="Code")
    doc.add_paragraph("FROM t;", style="Code")
    doc.add_heading("Detail", level=4)
    doc.add_paragraph("Fine print.")
    doc.add_heading("Practice", level=1)
    doc.add_paragraph("Activity 1 Explore", style="Activity Heading")
    doc.add_paragraph("What do you see?", style="Question")
    doc.add_paragraph("a pattern", style="List Bullet")
    doc.add_paragraph("A red square.", style="Answer")
    doc.add_paragraph("Colour matters.", style="Discussion")
    doc.add_paragraph("Back to normal text.")
    doc.add_paragraph("Remember", style="Box Heading")
    doc.add_paragraph("Save often.", style="Box")
    doc.add_paragraph("The end.")
    doc.save(str(path))
    return path


MARKDOWN = """---
title: Week 2 Queries
unit_title: Querying data
---
# Queries

Some **bold**, *italic*, `code` and a [link](<https://example.org/a b>).

- one
  1. one-a
  2. one-b
- two

| Col A | Col B |
|-------|-------|
| 1     | 2     |

Table: Two columns

![A red square](red.png "Figure 2 Red")

```python
print("hi")
```

## Section two

::: activity Activity 2 Try it
::: question
Write a query.
:::
::: answer
SELECT 1;
:::
:::

::: box Note
Boxes hold asides.
:::
"""


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


@pytest.fixture
def png() -> bytes:
    """The bytes of a small valid PNG (the same every call)."""
    return make_png()


@pytest.fixture
def docx_styles() -> Callable[[object, str], None]:
    """`add_styles(doc, *names)`: add paragraph styles Word's default template lacks."""
    return add_styles
