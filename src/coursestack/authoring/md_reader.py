"""Read a Markdown draft (markdown-it-py, CommonMark + tables) into the common model.

YAML front matter between `---` lines is the document's metadata. `#` headings are
Sessions, `##` Sections and so on. Boxes and activities are fenced containers:

    ::: activity Activity 1: Explore the data
    ::: question
    What do you notice?
    :::
    ::: discussion
    You may have noticed...
    :::
    :::
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coursestack.authoring.model import (
    Block,
    Code,
    Container,
    Document,
    Figure,
    Heading,
    Image,
    ListBlock,
    ListItem,
    Para,
    Problem,
    Quote,
    Span,
    Table,
    merge_spans,
    plain,
    sniff_image,
)

CONTAINER_KINDS = {"box", "activity", "question", "answer", "discussion"}
_FENCE = re.compile(r"^\s*(```+|~~~+)")
_OPEN = re.compile(r"^\s*:{3,}\s*([A-Za-z][\w-]*)\s*(.*?)\s*$")
_CLOSE = re.compile(r"^\s*:{3,}\s*$")


@dataclass
class _Segment:
    """Either plain Markdown lines or a container holding further segments."""

    start: int  # 0-based line number in the file
    lines: list[str] = field(default_factory=list)
    kind: str = ""  # empty for plain Markdown
    title: str = ""
    children: list[_Segment] = field(default_factory=list)


def split_front_matter(text: str) -> tuple[str, str, int]:
    """(front matter YAML, body, line offset of the body) for a Markdown text."""
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        for i in range(1, len(lines)):
            if lines[i].strip() in {"---", "..."}:
                return "\n".join(lines[1:i]), "\n".join(lines[i + 1 :]), i + 1
    return "", text, 0


class _MdReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.problems: list[Problem] = []
        from markdown_it import MarkdownIt

        self.md = MarkdownIt("commonmark").enable("table")

    def warn(self, where: str, message: str) -> None:
        self.problems.append(Problem("warning", self.file, where, message))

    def error(self, where: str, message: str) -> None:
        self.problems.append(Problem("error", self.file, where, message))

    def segments(self, lines: list[str], offset: int) -> list[_Segment]:
        """Split lines into plain runs and `:::` containers (code fences are respected)."""
        root = _Segment(offset, kind="root")
        stack = [root]
        fence = ""
        for n, line in enumerate(lines):
            lineno = offset + n
            fm = _FENCE.match(line)
            if fence:
                if fm and fm.group(1)[0] == fence[0] and len(fm.group(1)) >= len(fence):
                    fence = ""
            elif fm:
                fence = fm.group(1)
            elif _CLOSE.match(line) and len(stack) > 1:
                stack.pop()
                continue
            elif (om := _OPEN.match(line)) is not None:
                kind = om.group(1).lower()
                if kind not in CONTAINER_KINDS:
                    self.warn(
                        f"line {lineno + 1}",
                        f"unknown container '{kind}'; its content is exported as ordinary text",
                    )
                seg = _Segment(lineno, kind=kind, title=om.group(2))
                stack[-1].children.append(seg)
                stack.append(seg)
                continue
            top = stack[-1]
            if not top.children or top.children[-1].kind:
                top.children.append(_Segment(lineno))
            top.children[-1].lines.append(line)
        for seg in stack[1:]:
            self.warn(f"line {seg.start + 1}", f"'::: {seg.kind}' is never closed with ':::'")
        return root.children

    def convert(self, segs: list[_Segment]) -> list[Block]:
        out: list[Block] = []
        for seg in segs:
            if not seg.kind:
                tokens = self.md.parse("\n".join(seg.lines))
                from markdown_it.tree import SyntaxTreeNode

                out.extend(self.blocks(SyntaxTreeNode(tokens).children, seg.start))
                continue
            where = f"line {seg.start + 1}"
            inner = self.convert(seg.children)
            title = [Span(seg.title)] if seg.title else []
            if seg.kind not in CONTAINER_KINDS:
                out.extend(inner)
            elif seg.kind == "activity":
                parts: list[Block] = []
                for blk in inner:
                    if isinstance(blk, Container) and blk.kind in {
                        "question",
                        "answer",
                        "discussion",
                    }:
                        parts.append(blk)
                    elif parts and isinstance(parts[-1], Container):
                        parts[-1].blocks.append(blk)
                    else:
                        parts.append(Container("question", [], [blk], where))
                out.append(Container("activity", title, parts, where))
            else:
                out.append(Container(seg.kind, title, inner, where))  # type: ignore[arg-type]
        return _attach_table_captions(out)

    def blocks(self, nodes: list[Any], offset: int) -> list[Block]:
        out: list[Block] = []
        for node in nodes:
            line = offset + (node.map[0] if node.map else 0) + 1
            where = f"line {line}"
            kind = node.type
            if kind == "heading":
                images: list[Image] = []
                out.append(
                    Heading(int(node.tag[1]), self.inline(node.children[0], where, images), where)
                )
            elif kind == "paragraph":
                images = []
                spans = self.inline(node.children[0], where, images)
                caption = node.children[0].children
                only_image = len(caption) == 1 and caption[0].type == "image"
                if plain(spans).strip():
                    out.append(Para(spans, where))
                    if images:
                        self.warn(
                            where,
                            "image inside a text paragraph is exported as a "
                            "figure after that paragraph",
                        )
                for img in images:
                    cap = ""
                    if only_image:
                        cap = str(caption[0].attrs.get("title") or img.alt)
                    out.append(Figure(img, [Span(cap)] if cap else [], where))
            elif kind in {"bullet_list", "ordered_list"}:
                out.append(self.list_block(node, where, offset))
            elif kind in {"fence", "code_block"}:
                out.append(Code(node.content.rstrip("\n"), where))
            elif kind == "blockquote":
                out.append(Quote(self.blocks(node.children, offset), where))
            elif kind == "table":
                out.append(self.table(node, where))
            elif kind == "hr":
                self.warn(where, "horizontal rule has no OU-XML equivalent; not exported")
            elif kind == "html_block":
                self.warn(where, "raw HTML block not exported")
            else:
                self.warn(where, f"unsupported Markdown block '{kind}' not exported")
        return out

    def list_block(self, node: Any, where: str, offset: int) -> ListBlock:
        lst = ListBlock(node.type == "ordered_list", [], where)
        for item in node.children:
            spans: list[Span] = []
            children: list[ListBlock] = []
            for child in item.children:
                cwhere = f"line {offset + (child.map[0] if child.map else 0) + 1}"
                if child.type == "paragraph":
                    images: list[Image] = []
                    if spans:
                        spans.append(Span("\n"))
                    spans.extend(self.inline(child.children[0], cwhere, images))
                    if images:
                        self.warn(cwhere, "image inside a list item not exported")
                elif child.type in {"bullet_list", "ordered_list"}:
                    children.append(self.list_block(child, cwhere, offset))
                else:
                    self.warn(cwhere, f"'{child.type}' inside a list item not exported")
            lst.items.append(ListItem(merge_spans(spans), children))
        return lst

    def table(self, node: Any, where: str) -> Table:
        rows: list[list[list[Span]]] = []
        header = 0
        for section in node.children:
            for tr in section.children:
                images: list[Image] = []
                rows.append(
                    [
                        self.inline(cell.children[0], where, images) if cell.children else []
                        for cell in tr.children
                    ]
                )
                if section.type == "thead":
                    header += 1
        return Table(rows, header, [], where)

    def inline(
        self,
        node: Any,
        where: str,
        images: list[Image],
        bold: bool = False,
        italic: bool = False,
        href: str = "",
    ) -> list[Span]:
        out: list[Span] = []
        for child in node.children or []:
            t = child.type
            if t == "text":
                out.append(Span(child.content, bold, italic, False, href))
            elif t == "softbreak":
                out.append(Span(" ", bold, italic, False, href))
            elif t == "hardbreak":
                out.append(Span("\n", bold, italic, False, href))
            elif t == "code_inline":
                out.append(Span(child.content, bold, italic, True, href))
            elif t == "strong":
                out.extend(self.inline(child, where, images, True, italic, href))
            elif t == "em":
                out.extend(self.inline(child, where, images, bold, True, href))
            elif t == "link":
                out.extend(
                    self.inline(
                        child, where, images, bold, italic, str(child.attrs.get("href", ""))
                    )
                )
            elif t == "image":
                img = self.image(str(child.attrs.get("src", "")), where)
                if img is not None:
                    img.alt = "".join(c.content for c in child.children or [])
                    images.append(img)
            elif t == "html_inline":
                self.warn(where, f"inline HTML {child.content!r} not exported")
            else:
                self.warn(where, f"unsupported inline Markdown '{t}' exported as plain text")
                out.extend(self.inline(child, where, images, bold, italic, href))
        return merge_spans(out)

    def image(self, src: str, where: str) -> Image | None:
        if re.match(r"^[a-z]+://", src):
            self.error(
                where,
                f"image {src!r} is a web address and cannot be read; save it next to the document",
            )
            return None
        target = (self.path.parent / src).resolve()
        try:
            data = target.read_bytes()
        except OSError as exc:
            self.error(where, f"image {src!r} cannot be read: {exc.strerror or exc}")
            return None
        ext = sniff_image(data)
        if ext is None:
            self.error(where, f"image {src!r} cannot be read: not a PNG/JPEG/GIF/BMP/TIFF/SVG")
            return None
        return Image(data, ext)


def _attach_table_captions(blocks: list[Block]) -> list[Block]:
    """A `Table: ...` paragraph right after (or before) a table is that table's caption."""
    out: list[Block] = []
    for blk in blocks:
        if isinstance(blk, Para) and plain(blk.spans).startswith("Table:"):
            prev = out[-1] if out else None
            if isinstance(prev, Table) and not prev.caption:
                prev.caption = _strip_prefix(blk.spans, "Table:")
                continue
        if (
            isinstance(blk, Table)
            and out
            and isinstance(out[-1], Para)
            and plain(out[-1].spans).startswith("Table:")
            and not blk.caption
        ):
            last = out.pop()
            assert isinstance(last, Para)
            blk.caption = _strip_prefix(last.spans, "Table:")
        out.append(blk)
    return out


