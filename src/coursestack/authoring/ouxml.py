"""Convert a draft in the common model to OU-XML (OU Structured Authoring schema 2.0).

Element names and nesting follow `OUIntermediateSchema.xsd` as published in the
`ou-xml-validator` package: `Item` > metadata > `Unit` > `Session` > `Section` >
`SubSection` > `SubSubSection`; lists, tables, figures, `ProgramListing`, `Box`, `Activity`.
Anything that cannot be expressed is reported with its location, never dropped silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote

from lxml import etree

from coursestack.authoring.documents import Draft
from coursestack.authoring.model import (
    Block,
    Code,
    Container,
    Figure,
    Heading,
    ListBlock,
    Para,
    Problem,
    Quote,
    Span,
    Table,
    plain,
)

XML_NS = "http://www.w3.org/XML/1998/namespace"
# Item/@Rendering values allowed by the schema (LastRenderingType), in its spelling.
RENDERINGS = (
    "Draft PDF",
    "Print PDF",
    "Print PDF + crop marks",
    "VLE2 modules (learn2)",
    "VLE2 shared (learn1)",
    "VLE2 staff (learn3)",
    "Qualification website (learn4)",
    "Open Science Lab (learn5)",
    "Prison VLE (learn7)",
    "XML",
    "OpenLearn",
    "OpenLearnCreate",
    "Accessible",
    "Alternative",
    "Audiobook",
)
DEFAULT_RENDERING = "VLE2 modules (learn2)"
SECTION_TAGS = {1: "Session", 2: "Section", 3: "SubSection", 4: "SubSubSection"}
# Elements a Session/Section/SubSection/SubSubSection must hold at least one of content.
_NEEDS_CONTENT = {"Session", "Section"}


def slug(text: str) -> str:
    """A name safe for ids and file names: letters, digits, `_` and `-` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "item"


