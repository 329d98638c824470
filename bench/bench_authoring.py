"""Benchmark: OU-XML export throughput vs pandoc (`pandoc -t docbook`) on the same drafts.

Generates a folder of .docx drafts (headings, paragraphs with formatting, nested lists, a
table, a figure, an activity), then in the same run times

- coursestack: read each .docx and write its OU-XML (`export_draft`, no schema check), and
- pandoc: `pandoc -f docx -t docbook -o out.xml` on each of the same files,

and prints documents/second for both and the ratio. `--markdown PATH` writes the result as
a Markdown section (used for docs/benchmarks-authoring.md).

    python bench/bench_authoring.py --docs 40 --repeat 3 --markdown docs/benchmarks-authoring.md
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from docx import Document as new_docx
from docx.enum.style import WD_STYLE_TYPE
from docx.shared import Inches

WORDS = ("data", "model", "query", "schema", "table", "index", "join", "value", "record")


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = b"".join(b"\x00" + b"\x20\x60\xc0" * 16 for _ in range(16))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _text(n: int, seed: int) -> str:
    return " ".join(WORDS[(seed + i * 7) % len(WORDS)] for i in range(n)).capitalize() + "."


def make_docs(folder: Path, count: int, sessions: int) -> list[Path]:
    """Write `count` drafts of `sessions` sessions each (about 450 words per session)."""
    image = folder / "figure.png"
    image.write_bytes(_png())
    paths = []
    for n in range(count):
        doc = new_docx()
        for name in ("Activity Heading", "Question", "Discussion"):
            doc.styles.add_style(name, WD_STYLE_TYPE.PARAGRAPH)
        doc.add_paragraph(f"Week {n + 1}", style="Title")
        for s in range(sessions):
            doc.add_heading(f"Session {s + 1}", level=1)
            for sec in range(3):
                doc.add_heading(f"Section {s + 1}.{sec + 1}", level=2)
                para = doc.add_paragraph(_text(60, n + s + sec))
                para.add_run(" bold words").bold = True
                para.add_run(" and italic ones.").italic = True
                doc.add_paragraph(_text(50, n * 3 + sec))
                doc.add_paragraph(_text(8, sec), style="List Bullet")
                doc.add_paragraph(_text(6, sec + 1), style="List Bullet 2")
                doc.add_paragraph(_text(8, sec + 2), style="List Bullet")
            table = doc.add_table(rows=3, cols=3)
            for r in range(3):
                for c in range(3):
                    table.cell(r, c).text = WORDS[(r + c) % len(WORDS)]
            doc.add_picture(str(image), width=Inches(1))
            doc.add_paragraph(f"Figure {s + 1} A chart", style="Caption")
            doc.add_paragraph(f"Activity {s + 1}", style="Activity Heading")
            doc.add_paragraph(_text(20, s), style="Question")
            doc.add_paragraph(_text(30, s + 1), style="Discussion")
        path = folder / f"week{n + 1:02d}.docx"
        doc.save(str(path))
        paths.append(path)
    return paths


def time_coursestack(paths: list[Path], out: Path) -> float:
    """Seconds to convert every draft to OU-XML (read + convert + write)."""
    from coursestack.authoring.documents import load_draft
    from coursestack.authoring.ouxml import export_draft

    start = time.perf_counter()
    for path in paths:
        draft = load_draft(path, path.parent, {"courseCode": "TM351"})
        exp = export_draft(draft)
        if exp.failed:
            raise SystemExit(f"export failed: {[p.render() for p in exp.problems]}")
        (out / f"{path.stem}.xml").write_bytes(exp.xml)
        for name, data in exp.images:
            (out / name).write_bytes(data)
    return time.perf_counter() - start


def time_pandoc(paths: list[Path], out: Path, pandoc: str) -> float:
    """Seconds for pandoc to convert every draft to DocBook XML, one process per file."""
    start = time.perf_counter()
    for path in paths:
        subprocess.run(
            [pandoc, "-f", "docx", "-t", "docbook", "-o", str(out / f"{path.stem}.dbk"), str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
        )
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print (and optionally write) the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    pandoc = shutil.which("pandoc")
    if pandoc is None:
        raise SystemExit("pandoc is not installed (apt-get install -y pandoc)")
    version = subprocess.run(
        [pandoc, "--version"], capture_output=True, text=True, check=True
    ).stdout.split("\n")[0]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "drafts"
        src.mkdir()
        paths = make_docs(src, args.docs, args.sessions)
        size = sum(len(p.read_bytes()) for p in paths)
        ours, theirs = [], []
        for i in range(args.repeat):
            out_a, out_b = root / f"ouxml{i}", root / f"pandoc{i}"
            out_a.mkdir()
            out_b.mkdir()
            ours.append(time_coursestack(paths, out_a))
            theirs.append(time_pandoc(paths, out_b, pandoc))
    a = args.docs / statistics.median(ours)
    b = args.docs / statistics.median(theirs)
    lines = [
        "## OU-XML export throughput (coursestack author ouxml vs pandoc)",
        "",
        f"{args.docs} generated .docx drafts ({args.sessions} sessions each: headings, "
        "formatted paragraphs, nested lists, a table, a figure with caption and an activity "
        f"per session; {size / 1024 / len(paths):.0f} KiB per file on average), converted "
        f"in the same run, median of {args.repeat} rounds.",
        "",
        "| converter | output | docs/second | seconds per round |",
        "| --- | --- | ---: | ---: |",
        f"| coursestack `export_draft` (python-docx + lxml, in process) | OU-XML + images | "
        f"{a:.1f} | {statistics.median(ours):.2f} |",
        f"| {version} (`-f docx -t docbook`, one process per file) | DocBook XML | "
        f"{b:.1f} | {statistics.median(theirs):.2f} |",
        "",
        f"**Ratio: coursestack is {a / b:.2f}x pandoc's throughput** "
        f"(Python {platform.python_version()}, {platform.machine()}, "
        f"{platform.system()}). Schema checking is not included on either side; "
        "pandoc's per-file process start is part of its cost, as it is in real use.",
        "",
        "Reproduce: `python bench/bench_authoring.py --docs 40 --repeat 3`.",
    ]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
