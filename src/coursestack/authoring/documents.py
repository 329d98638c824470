"""Finding drafts in a folder and reading any of them into the common model.

Each draft also gets its effective metadata: the folder `metadata` files from the top
folder down, then the document's own metadata, then command-line overrides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coursestack.authoring.metadata import Metadata, folder_metadata
from coursestack.authoring.model import (
    Block,
    Code,
    Container,
    Document,
    Figure,
    Heading,
    ListBlock,
    Para,
    Problem,
    Quote,
    Table,
    plain,
)

Reader = Callable[[Path], Document]


def _readers() -> dict[str, Reader]:
    # Imported lazily so that `coursestack --help` does not pay for python-docx.
    from coursestack.authoring.docx_reader import read_docx
    from coursestack.authoring.md_reader import read_markdown
    from coursestack.authoring.odt_reader import read_odt

    return {".docx": read_docx, ".md": read_markdown, ".markdown": read_markdown, ".odt": read_odt}


DRAFT_SUFFIXES = (".docx", ".md", ".markdown", ".odt")


def is_draft(path: Path) -> bool:
    """Whether `path` is a draft we can read (Word lock files `~$x.docx` are not)."""
    return (
        path.suffix.lower() in DRAFT_SUFFIXES
        and not path.name.startswith(("~$", "."))
        and path.is_file()
    )


def find_drafts(folder: Path) -> list[Path]:
    """Every draft under `folder`, in a stable order; hidden folders are skipped."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts[:-1]):
            continue
        if is_draft(path):
            out.append(path)
    return out


def read_document(path: Path) -> Document:
    """Read one draft of any supported format."""
    reader = _readers().get(path.suffix.lower())
    if reader is None:
        return Document(
            path,
            [],
            problems=[
                Problem(
                    "error",
                    str(path),
                    "",
                    f"unsupported file type {path.suffix!r} "
                    f"(supported: {', '.join(DRAFT_SUFFIXES)})",
                )
            ],
        )
    return reader(path)


@dataclass
class Draft:
    """A document read from disk with its effective (layered) metadata."""

    document: Document
    metadata: Metadata
    problems: list[Problem]
    # Problems in folder metadata files: reported (once per file), but they do not stop
    # this draft from being processed with the records that could be read.
    metadata_problems: list[Problem] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when reading the draft itself hit an error."""
        return any(p.severity == "error" for p in self.problems)


def load_draft(
    path: Path,
    root: Path,
    overrides: Mapping[str, str] | None = None,
    cache: dict[Path, Metadata] | None = None,
) -> Draft:
    """Read a draft and layer its metadata: folders top-down, document, overrides."""
    problems: list[Problem] = []
    meta = folder_metadata(path.parent, root, problems, cache)
    doc = read_document(path)
    for key, value in doc.metadata.items():
        meta.set(key, value, doc.metadata_where.get(key, str(path)))
    if overrides:
        meta.apply_mapping(overrides, "command line")
    return Draft(doc, meta, list(doc.problems), problems)


def iter_drafts(target: Path, overrides: Mapping[str, str] | None = None) -> Iterator[Draft]:
    """Drafts of a file or of every document in a folder (metadata files shared)."""
    cache: dict[Path, Metadata] = {}
    if target.is_dir():
        for path in find_drafts(target):
            yield load_draft(path, target, overrides, cache)
    else:
        yield load_draft(target, target.parent, overrides, cache)


# -- measures ----------------------------------------------------------------------------
def text_lines(blocks: list[Block]) -> list[str]:
    """The document's text as lines: one per paragraph, list item, table row, code line."""
    out: list[str] = []
    for blk in blocks:
        if isinstance(blk, Heading | Para):
            out.extend(plain(blk.spans).split("\n"))
        elif isinstance(blk, ListBlock):
            stack = [blk]
            while stack:
                lst = stack.pop()
                for item in lst.items:
                    out.extend(plain(item.spans).split("\n"))
                    stack.extend(item.children)
        elif isinstance(blk, Table):
            out.extend(plain(blk.caption).split("\n"))
            out.extend(" ".join(plain(c) for c in row) for row in blk.rows)
        elif isinstance(blk, Figure):
            out.append(plain(blk.caption))
        elif isinstance(blk, Code):
            out.extend(blk.text.split("\n"))
        elif isinstance(blk, Quote):
            out.extend(text_lines(blk.blocks))
        elif isinstance(blk, Container):
            out.append(plain(blk.title))
            out.extend(text_lines(blk.blocks))
    return [ln for ln in out if ln.strip()]


def count_words(blocks: list[Block]) -> int:
    """Words in the document (whitespace-separated tokens)."""
    return sum(len(line.split()) for line in text_lines(blocks))