@dataclass
class Export:
    """One document's OU-XML and images, or the reason it failed."""

    name: str
    xml: bytes = b""
    images: list[tuple[str, bytes]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when an error meant no trustworthy XML could be made."""
        return not self.xml


class _Writer:
    def __init__(self, draft: Draft, name: str) -> None:
        self.draft = draft
        self.name = name
        self.file = str(draft.document.path)
        self.problems: list[Problem] = []
        self.images: list[tuple[str, bytes]] = []

    def warn(self, where: str, message: str) -> None:
        self.problems.append(Problem("warning", self.file, where, message))

    def error(self, where: str, message: str, file: str = "") -> None:
        self.problems.append(Problem("error", file or self.file, where, message))

    # -- inline ------------------------------------------------------------------------
    def inline(self, parent: etree._Element, spans: list[Span], code_ok: bool = True) -> None:
        """Append spans to `parent` as text with b/i/ComputerCode/a elements."""
        i = 0
        while i < len(spans):
            href = spans[i].href
            j = i
            while j < len(spans) and spans[j].href == href:
                j += 1
            target = parent
            if href:
                safe = ":/?#[]@!$&'()*+,;=%~"
                target = etree.SubElement(parent, "a", href=quote(href, safe=safe))
            for span in spans[i:j]:
                holder = target
                if span.bold:
                    holder = etree.SubElement(holder, "b")
                if span.italic:
                    holder = etree.SubElement(holder, "i")
                if span.code and code_ok:
                    holder = etree.SubElement(holder, "ComputerCode")
                _append_text(holder, span.text)
            i = j

    # -- blocks ------------------------------------------------------------------------
    def para(self, parent: etree._Element, spans: list[Span], tag: str = "Paragraph") -> None:
        self.inline(etree.SubElement(parent, tag), spans)

    def block(self, parent: etree._Element, blk: Block, in_quote: bool = False) -> None:
        """Append one non-heading block; `in_quote` limits it to what a Quote may hold."""
        if isinstance(blk, Para):
            self.para(parent, blk.spans)
        elif isinstance(blk, Heading):
            self.para(parent, blk.spans, "SubHeading")
        elif isinstance(blk, ListBlock):
            self.list_block(parent, blk)
        elif isinstance(blk, Table):
            self.table(parent, blk)
        elif isinstance(blk, Figure):
            self.figure(parent, blk)
        elif isinstance(blk, Code):
            if in_quote:
                self.warn(blk.where, "code block inside a quote exported as paragraphs")
                for line in blk.text.split("\n"):
                    self.para(parent, [Span(line, code=True)])
            else:
                listing = etree.SubElement(parent, "ProgramListing")
                for line in blk.text.split("\n"):
                    _append_text(etree.SubElement(listing, "Paragraph"), line)
        elif isinstance(blk, Quote):
            quote_el = etree.SubElement(parent, "Quote")
            for inner in blk.blocks:
                self.block(quote_el, inner, in_quote=True)
            self.ensure_content(quote_el, blk.where, "quote")
        elif isinstance(blk, Container):
            if in_quote:
                self.warn(
                    blk.where,
                    f"{blk.kind} inside a quote: its content is exported without the frame",
                )
                for inner in blk.blocks:
                    self.block(parent, inner, in_quote=True)
            elif blk.kind == "box":
                self.box(parent, blk)
            elif blk.kind == "activity":
                self.activity(parent, blk)
            else:
                self.warn(blk.where, f"{blk.kind} outside an activity: put in an activity")
                self.activity(parent, Container("activity", [], [blk], blk.where))

    def ensure_content(self, elem: etree._Element, where: str, what: str) -> None:
        """The schema needs at least one child here; keep it valid and say so."""
        content = [c for c in elem if c.tag not in {"Title", "Heading"}]
        if not content:
            self.warn(where, f"{what} has no content; an empty paragraph stands in for it")
            etree.SubElement(elem, "Paragraph")

    def list_block(self, parent: etree._Element, lst: ListBlock) -> None:
        el = etree.SubElement(parent, "NumberedList" if lst.ordered else "BulletedList")
        for item in lst.items:
            li = etree.SubElement(el, "ListItem")
            self.inline(li, item.spans)
            for sub in item.children:
                sub_el = etree.SubElement(
                    li, "NumberedSubsidiaryList" if sub.ordered else "BulletedSubsidiaryList"
                )
                self.sub_items(sub_el, sub)

    def sub_items(self, sub_el: etree._Element, lst: ListBlock, depth: int = 0) -> None:
        # OU-XML stops at two list levels; deeper items keep their text one level up.
        for item in lst.items:
            prefix = "\u2013 " * depth
            self.inline(
                etree.SubElement(sub_el, "SubListItem"),
                [Span(prefix), *item.spans] if prefix else item.spans,
            )
            for deeper in item.children:
                self.warn(
                    deeper.where,
                    "list nested deeper than two levels: deeper items are "
                    "exported at the second level, marked with a dash",
                )
                self.sub_items(sub_el, deeper, depth + 1)

    def table(self, parent: etree._Element, tbl: Table) -> None:
        el = etree.SubElement(parent, "Table")
        head = etree.SubElement(el, "TableHead")
        if tbl.caption:
            self.inline(head, tbl.caption)
        else:
            self.warn(tbl.where, "table has no caption (add a Caption-style paragraph)")
        body = etree.SubElement(el, "tbody")
        for n, row in enumerate(tbl.rows):
            tr = etree.SubElement(body, "tr")
            for cell in row:
                self.inline(etree.SubElement(tr, "th" if n < tbl.header_rows else "td"), cell)

    def figure(self, parent: etree._Element, fig: Figure) -> None:
        number = len(self.images) + 1
        filename = f"{self.name}-fig{number:02d}.{fig.image.ext}"
        self.images.append((filename, fig.image.data))
        el = etree.SubElement(parent, "Figure")
        image = etree.SubElement(el, "Image", src=f"images/{filename}")
        if fig.image.alt:
            image.set("alt", fig.image.alt)
        else:
            self.warn(fig.where, "image has no alternative text (needed for accessibility)")
        if fig.caption:
            self.inline(etree.SubElement(el, "Caption"), fig.caption)

    def box(self, parent: etree._Element, blk: Container) -> None:
        el = etree.SubElement(parent, "Box")
        if blk.title:
            self.inline(etree.SubElement(el, "Heading"), blk.title)
        for inner in blk.blocks:
            self.block(el, inner)
        self.ensure_content(el, blk.where, "box")

    def activity(self, parent: etree._Element, blk: Container) -> None:
        el = etree.SubElement(parent, "Activity")
        if blk.title:
            self.inline(etree.SubElement(el, "Heading"), blk.title)
        # Group parts: each question starts a part; answer/discussion follow it.
        parts: list[dict[str, list[Block]]] = []
        for inner in blk.blocks:
            kind = inner.kind if isinstance(inner, Container) else "question"
            if kind not in {"question", "answer", "discussion"}:
                kind = "question"
            content = (
                inner.blocks
                if isinstance(inner, Container)
                and inner.kind in {"question", "answer", "discussion"}
                else [inner]
            )
            if not parts or (
                kind == "question"
                and "question" in parts[-1]
                and ("answer" in parts[-1] or "discussion" in parts[-1])
            ):
                parts.append({})
            if kind in parts[-1] and kind != "question":
                self.warn(inner.where, f"second {kind} in one activity part merged into the first")
            parts[-1].setdefault(kind, []).extend(content)
        if not parts:
            parts = [{}]
        if len(parts) == 1:
            holders = [el]
        else:
            multipart = etree.SubElement(el, "Multipart")
            holders = [etree.SubElement(multipart, "Part") for _ in parts]
        for holder, part in zip(holders, parts, strict=True):
            if "question" not in part:
                self.warn(blk.where, "activity part has no question")
            for kind, tag in (
                ("question", "Question"),
                ("answer", "Answer"),
                ("discussion", "Discussion"),
            ):
                if kind == "question" or kind in part:
                    qad = etree.SubElement(holder, tag)
                    for inner in part.get(kind, []):
                        self.block(qad, inner)
                    self.ensure_content(qad, blk.where, f"activity {kind}")

    # -- document ----------------------------------------------------------------------
    def body(self, unit: etree._Element, blocks: list[Block], unit_title: str) -> None:
        stack: list[tuple[int, etree._Element, str]] = []  # (level, element, where)
        for blk in blocks:
            if isinstance(blk, Heading):
                level = blk.level
                if level > 4:
                    self.warn(
                        blk.where,
                        f"heading level {level} is deeper than OU-XML "
                        "sections go; exported as a sub-heading",
                    )
                    parent = (
                        stack[-1][1]
                        if stack
                        else self.implicit_session(unit, stack, unit_title, blk)
                    )
                    self.para(
                        parent,
                        blk.spans,
                        "SubHeading" if parent.tag == "SubSubSection" else "Paragraph",
                    )
                    continue
                depth = stack[-1][0] if stack else 0
                if level > depth + 1:
                    self.error(
                        blk.where,
                        f'heading level {level} "{plain(blk.spans)}" '
                        f"follows level {depth}: a heading level is skipped",
                    )
                while stack and stack[-1][0] >= level:
                    self.close(stack.pop())
                parent = stack[-1][1] if stack else unit
                el = etree.SubElement(parent, SECTION_TAGS[level])
                self.inline(etree.SubElement(el, "Heading" if level == 4 else "Title"), blk.spans)
                stack.append((level, el, blk.where))
            else:
                parent = (
                    stack[-1][1] if stack else self.implicit_session(unit, stack, unit_title, blk)
                )
                self.block(parent, blk)
        while stack:
            self.close(stack.pop())

    def implicit_session(
        self,
        unit: etree._Element,
        stack: list[tuple[int, etree._Element, str]],
        unit_title: str,
        blk: Block,
    ) -> etree._Element:
        if any(isinstance(b, Heading) and b.level == 1 for b in self.draft.document.blocks):
            self.warn(
                blk.where,
                "text before the first level-1 heading is put in a session titled after the unit",
            )
        el = etree.SubElement(unit, "Session")
        _append_text(etree.SubElement(el, "Title"), unit_title)
        stack.append((1, el, blk.where))
        return el

    def close(self, entry: tuple[int, etree._Element, str]) -> None:
        _level, el, where = entry
        if el.tag in _NEEDS_CONTENT:
            self.ensure_content(el, where, el.tag.lower())

    def item(self) -> etree._Element | None:
        meta = self.draft.metadata
        doc = self.draft.document
        if not doc.blocks:
            self.error("", "document is empty: nothing to export")
            return None
        course_code = meta.get("course_code") or ""
        if not course_code:
            self.error(
                "",
                "no course code: add `courseCode :: XX123;;` to a metadata file "
                "or pass --meta courseCode=XX123",
            )
        item_title = meta.get("item_title") or doc.path.stem.replace("_", " ").replace("-", " ")
        rendering = meta.get("rendering") or DEFAULT_RENDERING
        known = {r.lower(): r for r in RENDERINGS}
        if rendering.lower() not in known:
            place = meta.place("rendering")
            file, _, line = place.rpartition(":")
            self.error(
                f"line {line}" if file and line.isdigit() else place,
                f"unknown Rendering {rendering!r}; use one of: {', '.join(RENDERINGS)}",
                file=file if file and line.isdigit() else "",
            )
        rendering = known.get(rendering.lower(), DEFAULT_RENDERING)
        item_id = meta.get("item_id") or f"X{slug(course_code)}_{slug(doc.path.stem)}"
        if not item_id.startswith("X") or re.search(r"\s", item_id):
            self.error(
                meta.place("item_id"),
                f"item id {item_id!r} must start with 'X' and contain no spaces",
            )
        item = etree.Element("Item", nsmap=None)
        item.set("TextType", "CompleteItem")
        item.set("SchemaVersion", "2.0")
        item.set("id", item_id)
        item.set("Template", "Generic_A4_Unnumbered")
        item.set("Rendering", rendering)
        item.set(f"{{{XML_NS}}}lang", "en-GB")
        _append_text(etree.SubElement(item, "CourseCode"), course_code)
        _append_text(etree.SubElement(item, "CourseTitle"), meta.get("course_title") or "")
        _append_text(etree.SubElement(item, "ItemID"), item_id)
        _append_text(etree.SubElement(item, "ItemTitle"), item_title)
        unit = etree.SubElement(item, "Unit")
        unit_title = meta.get("unit_title") or item_title
        _append_text(etree.SubElement(unit, "UnitID"), meta.get("unit_id") or slug(doc.path.stem))
        _append_text(etree.SubElement(unit, "UnitTitle"), unit_title)
        if meta.get("author"):
            _append_text(etree.SubElement(unit, "ByLine"), meta.get("author") or "")
        self.body(unit, doc.blocks, unit_title)
        return item


def _append_text(parent: etree._Element, text: str) -> None:
    """Append text to an element, turning newlines into `<br/>`."""
    for n, piece in enumerate(text.split("\n")):
        if n:
            etree.SubElement(parent, "br")
        if not piece:
            continue
        if len(parent):
            last = parent[-1]
            last.tail = (last.tail or "") + piece
        else:
            parent.text = (parent.text or "") + piece


def export_draft(draft: Draft, name: str | None = None) -> Export:
    """Convert one draft to OU-XML bytes plus its images (named `<name>-figNN.<ext>`)."""
    name = name or slug(draft.document.path.stem)
    result = Export(name, problems=[*draft.metadata_problems, *draft.problems])
    if draft.failed:
        return result
    writer = _Writer(draft, name)
    item = writer.item()
    result.problems.extend(writer.problems)
    if item is None or any(p.severity == "error" for p in writer.problems):
        return result
    result.xml = etree.tostring(item, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    result.images = writer.images
    return result
