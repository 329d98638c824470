"""OU-XML export: structure of the XML built from .docx and Markdown, validity, the zip."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

from lxml import etree
from typer.testing import CliRunner

from coursestack.authoring.cli import author_app
from coursestack.authoring.documents import load_draft
from coursestack.authoring.export import export_path
from coursestack.authoring.ouxml import export_draft

Validate = Callable[[bytes], None]


def _export(path: Path, **meta: str) -> tuple[etree._Element, list[str]]:
    draft = load_draft(path, path.parent, {"courseCode": "TM351", **meta})
    exp = export_draft(draft)
    assert not exp.failed, [p.render() for p in exp.problems]
    return etree.fromstring(exp.xml), [p.render() for p in exp.problems]


def _text(el: etree._Element | None) -> str:
    assert el is not None
    return "".join(el.itertext())


def test_docx_item_metadata_and_attributes(rich_docx: Path, assert_valid: Validate) -> None:
    root, _ = _export(
        rich_docx, courseTitle="Data management", author="A. Author", rendering="openlearn"
    )
    assert root.tag == "Item"
    assert root.get("SchemaVersion") == "2.0" and root.get("TextType") == "CompleteItem"
    assert root.get("id") == "XTM351_week1"
    assert root.get("Rendering") == "OpenLearn"  # normalised to the schema's spelling
    assert [c.tag for c in root][:5] == ["CourseCode", "CourseTitle", "ItemID", "ItemTitle", "Unit"]
    assert root.findtext("CourseCode") == "TM351"
    assert root.findtext("ItemTitle") == "Week 1: Getting started"  # the Title paragraph
    unit = root.find("Unit")
    assert unit is not None
    assert unit.findtext("UnitTitle") == "Getting started with data"  # Metadata paragraph
    assert unit.findtext("ByLine") == "A. Author"
    assert_valid(etree.tostring(root))


def test_docx_headings_become_nested_sections(rich_docx: Path) -> None:
    root, _ = _export(rich_docx)
    sessions = root.findall("Unit/Session")
    assert [s.findtext("Title") for s in sessions] == ["Introduction", "Practice"]
    section = sessions[0].find("Section")
    assert section is not None and section.findtext("Title") == "What you will learn"
    sub = section.find("SubSection")
    assert sub is not None and sub.findtext("Title") == "Data"
    subsub = sub.find("SubSubSection")
    assert subsub is not None and subsub.findtext("Heading") == "Detail"
    assert subsub.findtext("Paragraph") == "Fine print."


def test_docx_inline_formatting(rich_docx: Path) -> None:
    root, _ = _export(rich_docx)
    para = root.find("Unit/Session/Paragraph")
    assert para is not None
    assert para.findtext("b") == "important"
    assert para.findtext("i") == "fun"
    assert para.findtext("ComputerCode") == "print(42)"
    assert _text(para) == "This week is important and fun. Run print(42)."


def test_docx_lists_nest_as_subsidiary_lists(rich_docx: Path) -> None:
    root, _ = _export(rich_docx)
    section = root.find("Unit/Session/Section")
    assert section is not None
    bullets = section.find("BulletedList")
    assert bullets is not None
    items = bullets.findall("ListItem")
    assert [i.text for i in items] == ["tables", "queries"]
    sub = items[0].find("BulletedSubsidiaryList")
    assert sub is not None
    assert [s.text for s in sub.findall("SubListItem")] == ["rows", "columns"]
    numbered = section.find("NumberedList")  # a new list: bullets then numbers
    assert numbered is not None
    first = numbered.find("ListItem")
    assert first is not None and first.text == "first step"
    assert first.findtext("NumberedSubsidiaryList/SubListItem") == "sub step"


def test_docx_table_figure_and_code(rich_docx: Path, png: bytes) -> None:
    draft = load_draft(rich_docx, rich_docx.parent, {"courseCode": "TM351"})
    exp = export_draft(draft)
    root = etree.fromstring(exp.xml)
    sub = root.find("Unit/Session/Section/SubSection")
    assert sub is not None
    table = sub.find("Table")
    assert table is not None
    assert table.findtext("TableHead") == "Table 1 Some numbers"
    rows = table.findall("tbody/tr")
    assert [[c.tag for c in r] for r in rows] == [["th", "th"], ["td", "td"]]
    assert [c.text for c in rows[1]] == ["alpha", "1"]
    figure = sub.find("Figure")
    assert figure is not None
    assert figure.find("Image").get("src") == "images/week1-fig01.png"  # type: ignore[union-attr]
    assert figure.findtext("Caption") == "Figure 1 A red square"
    assert exp.images == [("week1-fig01.png", png)]
    listing = sub.find("ProgramListing")
    assert listing is not None
    assert [p.text for p in listing.findall("Paragraph")] == ["SELECT *", "FROM t;"]
    assert any("alternative text" in p.message for p in exp.problems)


def test_docx_activity_and_box(rich_docx: Path) -> None:
    root, _ = _export(rich_docx)
    practice = root.findall("Unit/Session")[1]
    activity = practice.find("Activity")
    assert activity is not None
    assert [c.tag for c in activity] == ["Heading", "Question", "Answer", "Discussion"]
    assert activity.findtext("Heading") == "Activity 1 Explore"
    assert activity.findtext("Question/Paragraph") == "What do you see?"
    assert activity.findtext("Question/BulletedList/ListItem") == "a pattern"
    assert activity.findtext("Answer/Paragraph") == "A red square."
    assert activity.findtext("Discussion/Paragraph") == "Colour matters."
    # A Normal paragraph ends the activity; the box follows.
    tags = [c.tag for c in practice]
    assert tags == ["Title", "Activity", "Paragraph", "Box", "Paragraph"]
    box = practice.find("Box")
    assert box is not None
    assert box.findtext("Heading") == "Remember" and box.findtext("Paragraph") == "Save often."


def test_markdown_export_structure(course_folder: Path, assert_valid: Validate) -> None:
    root, problems = _export(course_folder / "week2.md")
    assert root.findtext("ItemTitle") == "Week 2 Queries"
    assert root.findtext("Unit/UnitTitle") == "Querying data"
    session = root.find("Unit/Session")
    assert session is not None and session.findtext("Title") == "Queries"
    link = session.find("Paragraph/a")
    assert link is not None and link.get("href") == "https://example.org/a%20b"
    assert session.findtext("BulletedList/ListItem/NumberedSubsidiaryList/SubListItem") == "one-a"
    assert session.findtext("Table/TableHead") == "Two columns"
    assert session.find("Figure/Image").get("alt") == "A red square"  # type: ignore[union-attr]
    assert session.findtext("Figure/Caption") == "Figure 2 Red"
    assert session.findtext("ProgramListing/Paragraph") == 'print("hi")'
    activity = session.find("Section/Activity")
    assert activity is not None
    assert [c.tag for c in activity] == ["Heading", "Question", "Answer"]
    assert session.findtext("Section/Box/Heading") == "Note"
    assert problems == []
    assert_valid(etree.tostring(root))


def test_folder_becomes_one_zip_with_predictable_names(
    course_folder: Path, assert_valid: Validate
) -> None:
    sub = course_folder / "block 2"
    sub.mkdir()
    (sub / "intro.md").write_text("# Hello\n\nWorld.\n")
    out = course_folder.parent / "out.zip"
    report = export_path(course_folder, out)
    assert report.ok, [p.render() for e in report.exports for p in e.problems]
    with zipfile.ZipFile(out) as zf:
        names = sorted(zf.namelist())
        assert names == [
            "block_2-intro/block_2-intro.xml",
            "export-report.txt",
            "week1/images/week1-fig01.png",
            "week1/week1.xml",
            "week2/images/week2-fig01.png",
            "week2/week2.xml",
        ]
        for name in names:
            if name.endswith(".xml"):
                assert_valid(zf.read(name))
        assert "week1: ok" in zf.read("export-report.txt").decode()


def test_single_document_cli_writes_folder(
    rich_docx: Path, assert_valid: Validate, png: bytes
) -> None:
    out = rich_docx.parent / "export"
    result = CliRunner().invoke(
        author_app, ["ouxml", str(rich_docx), "-o", str(out), "--meta", "courseCode=TM351"]
    )
    assert result.exit_code == 0, result.output
    assert (out / "images" / "week1-fig01.png").read_bytes() == png
    assert_valid((out / "week1.xml").read_bytes())
    assert "exported 1 of 1" in result.output


def test_unsupported_content_is_reported_not_dropped(tmp_path: Path) -> None:
    md = tmp_path / "odd.md"
    md.write_text(
        "# One\n\nText <span>inline</span>.\n\n---\n\n<div>raw</div>\n\n- a\n  - b\n    - c\n",
        encoding="utf-8",
    )
    root, problems = _export(md)
    joined = "\n".join(problems)
    assert "line 3" in joined and "inline HTML" in joined
    assert "line 5" in joined and "horizontal rule" in joined
    assert "line 7" in joined and "raw HTML" in joined
    # Third-level list items are kept (one level up) and reported.
    subs = [s.text for s in root.iter("SubListItem")]
    assert subs == ["b", "\u2013 c"]
    assert "deeper than two levels" in joined


def test_text_before_first_heading_and_many_sessions_have_titles(
    tmp_path: Path, assert_valid: Validate
) -> None:
    md = tmp_path / "pre.md"
    md.write_text(
        "---\ntitle: Unit A\n---\nOpening words.\n\n# Part 1\n\nOne.\n\n"
        "# Part 2\n\n## Empty section\n\n## Full\n\nTwo.\n"
    )
    root, problems = _export(md)
    titles = [s.findtext("Title") for s in root.iter("Session")]
    assert titles == ["Unit A", "Part 1", "Part 2"]
    assert any("before the first level-1 heading" in p for p in problems)
    assert any("section has no content" in p for p in problems)
    assert_valid(etree.tostring(root))


def test_docx_core_properties_hyperlink_and_numbering(
    tmp_path: Path, assert_valid: Validate
) -> None:
    from docx import Document as new_docx
    from docx.opc.constants import RELATIONSHIP_TYPE
    from docx.oxml import parse_xml
    from docx.oxml.ns import nsdecls

    doc = new_docx()
    props = doc.core_properties
    props.title = "From properties"
    props.author = "Prop Author"
    props.comments = "unitTitle :: Unit from comments;; rendering :: Draft PDF;;"
    doc.add_heading("Links", level=1)
    para = doc.add_paragraph("See ")
    rid = doc.part.relate_to(
        "https://www.open.ac.uk/", RELATIONSHIP_TYPE.HYPERLINK, is_external=True
    )
    para._p.append(
        parse_xml(
            f'<w:hyperlink {nsdecls("w", "r")} r:id="{rid}"><w:r><w:rPr>'
            "<w:b/></w:rPr><w:t>the OU</w:t></w:r></w:hyperlink>"
        )
    )
    path = tmp_path / "props.docx"
    doc.save(str(path))
    root, _ = _export(path)
    assert root.findtext("ItemTitle") == "From properties"
    assert root.get("Rendering") == "Draft PDF"
    assert root.findtext("Unit/UnitTitle") == "Unit from comments"
    assert root.findtext("Unit/ByLine") == "Prop Author"
    link = root.find("Unit/Session/Paragraph/a")
    assert link is not None and link.get("href") == "https://www.open.ac.uk/"
    assert link.findtext("b") == "the OU"
    assert_valid(etree.tostring(root))
