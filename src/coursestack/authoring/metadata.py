"""Document metadata: the `metadata` file format, key aliases and layering.

A folder may hold a file called `metadata` (or `metadata.txt`) with records like

    courseCode :: TM351;;
    courseTitle :: Data management and analysis;;

Records end with `;;` and split on their first `::`; keys match case-, space- and
separator-insensitively through aliases, so `Course code`, `course-code` and `courseCode`
are one key. Layers apply from the top folder down, then the document's own metadata, then
command-line overrides; an empty value clears an inherited one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from coursestack.authoring.model import Problem

METADATA_FILENAMES = ("metadata", "metadata.txt")

# canonical key -> normalised spellings that mean it (the canonical one is added below).
_ALIASES: dict[str, tuple[str, ...]] = {
    "course_code": ("modulecode", "module", "course"),
    "course_title": ("moduletitle",),
    "item_id": (),
    "item_title": ("title", "documenttitle"),
    "unit_id": (),
    "unit_title": ("weektitle",),
    "author": ("leadauthor", "byline", "authors"),
    "rendering": (),
    "text_type": (),
    "target_words": ("wordtarget", "targetwordcount"),
    "target_lines": ("linetarget",),
    "target_pages": ("pagetarget",),
    "words_per_page": ("wpp",),
    "measure": ("progressby", "measureby"),
    "tolerance": ("overruntolerance",),
    "alert_at": ("alerts", "alertthresholds"),
    "alert_command": (),
    "deadline": ("due", "duedate"),
    "task": ("istask",),
    "tags": ("keywords",),
    "percent_complete": ("percentdone", "complete", "percent"),
}


def normalise_key(key: str) -> str:
    """Lower-case a key and drop spaces and separators (`Course-code` -> `coursecode`)."""
    return re.sub(r"[\s_\-.:]+", "", key).lower()


_LOOKUP: dict[str, str] = {}
for _canon, _alts in _ALIASES.items():
    _LOOKUP[normalise_key(_canon)] = _canon
    for _alt in _alts:
        _LOOKUP[_alt] = _canon


def canonical_key(key: str) -> str:
    """The canonical name of a key; unknown keys keep their normalised spelling."""
    norm = normalise_key(key)
    return _LOOKUP.get(norm, norm)


@dataclass(frozen=True)
class Record:
    """One `key :: value` record with where it was written."""

    key: str
    value: str
    file: str
    line: int

    @property
    def where(self) -> str:
        """`file:line`, used to point an author at the record."""
        return f"{self.file}:{self.line}"


# A line inside a value that itself looks like `key :: value` means a `;;` was forgotten.
_LOOKS_LIKE_RECORD = re.compile(r"^\s*[A-Za-z][\w .\-]*::", re.MULTILINE)


def parse_records(text: str, file: str) -> tuple[list[Record], list[Problem]]:
    """Parse metadata text into records; broken records become problems, not exceptions."""
    # Blank out comment lines but keep them as lines, so reported line numbers stay true.
    lines = ["" if ln.lstrip().startswith("#") else ln for ln in text.split("\n")]
    body = "\n".join(lines)
    records: list[Record] = []
    problems: list[Problem] = []
    pos = 0
    for chunk in body.split(";;"):
        stripped = chunk.strip()
        lead = len(chunk) - len(chunk.lstrip())
        line = body.count("\n", 0, pos + lead) + 1
        pos += len(chunk) + 2
        if not stripped:
            continue
        where = f"line {line}"
        if "::" not in stripped:
            problems.append(
                Problem(
                    "error",
                    file,
                    where,
                    f"record {stripped[:40]!r} has no '::' "
                    "between key and value (write `key :: value;;`)",
                )
            )
            continue
        key, value = (part.strip() for part in stripped.split("::", 1))
        if not key:
            problems.append(Problem("error", file, where, "record has an empty key"))
            continue
        if _LOOKS_LIKE_RECORD.search(value):
            problems.append(
                Problem(
                    "error",
                    file,
                    where,
                    f"record {key!r} runs into the next one: "
                    "a ';;' is probably missing at the end of the line",
                )
            )
            continue
        records.append(Record(key, value, file, line))
    return records, problems


@dataclass
class Metadata:
    """Layered metadata: canonical key -> value, plus where each value came from."""

    values: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        """The value of a key, or None when it is absent or was cleared by an empty value."""
        value = self.values.get(canonical_key(key), "")
        return value or None

    def place(self, key: str) -> str:
        """Where the current value of `key` was set (empty if it was never set)."""
        return self.where.get(canonical_key(key), "")

    def set(self, key: str, value: str, where: str) -> None:
        """Set one key (an empty value clears what an outer layer set)."""
        canon = canonical_key(key)
        self.values[canon] = value
        self.where[canon] = where

    def copy(self) -> Metadata:
        """An independent copy, for applying a further layer."""
        return Metadata(dict(self.values), dict(self.where))

    def apply_records(self, records: Iterable[Record], problems: list[Problem]) -> None:
        """Apply one layer's records; a key repeated within the layer warns, the last wins."""
        seen: dict[str, Record] = {}
        for rec in records:
            canon = canonical_key(rec.key)
            if canon in seen:
                first = seen[canon]
                problems.append(
                    Problem(
                        "warning",
                        rec.file,
                        f"line {rec.line}",
                        f"key {rec.key!r} repeats line {first.line}; the later value wins",
                    )
                )
            seen[canon] = rec
            self.set(canon, rec.value, rec.where)

    def apply_mapping(self, mapping: Mapping[str, str], where: str) -> None:
        """Apply a layer given as a mapping (document properties, command-line overrides)."""
        for key, value in mapping.items():
            self.set(key, value, where)


