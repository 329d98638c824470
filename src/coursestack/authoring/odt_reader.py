"""Read an OpenDocument text (.odt) draft into the common model.

An .odt is a zip holding `content.xml`; lxml (already a dependency) reads it, so no
extra ODF library is needed. Headings, paragraphs, lists and tables are understood; other
content is reported. Figures are not extracted from .odt (reported per location).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from lxml import etree

from coursestack.authoring.model import (
    Block,
    Document,
    Heading,
    ListBlock,
    ListItem,
    Para,
    Problem,
    Span,
    Table,
    merge_spans,
)

TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
META = "urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
DC = "http://purl.org/dc/elements/1.1/"


def _t(tag: str) -> str:
    return f"{{{TEXT}}}{tag}"


def _text_of(elem: Any) -> list[Span]:
    """Spans of an ODF paragraph (formatting by automatic styles is not tracked)."""
    out: list[Span] = []
    if elem.text:
        out.append(Span(elem.text))
    for child in elem:
        tag = etree.QName(child).localname if isinstance(child.tag, str) else ""
        if tag == "s":
            out.append(Span(" " * int(child.get(_t("c"), "1"))))
        elif tag == "tab":
            out.append(Span("\t"))
        elif tag == "line-break":
            out.append(Span("\n"))
        elif tag == "a":
            href = child.get("{http://www.w3.org/1999/xlink}href", "")
            out.extend(Span(s.text, s.bold, s.italic, s.code, href) for s in _text_of(child))
        elif tag in {"span", "bookmark", "bookmark-start", "bookmark-end", "soft-page-break"}:
            out.extend(_text_of(child))
        if child.tail:
            out.append(Span(child.tail))
    return merge_spans(out)


def read_odt(path: Path) -> Document:
    """Read an .odt into the common model; failures become problems."""
    try:
        with zipfile.ZipFile(path) as zf:
            content = etree.fromstring(zf.read("content.xml"))
            meta_xml = zf.read("meta.xml") if "meta.xml" in zf.namelist() else b""
    except (zipfile.BadZipFile, KeyError, OSError, etree.XMLSyntaxError) as exc:
        return Document(
            path,
            [],
            problems=[
                Problem(
                    "error", str(path), "", f"is not a readable .odt (corrupt or encrypted): {exc}"
                )
            ],
        )
    doc = Document(path, [])
    if meta_xml:
        meta = etree.fromstring(meta_xml)
        title = meta.find(f".//{{{DC}}}title")
        if title is not None and title.text:
            doc.metadata["item_title"] = title.text
            doc.metadata_where["item_title"] = "document properties"
        stats = meta.find(f".//{{{META}}}document-statistic")
        if stats is not None and stats.get(f"{{{META}}}page-count"):
            doc.stated_pages = int(stats.get(f"{{{META}}}page-count", "0"))
    body = content.find(f"{{{OFFICE}}}body/{{{OFFICE}}}text")
    if body is None:
        doc.problems.append(Problem("error", str(path), "", "has no text body"))
        return doc
    doc.blocks = _blocks(body, doc)
    return doc


def _blocks(parent: Any, doc: Document) -> list[Block]:
    out: list[Block] = []
    n = 0
    for child in parent:
        tag = etree.QName(child).localname if isinstance(child.tag, str) else ""
        n += 1
        where = f"element {n}"
        if tag == "h":
            level = int(child.get(_t("outline-level"), "1"))
            out.append(Heading(level, _text_of(child), where))
        elif tag == "p":
            spans = _text_of(child)
            if "".join(s.text for s in spans).strip():
                out.append(Para(spans, where))
            if (
                child.find(".//{urn:oasis:names:tc:opendocument:xmlns:drawing:1.0}frame")
                is not None
            ):
                doc.problems.append(
                    Problem("warning", str(doc.path), where, "picture in an .odt not exported")
                )
        elif tag == "list":
            out.append(_list(child, where))
        elif tag == "table":
            rows = [
                [
                    _text_of(p)
                    for cell in row.iter(f"{{{TABLE}}}table-cell")
                    for p in cell.findall(_t("p"))[:1]
                ]
                for row in child.iter(f"{{{TABLE}}}table-row")
            ]
            out.append(Table(rows, 0, [], where))
        elif tag in {
            "sequence-decls",
            "variable-decls",
            "user-field-decls",
            "tracked-changes",
            "soft-page-break",
            "forms",
        }:
            continue
        else:
            doc.problems.append(
                Problem(
                    "warning",
                    str(doc.path),
                    where,
                    f"unsupported .odt content <text:{tag}> not exported",
                )
            )
    return out


def _list(elem: Any, where: str) -> ListBlock:
    lst = ListBlock(False, [], where)
    for item in elem.findall(_t("list-item")):
        spans: list[Span] = []
        children: list[ListBlock] = []
        for child in item:
            tag = etree.QName(child).localname
            if tag in {"p", "h"}:
                spans.extend(_text_of(child))
            elif tag == "list":
                children.append(_list(child, where))
        lst.items.append(ListItem(spans, children))
    return lst
