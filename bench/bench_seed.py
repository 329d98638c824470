"""Seeding throughput (coursestack's CSV loader vs `psql \\copy`) and the sample course's
memory when idle and when every service is active.

    python bench/bench_seed.py [--rows 500000] [--rounds 3]

Both loaders run against the same real PostgreSQL (a fresh coursestack instance), on the
same CSV, each creating its table and one index; rounds alternate. Memory is the summed
resident size of every process of the instance (daemon and each service's process tree).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from coursestack.kinds.postgres import load_csv, pgserver_bin_dir
from coursestack.kinds.postgres_wire import connect


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coursestack", *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "COURSESTACK_HOME": str(home)},
    )


def make_csv(path: Path, rows: int) -> None:
    random.seed(351)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "station", "reading", "taken", "ok"])
        for number in range(rows):
            writer.writerow(
                [
                    number,
                    f"st-{number % 977}",
                    round(random.uniform(-20, 40), 3),
                    f"2024-{1 + number % 12:02d}-{1 + number % 28:02d}",
                    "true" if number % 3 else "false",
                ]
            )


def tree_rss(pid: int) -> int:
    try:
        process = psutil.Process(pid)
        return int(
            process.memory_info().rss
            + sum(child.memory_info().rss for child in process.children(recursive=True))
        )
    except psutil.Error:
        return 0


def instance_rss(state: Path, home: Path) -> dict[str, float]:
    data = json.loads(cli("status", "--json", "--state", str(state), home=home).stdout)
    sizes = {s["name"]: tree_rss(s["pid"]) / 2**20 for s in data["services"] if s["pid"]}
    sizes["daemon"] = psutil.Process(data["pid"]).memory_info().rss / 2**20
    sizes["total"] = sum(sizes.values())
    return sizes


async def load_with_coursestack(info: dict[str, object], data_file: Path) -> float:
    """Seconds for the daemon's loader (its own wire client) to load the CSV, indexed."""
    async with await connect(
        str(info["host"]),
        int(str(info["port"])),
        str(info["user"]),
        str(info["password"]),
        str(info["database"]),
    ) as session:
        await session.execute("DROP TABLE IF EXISTS readings")
        started = time.perf_counter()
        await session.execute("BEGIN")
        await load_csv(session, data_file)  # infers types, CREATE TABLE, COPY
        await session.execute("CREATE INDEX ON readings (station); COMMIT")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-seed-"))
    os.chmod(base, 0o755)
    home, state = base / "home", base / "state"
    data_file = base / "readings.csv"
    make_csv(data_file, options.rows)
    os.chmod(data_file, 0o644)
    psql = str((pgserver_bin_dir() or Path("/usr/bin")) / "psql")
    cli("up", "--state", str(state), home=home)
    try:
        info = json.loads((state / "connections.json").read_text())["services"]["postgres"]
        ours, theirs = [], []
        for round_number in range(options.rounds):
            ours.append(asyncio.run(load_with_coursestack(info, data_file)))
            script = (
                "DROP TABLE IF EXISTS readings;\n"
                "CREATE TABLE readings (id bigint, station text, reading double precision,"
                " taken date, ok boolean);\n"
                f"\\copy readings FROM '{data_file}' WITH (FORMAT csv, HEADER true)\n"
                "CREATE INDEX ON readings (station);\n"
            )
            started = time.perf_counter()
            subprocess.run(
                [psql, "-q", "-v", "ON_ERROR_STOP=1", info["url"]],
                input=script,
                text=True,
                check=True,
                capture_output=True,
            )
            theirs.append(time.perf_counter() - started)
            print(
                f"round {round_number + 1}: coursestack {ours[-1]:.2f} s, "
                f"psql \\copy {theirs[-1]:.2f} s",
                file=sys.stderr,
            )
        idle_wait = 10.0
        time.sleep(idle_wait)
        idle = instance_rss(state, home)
        # Active: OpenRefine started, a kernel running in Jupyter, queries in flight.
        cli("start", "openrefine", "--state", str(state), home=home)
        jupyter = json.loads((state / "connections.json").read_text())["services"]["jupyter"]
        headers = {"Authorization": f"token {jupyter['token']}"}
        kernel = httpx.post(
            f"{jupyter['url']}api/kernels", headers=headers, json={}, trust_env=False, timeout=60
        ).json()
        time.sleep(5)
        active = instance_rss(state, home)
        httpx.delete(
            f"{jupyter['url']}api/kernels/{kernel['id']}",
            headers=headers,
            trust_env=False,
            timeout=60,
        )
    finally:
        cli("down", "--state", str(state), home=home)
    report(options.rows, ours, theirs, idle, active)


def report(
    rows: int,
    ours: list[float],
    theirs: list[float],
    idle: dict[str, float],
    active: dict[str, float],
) -> None:
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    lines = [
        f"Seeding {rows:,} CSV rows (5 columns) with one index, median of {len(ours)} rounds:",
        "",
        "| loader | median s | rows/s |",
        "| --- | ---: | ---: |",
        f"| coursestack (`load_csv`: infer types, COPY) | {ours_median:.2f} | "
        f"{rows / ours_median:,.0f} |",
        f"| `psql \\copy` (types written by hand) | {theirs_median:.2f} | "
        f"{rows / theirs_median:,.0f} |",
        "",
        f"Ratio coursestack / psql: **{ours_median / theirs_median:.2f}x** the time.",
        "",
        "Sample course memory (resident MB, each service's whole process tree):",
        "",
        "| process | idle | active |",
        "| --- | ---: | ---: |",
    ]
    for name in sorted(set(idle) | set(active), key=lambda n: (n == "total", n)):
        lines.append(f"| {name} | {idle.get(name, 0):.0f} | {active.get(name, 0):.0f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
