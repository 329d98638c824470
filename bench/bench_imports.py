"""What the daemon imports before its first launch: `python -X importtime` and RSS, as a table.

Runs `python -X importtime -c "import coursestack.daemon"` --runs times in fresh
interpreters (the import chain of `python -m coursestack.daemon` up to `Daemon.build()`,
i.e. everything loaded before the first service is launched), and reports the median
cumulative import time of the heaviest top-level packages and of the whole chain, plus
the RSS of that interpreter and which heavy packages it has loaded. The web stack, the
HTTP client and the database driver are imported later (in a thread while the services
start, or on first use), so they should not appear here.

    python bench/bench_imports.py                    # the code on PYTHONPATH
    python bench/bench_imports.py --src before=/work/main/src --src after=src

With several --src, their runs alternate (the machine's load then hits all alike) and
the table has one column per tree.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict

HEAVY = (
    "coursestack.cli",
    "typer",
    "rich",
    "click",
    "pygments",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "httpcore",
    "trio",
    "psycopg",
    "pymongo",
    "websockets",
    "jinja2",
    "pydantic",
    "psutil",
    "asyncio",
)

#: Our own parts of the chain, timed too.
OURS = ("coursestack.spec", "coursestack.kinds", "coursestack.supervisor", "coursestack.procs")

_PROBE = """
import sys, coursestack.daemon
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:]))
print("RESULT", rss / 1024, ",".join(heavy))
"""

_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def one_run(env: dict[str, str]) -> tuple[dict[str, int], float, str]:
    """Cumulative µs per top-level module (first level under the root), RSS MB, heavy list."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", _PROBE, *HEAVY],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    cumulative: dict[str, int] = defaultdict(int)
    for line in result.stderr.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        _, total, indent, name = match.groups()
        if len(indent) == 1:  # imported by the -c script itself or by site
            cumulative[name] += int(total)
        if name in HEAVY or name in OURS:
            cumulative[f"[{name}]"] = max(cumulative[f"[{name}]"], int(total))
    rss_text, _, heavy_text = result.stdout.strip().split("RESULT ")[-1].partition(" ")
    return dict(cumulative), float(rss_text), heavy_text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--src",
        action="append",
        default=[],
        help="LABEL=PYTHONPATH of a tree to measure (repeatable; default: the code on PYTHONPATH)",
    )
    args = parser.parse_args()
    trees = dict(item.split("=", 1) for item in args.src) or {
        "this tree": os.environ.get("PYTHONPATH", "")
    }
    runs: dict[str, list[tuple[dict[str, int], float, str]]] = {label: [] for label in trees}
    for _ in range(args.runs):
        for label, path in trees.items():
            runs[label].append(one_run({**os.environ, "PYTHONPATH": path}))
    medians = {
        label: {
            n: statistics.median(r[0].get(n, 0) for r in tree_runs) / 1000
            for n in {n for r in tree_runs for n in r[0]}
        }
        for label, tree_runs in runs.items()
    }
    names = sorted(
        {n for m in medians.values() for n, v in m.items() if v >= 5},
        key=lambda n: -max(m.get(n, 0) for m in medians.values()),
    )
    labels = list(trees)
    print(
        f"`import coursestack.daemon`, median ms of {args.runs} fresh interpreters per "
        "tree, runs alternating (cumulative: a module with what it imports)\n"
    )
    print("| module | " + " | ".join(labels) + " |")
    print("| --- | " + " | ".join("---:" for _ in labels) + " |")
    for name in names:
        print(
            f"| {name} | "
            + " | ".join(
                f"{medians[label].get(name, 0):.0f}" if medians[label].get(name, 0) >= 1 else "-"
                for label in labels
            )
            + " |"
        )
    print(
        "| RSS after the import (MB) | "
        + " | ".join(f"{statistics.median(r[1] for r in runs[label]):.1f}" for label in labels)
        + " |"
    )
    print(
        "| heavy packages loaded | "
        + " | ".join(runs[label][0][2].replace(",", ", ") or "-" for label in labels)
        + " |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
