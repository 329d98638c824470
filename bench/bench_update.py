"""Course update time: `coursestack update` vs nbgitpuller, on the same change.

    python bench/bench_update.py [--notebooks 200] [--changed 10] [--edited 10] [--rounds 9]
                                 [--markdown docs/benchmarks-updates.md]

A course of `--notebooks` notebooks (12 cells each, code and markdown, small outputs)
lives in a git repository. Each round, with fresh folders:
1. both tools deliver it (nbgitpuller: its shallow `git clone`; coursestack: its first
   update, reading the same repository with dulwich);
2. the student edits `--edited` notebooks the same way in both folders (a new line in
   the third cell), and the course team commits a change to `--changed` notebooks (the
   tenth cell edited, a cell added at the end); half of the student's notebooks are
   among the course's;
3. each tool updates (timed, in-process: `GitPuller.pull()` and `run_update()`).
The outcome is checked too: how many notebooks hold both the student's and the course's
changes, are valid notebooks, and keep the student's line; and, on one more notebook,
what each does where both sides changed the same cell. Needs `pip install nbgitpuller`
and the `git` program (nbgitpuller runs it).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat

from coursestack.content.update import run_update
from coursestack.spec import load_spec
from coursestack.state import StateFolder

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Course",
    "GIT_AUTHOR_EMAIL": "course@example.org",
    "GIT_COMMITTER_NAME": "Course",
    "GIT_COMMITTER_EMAIL": "course@example.org",
    "HOME": "/tmp",
    "PATH": "/usr/bin:/bin",
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env=GIT_ENV)


def make_notebook(number: int) -> str:
    book = nbformat.v4.new_notebook()
    for index in range(12):
        if index % 3 == 0:
            book.cells.append(
                nbformat.v4.new_markdown_cell(
                    f"## Part {index} of notebook {number}\n\nRead the data and look at it."
                )
            )
        else:
            cell = nbformat.v4.new_code_cell(
                f"values_{index} = [x * {index} for x in range(10)]\nsum(values_{index})"
            )
            cell["id"] = f"nb{number}-cell{index}"
            cell.outputs = [
                nbformat.v4.new_output(
                    "execute_result", data={"text/plain": str(45 * index)}, execution_count=index
                )
            ]
            book.cells.append(cell)
        book.cells[-1]["id"] = f"nb{number}-cell{index}"
    return str(nbformat.writes(book)) + "\n"


def edit(path: Path, cell: int, line: str, append_cell: str | None = None) -> None:
    book = nbformat.reads(path.read_text(), as_version=4)
    book.cells[cell].source += "\n" + line
    if append_cell:
        book.cells.append(nbformat.v4.new_code_cell(append_cell))
    path.write_text(str(nbformat.writes(book)) + "\n")


def one_round(root: Path, notebooks: int, changed: int, edited: int) -> dict[str, Any]:
    upstream, bare = root / "upstream", root / "course.git"
    upstream.mkdir()
    git("init", "-q", "-b", "main", cwd=upstream)
    for number in range(notebooks):
        (upstream / f"nb{number:03d}.ipynb").write_text(make_notebook(number))
    git("add", "-A", cwd=upstream)
    git("commit", "-q", "-m", "release 1", cwd=upstream)
    git("clone", "-q", "--bare", str(upstream), str(bare), cwd=root)

    # Both tools deliver release 1.
    from nbgitpuller.pull import GitPuller

    puller_dir = root / "puller"
    for _ in GitPuller(str(bare), str(puller_dir), branch="main").pull():
        pass
    course = root / "course"
    course.mkdir()
    (course / "course.toml").write_text(
        f'[course]\nname = "bench"\n[content]\nsource = "{bare}"\nref = "main"\n'
        '[services.jupyter]\nkind = "jupyter"\n'
    )
    spec = load_spec(course / "course.toml")
    state = StateFolder(root / "state")
    run_update(spec, state)
    ours = course / "notebooks"

    # The student edits; the course team commits its change.
    student = [
        f"nb{n:03d}.ipynb" for n in range(changed - edited // 2, changed - edited // 2 + edited)
    ]
    course_side = [f"nb{n:03d}.ipynb" for n in range(changed)]
    for name in student:
        for folder in (puller_dir, ours):
            edit(folder / name, 2, "# my note")
    for name in course_side:
        edit(upstream / name, 9, "# fixed by the course", append_cell="extra = 'new exercise'")
    git("commit", "-q", "-am", "release 2", cwd=upstream)
    git("push", "-q", str(bare), "main", cwd=upstream)

    began = time.perf_counter()
    for _ in GitPuller(str(bare), str(puller_dir), branch="main").pull():
        pass
    puller_time = time.perf_counter() - began
    began = time.perf_counter()
    report = run_update(spec, state)
    our_time = time.perf_counter() - began
    return {
        "nbgitpuller": puller_time,
        "coursestack": our_time,
        "nbgitpuller_outcome": outcome(puller_dir, student, course_side),
        "coursestack_outcome": outcome(ours, student, course_side),
        "coursestack_changed": sum(1 for entry in report.entries if entry.changed),
    }


def same_cell(root: Path) -> dict[str, str]:
    """Both sides add a line to the third cell of one notebook: what each tool leaves."""
    from nbgitpuller.pull import GitPuller

    upstream, bare = root / "upstream", root / "course.git"
    upstream.mkdir()
    git("init", "-q", "-b", "main", cwd=upstream)
    (upstream / "lab.ipynb").write_text(make_notebook(1))
    git("add", "-A", cwd=upstream)
    git("commit", "-q", "-m", "release 1", cwd=upstream)
    git("clone", "-q", "--bare", str(upstream), str(bare), cwd=root)
    puller_dir = root / "puller"
    for _ in GitPuller(str(bare), str(puller_dir), branch="main").pull():
        pass
    course = root / "course"
    course.mkdir()
    (course / "course.toml").write_text(
        f'[course]\nname = "bench"\n[content]\nsource = "{bare}"\n'
        '[services.jupyter]\nkind = "jupyter"\n'
    )
    spec = load_spec(course / "course.toml")
    state = StateFolder(root / "state")
    run_update(spec, state)
    for folder in (puller_dir, course / "notebooks"):
        edit(folder / "lab.ipynb", 2, "# my note")
    edit(upstream / "lab.ipynb", 2, "# fixed by the course")
    git("commit", "-q", "-am", "release 2", cwd=upstream)
    git("push", "-q", str(bare), "main", cwd=upstream)
    for _ in GitPuller(str(bare), str(puller_dir), branch="main").pull():
        pass
    report = run_update(spec, state)
    result = {}
    for tool, folder in (("nbgitpuller", puller_dir), ("coursestack", course / "notebooks")):
        texts = [path.read_text() for path in folder.glob("*.ipynb")]
        result[tool] = (
            f"student's line kept: {any('# my note' in t for t in texts)}; "
            "course's line anywhere in the folder: "
            f"{any('# fixed by the course' in t for t in texts)}; "
            f"notebooks: {sorted(p.name for p in folder.glob('*.ipynb'))}"
        )
    result["coursestack report"] = next(e.words for e in report.entries if e.path == "lab.ipynb")
    return result


def outcome(folder: Path, student: list[str], course_side: list[str]) -> dict[str, int]:
    valid = both = kept = arrived = 0
    for path in sorted(folder.glob("*.ipynb")):
        try:
            book = nbformat.reads(path.read_text(), as_version=4)
            nbformat.validate(book)
        except Exception:
            continue
        valid += 1
        text = "\n".join(cell.source for cell in book.cells)
        mine, theirs = "# my note" in text, "# fixed by the course" in text
        kept += path.name in student and mine
        arrived += path.name in course_side and theirs and "new exercise" in text
        both += path.name in student and path.name in course_side and mine and theirs
    return {"valid": valid, "student_kept": kept, "course_arrived": arrived, "both_in_one": both}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=200)
    parser.add_argument("--changed", type=int, default=10)
    parser.add_argument("--edited", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if shutil.which("git") is None:
        sys.exit("nbgitpuller needs the git program: apt-get install -y git")
    results = []
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-update-") as scratch:
            results.append(one_round(Path(scratch), args.notebooks, args.changed, args.edited))
        print(
            f"round {number + 1}: nbgitpuller {results[-1]['nbgitpuller']:.3f} s, "
            f"coursestack {results[-1]['coursestack']:.3f} s",
            flush=True,
        )
    puller = statistics.median(r["nbgitpuller"] for r in results)
    ours = statistics.median(r["coursestack"] for r in results)
    ratio = statistics.median(r["coursestack"] / r["nbgitpuller"] for r in results)
    last = results[-1]
    lines = [
        "# Benchmarks: course updates",
        "",
        f"`python bench/bench_update.py --notebooks {args.notebooks} --changed {args.changed}"
        f" --edited {args.edited} --rounds {args.rounds}` on {platform.machine()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}. "
        "A course of "
        f"{args.notebooks} notebooks in a git repository; the student edited {args.edited}"
        f", the course changed {args.changed} ({args.edited // 2} of them both). Median of "
        f"{args.rounds} rounds, each with fresh folders; both tools in-process, reading the "
        "same bare repository on local disk (no network).",
        "",
        "| tool | update time (median) | ratio |",
        "| --- | --- | --- |",
        f"| nbgitpuller {_version('nbgitpuller')} (git {_git_version()}) | {puller:.3f} s "
        "| 1.00x |",
        f"| coursestack update (dulwich {_version('dulwich')}, nbdime {_version('nbdime')}) "
        f"| {ours:.3f} s | {ours / puller:.2f}x (median of the rounds' ratios: {ratio:.2f}x) |",
        "",
        "What each left in the student's folder (last round):",
        "",
        "| tool | valid notebooks | student's edits kept | course's changes arrived | "
        "both in one notebook |",
        "| --- | --- | --- | --- | --- |",
    ]
    for tool in ("nbgitpuller", "coursestack"):
        o = last[f"{tool}_outcome"]
        lines.append(
            f"| {tool} | {o['valid']}/{args.notebooks} | {o['student_kept']}/"
            f"{args.edited} | {o['course_arrived']}/{args.changed} | "
            f"{o['both_in_one']}/{args.edited // 2} |"
        )
    with tempfile.TemporaryDirectory(prefix="bench-update-") as scratch:
        conflict = same_cell(Path(scratch))
    lines += [
        "",
        "Where both sides changed the same cell (both add a line to the third cell "
        "of one notebook):",
        "",
    ]
    lines += [f"- {tool}: {text}" for tool, text in conflict.items()]
    lines += [
        "",
        "Rounds (s): "
        + ", ".join(f"{r['nbgitpuller']:.3f} / {r['coursestack']:.3f}" for r in results)
        + " (nbgitpuller / coursestack).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        previous = args.markdown.read_text() if args.markdown.exists() else ""
        marker = "<!-- analysis"
        kept = previous[previous.index(marker) :] if marker in previous else ""
        args.markdown.write_text(text + ("\n" + kept if kept else ""))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _git_version() -> str:
    result = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True)
    return result.stdout.split()[-1]


if __name__ == "__main__":
    main()