def read_metadata_file(path: Path) -> tuple[list[Record], list[Problem]]:
    """Read and parse one metadata file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [Problem("error", str(path), "", f"cannot read metadata file: {exc}")]
    return parse_records(text, str(path))


def folder_metadata(
    doc_dir: Path, root: Path, problems: list[Problem], cache: dict[Path, Metadata] | None = None
) -> Metadata:
    """Metadata from the `metadata` files of `root` down to `doc_dir`, outermost first."""
    root = root.resolve()
    doc_dir = doc_dir.resolve()
    chain = [doc_dir, *doc_dir.parents]
    chain = chain[: chain.index(root) + 1] if root in chain else [doc_dir]
    meta = Metadata()
    for folder in reversed(chain):
        if cache is not None and folder in cache:
            meta = cache[folder].copy()
            continue
        for name in METADATA_FILENAMES:
            candidate = folder / name
            if candidate.is_file():
                records, found = read_metadata_file(candidate)
                problems.extend(found)
                meta.apply_records(records, problems)
        if cache is not None:
            cache[folder] = meta.copy()
    return meta


def parse_overrides(items: Iterable[str]) -> dict[str, str]:
    """Command-line overrides `key=value` (or `key::value`) into a mapping."""
    out: dict[str, str] = {}
    for item in items:
        sep = "::" if "::" in item else "="
        if sep not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split(sep, 1)
        out[key.strip()] = value.strip()
    return out


def parse_percentages(text: str, where: str) -> list[float]:
    """`50, 90` or `50%, 90%` into sorted numbers; raises ValueError naming `where`."""
    out: list[float] = []
    for part in re.split(r"[,;\s]+", text.strip()):
        if not part:
            continue
        try:
            out.append(float(part.rstrip("%")))
        except ValueError:
            raise ValueError(f"{where}: {part!r} is not a number") from None
    return sorted(out)


def truthy(text: str | None) -> bool:
    """Whether a metadata flag like `task :: yes` is set."""
    return (text or "").strip().lower() in {"1", "yes", "true", "y", "on", "task"}
