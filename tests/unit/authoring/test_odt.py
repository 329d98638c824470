"""The .odt reader (lxml on content.xml): progress counts and a basic export."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

from coursestack.authoring.documents import load_draft
from coursestack.authoring.ouxml import export_draft
from coursestack.authoring.progress import progress_report

CONTENT = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:xlink="http://www.w3.org/1999/xlink"><office:body><office:text>
<text:sequence-decls/>
<text:h text:outline-level="1">Week three</text:h>
<text:p>Five words<text:s/>are <text:span>right here</text:span>.</text:p>
<text:list><text:list-item><text:p>item one</text:p>
 <text:list><text:list-item><text:p>nested</text:p></text:list-item></text:list>
</text:list-item></text:list>
<text:p>See <text:a xlink:href="https://example.org">this</text:a></text:p>
<text:section/>
</office:text></office:body></office:document-content>"""
META = """<?xml version="1.0" encoding="UTF-8"?>
<office:document-meta xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
 xmlns:dc="http://purl.org/dc/elements/1.1/"><office:meta><dc:title>ODT week</dc:title>
<meta:document-statistic meta:page-count="3"/></office:meta></office:document-meta>"""


def _odt(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        zf.writestr("content.xml", CONTENT)
        zf.writestr("meta.xml", META)
    return path


def test_odt_progress_uses_words_and_stated_pages(tmp_path: Path) -> None:
    _odt(tmp_path / "w3.odt")
    (tmp_path / "metadata").write_text("target_pages :: 6;;")
    report = progress_report(tmp_path, overrides={"measure": "pages"}, alerts=False)
    (item,) = report.items
    assert item.words == 12 and item.title == "ODT week"
    assert (item.value, item.target, item.percent) == (3.0, 6.0, 50.0)
    assert any("text:section" in p.message for p in report.problems)  # reported, not dropped


def test_odt_exports(tmp_path: Path, assert_valid: Callable[[bytes], None]) -> None:
    path = _odt(tmp_path / "w3.odt")
    exp = export_draft(load_draft(path, tmp_path, {"courseCode": "TM351"}))
    assert not exp.failed
    xml = exp.xml.decode()
    assert "<ItemTitle>ODT week</ItemTitle>" in xml and "<Title>Week three</Title>" in xml
    assert "<SubListItem>nested</SubListItem>" in xml
    assert '<a href="https://example.org">this</a>' in xml
    assert_valid(exp.xml)


def test_corrupt_odt(tmp_path: Path) -> None:
    bad = tmp_path / "bad.odt"
    bad.write_bytes(b"nope")
    report = progress_report(tmp_path, alerts=False)
    assert report.failed and report.items[0].status == "failed"
    assert "is not a readable .odt" in report.problems[0].message