def _strip_prefix(spans: list[Span], prefix: str) -> list[Span]:
    first = spans[0]
    rest = first.text[len(prefix) :].lstrip() if first.text.startswith(prefix) else first.text
    return merge_spans([Span(rest, first.bold, first.italic, first.code, first.href), *spans[1:]])


def _stringify(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(_stringify(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def read_markdown(path: Path) -> Document:
    """Read a Markdown file into the common model; failures become problems."""
    reader = _MdReader(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return Document(
            path, [], problems=[Problem("error", str(path), "", f"cannot read file: {exc}")]
        )
    front, body, offset = split_front_matter(text)
    meta: dict[str, str] = {}
    if front.strip():
        try:
            loaded = yaml.safe_load(front)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 2}" if mark is not None else "front matter"
            reader.error(where, f"front matter is not valid YAML: {exc}")
            loaded = {}
        if isinstance(loaded, dict):
            meta = {str(k): _stringify(v) for k, v in loaded.items()}
        elif loaded is not None:
            reader.error("line 1", "front matter must be a mapping of `key: value` lines")
    from coursestack.authoring.metadata import canonical_key

    values = {canonical_key(k): v for k, v in meta.items()}
    blocks = reader.convert(reader.segments(body.split("\n"), offset))
    return Document(
        path, blocks, values, dict.fromkeys(values, f"{path} front matter"), reader.problems
    )
