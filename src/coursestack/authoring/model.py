"""The common document model every reader (.docx, Markdown, .odt) produces.

Readers turn a draft into a flat list of blocks; the OU-XML writer and the progress
counter only ever see this model, so a new input format needs only a reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """Something wrong with an input, located precisely enough for an author to fix it."""

    severity: Severity
    file: str
    where: str
    message: str

    def render(self) -> str:
        """One line: `file (where): severity: message`."""
        place = f"{self.file} ({self.where})" if self.where else self.file
        return f"{place}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class Span:
    """A run of text with the inline formatting OU-XML can express."""

    text: str
    bold: bool = False
    italic: bool = False
    code: bool = False
    href: str = ""


@dataclass
class Heading:
    """A heading; level 1 becomes a Session, 2 a Section, and so on."""

    level: int
    spans: list[Span]
    where: str


@dataclass
class Para:
    """An ordinary paragraph."""

    spans: list[Span]
    where: str


@dataclass
class ListItem:
    """One list item; `children` are the lists nested inside it."""

    spans: list[Span]
    children: list[ListBlock] = field(default_factory=list)


@dataclass
class ListBlock:
    """A bulleted or numbered list."""

    ordered: bool
    items: list[ListItem]
    where: str


@dataclass
class Table:
    """A table; the first `header_rows` rows are column headings."""

    rows: list[list[list[Span]]]
    header_rows: int
    caption: list[Span]
    where: str


@dataclass
class Image:
    """Image bytes taken from the draft; `ext` is derived from the bytes, not the name."""

    data: bytes
    ext: str
    alt: str = ""


@dataclass
class Figure:
    """An image with an optional caption."""

    image: Image
    caption: list[Span]
    where: str


@dataclass
class Code:
    """A code block (one string, lines separated by newlines)."""

    text: str
    where: str


@dataclass
class Quote:
    """A quotation (block quote)."""

    blocks: list[Block]
    where: str


ContainerKind = Literal["box", "activity", "question", "answer", "discussion"]


@dataclass
class Container:
    """A box or an activity; an activity's blocks are its question/answer/discussion parts."""

    kind: ContainerKind
    title: list[Span]
    blocks: list[Block]
    where: str


Block = Heading | Para | ListBlock | Table | Figure | Code | Quote | Container


@dataclass
class Document:
    """A draft read into the common model, with its own metadata and reading problems."""

    path: Path
    blocks: list[Block]
    metadata: dict[str, str] = field(default_factory=dict)
    metadata_where: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    # Page count stated by the file itself (e.g. an .odt's statistics), when there is one.
    stated_pages: int | None = None

    @property
    def failed(self) -> bool:
        """True when reading hit an error, so no output should be produced from it."""
        return any(p.severity == "error" for p in self.problems)


def plain(spans: list[Span]) -> str:
    """The text of some spans without formatting."""
    return "".join(s.text for s in spans)


def merge_spans(spans: list[Span]) -> list[Span]:
    """Join neighbouring spans with identical formatting (Word splits runs arbitrarily)."""
    out: list[Span] = []
    for s in spans:
        if not s.text:
            continue
        if out and (out[-1].bold, out[-1].italic, out[-1].code, out[-1].href) == (
            s.bold,
            s.italic,
            s.code,
            s.href,
        ):
            prev = out[-1]
            out[-1] = Span(prev.text + s.text, prev.bold, prev.italic, prev.code, prev.href)
        else:
            out.append(s)
    return out


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
)


def sniff_image(data: bytes) -> str | None:
    """The image format of `data` from its magic bytes, or None if it is not a known image."""
    for magic, ext in _SIGNATURES:
        if data.startswith(magic):
            return ext
    head = data[:512].lstrip()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:2048]):
        return "svg"
    return None
