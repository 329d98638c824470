"""The daemon's PostgreSQL probe without a driver vs. the same probe over psycopg.

    python bench/bench_pg_probe.py [--rounds 7]

One real PostgreSQL (a fresh one-service coursestack instance). Each round starts two
fresh interpreters, one per variant, in alternating order; each imports
`coursestack.daemon` (what the daemon has loaded before its first probe), then runs the
probe the daemon runs (superuser scram-sha-256 login, `DO ... RAISE LOG`) ten times.
Reported: RSS after the import, after the first probe, the first probe's wall time
(it includes loading the client), and CPU per later probe. Medians over the rounds.

Then the seed loader: the same CSV (`--rows`, 5 columns) loaded as the daemon does it
(`load_csv`: infer types, CREATE TABLE, COPY in 1 MB blocks, in one transaction) over the
wire client vs. the same statements and blocks over psycopg, rounds alternating.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_seed import cli, make_csv

PROBE = r"""
import asyncio, json, resource, sys, time

def rss() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

variant, port, password = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import coursestack.daemon  # noqa: F401
after_import = rss()
OPTIONS = "-c log_error_verbosity=terse -c statement_timeout=5000"
STATEMENT = "DO $$BEGIN RAISE LOG 'coursestack health probe'; END$$"

async def wire_probe() -> None:
    from coursestack.kinds.postgres_wire import connect
    async with await connect("127.0.0.1", port, "postgres", password, "postgres",
                             options=OPTIONS, timeout=3) as session:
        await session.execute(STATEMENT)

async def psycopg_probe() -> None:  # the probe before the wire client (commit 1f1bd4c)
    await asyncio.to_thread(__import__, "psycopg")
    import psycopg
    connection = await psycopg.AsyncConnection.connect(
        host="127.0.0.1", port=port, user="postgres", password=password, dbname="postgres",
        connect_timeout=3, autocommit=True, options=OPTIONS)
    try:
        await connection.execute(STATEMENT)
    finally:
        await connection.close()

async def main() -> dict[str, float]:
    probe = wire_probe if variant == "wire" else psycopg_probe
    started = time.perf_counter()
    await probe()
    first = time.perf_counter() - started
    after_probe = rss()
    cpu = time.process_time()
    for _ in range(10):
        await probe()
    per_probe_cpu = (time.process_time() - cpu) / 10
    return {"import_mb": after_import, "probe_mb": after_probe, "first_ms": first * 1000,
            "cpu_ms": per_probe_cpu * 1000, "final_mb": rss()}

print(json.dumps(asyncio.run(main())))
"""

VARIANTS = ("wire", "psycopg")


async def load_over_wire(info: dict[str, Any], data: Path) -> float:
    from coursestack.kinds.postgres import load_csv
    from coursestack.kinds.postgres_wire import connect

    async with await connect(
        "127.0.0.1", info["port"], info["user"], info["password"], info["database"]
    ) as session:
        await session.execute("DROP TABLE IF EXISTS readings")
        started = time.perf_counter()
        await session.execute("BEGIN")
        await load_csv(session, data)
        await session.execute("COMMIT")
        return time.perf_counter() - started


def load_over_psycopg(info: dict[str, Any], data: Path) -> float:
    import psycopg
    from psycopg import sql

    from coursestack.seeding import plan_table

    with psycopg.connect(
        host="127.0.0.1",
        port=info["port"],
        user=info["user"],
        password=info["password"],
        dbname=info["database"],
    ) as connection:
        connection.execute("DROP TABLE IF EXISTS readings")
        connection.commit()
        started = time.perf_counter()
        plan = plan_table(data)  # what load_csv did before the wire client (1f1bd4c)
        columns = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(k)) for n, k in plan.columns
        )
        connection.execute(sql.SQL("CREATE TABLE readings ({})").format(columns))
        with (
            connection.cursor() as cursor,
            cursor.copy("COPY readings FROM STDIN (FORMAT csv, HEADER true)") as stream,
            open(data, "rb") as source,
        ):
            for block in iter(lambda: source.read(1 << 20), b""):
                stream.write(block)
        connection.commit()
        return time.perf_counter() - started


def measure(rounds: int, rows: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    base = Path(tempfile.mkdtemp(prefix="bench-pg-probe-"))
    os.chmod(base, 0o755)
    home, state = base / "home", base / "state"
    spec = base / "course.toml"
    spec.write_text('[course]\nname = "probe"\n[services.db]\nkind = "postgres"\nport = 15731\n')
    cli("up", str(spec), "--state", str(state), home=home)
    try:
        from coursestack.state import Secrets, StateFolder

        port = json.loads((state / "connections.json").read_text())["services"]["db"]["port"]
        password = Secrets(StateFolder(state)).get("db.superuser-password")
        samples: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
        for number in range(rounds):
            for variant in VARIANTS if number % 2 == 0 else reversed(VARIANTS):
                # The password goes through argv of a short-lived local child here only
                # because this is a throwaway benchmark instance.
                out = subprocess.run(
                    [sys.executable, "-c", PROBE, variant, str(port), password],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                samples[variant].append(json.loads(out))
        probes = {
            variant: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
            for variant, runs in samples.items()
        }
        data = base / "readings.csv"
        make_csv(data, rows)
        info = json.loads((state / "connections.json").read_text())["services"]["db"]
        loads: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for number in range(rounds):
            for variant in VARIANTS if number % 2 == 0 else reversed(VARIANTS):
                loads[variant].append(
                    asyncio.run(load_over_wire(info, data))
                    if variant == "wire"
                    else load_over_psycopg(info, data)
                )
        return probes, {variant: statistics.median(times) for variant, times in loads.items()}
    finally:
        # `remove`: stops it and deletes its state and its service account (run as root).
        cli("remove", "--state", str(state), "--yes", home=home)
        shutil.rmtree(base, ignore_errors=True)


def markdown(
    results: dict[str, dict[str, float]], loads: dict[str, float], rounds: int, rows: int
) -> str:
    wire, driver = results["wire"], results["psycopg"]
    lines = [
        f"PostgreSQL probe in a fresh interpreter that imported `coursestack.daemon`, "
        f"median of {rounds} rounds (bench/bench_pg_probe.py):",
        "",
        "| | own wire client | psycopg | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    measured = [
        ("RSS after `import coursestack.daemon` (MB)", "import_mb"),
        ("RSS after the first probe (MB)", "probe_mb"),
        ("RSS after 11 probes (MB)", "final_mb"),
        ("first probe, incl. loading the client (ms)", "first_ms"),
        ("CPU per later probe (ms)", "cpu_ms"),
    ]
    for label, key in measured:
        lines.append(
            f"| {label} | {wire[key]:.1f} | {driver[key]:.1f} | {wire[key] / driver[key]:.2f}x |"
        )
    lines += [
        "",
        f"The probe itself adds {wire['probe_mb'] - wire['import_mb']:.1f} MB with "
        f"the wire client, {driver['probe_mb'] - driver['import_mb']:.1f} MB with psycopg.",
        "",
        f"Seeding {rows:,} CSV rows (median s of {rounds}): wire client "
        f"{loads['wire']:.2f} s, psycopg {loads['psycopg']:.2f} s "
        f"({loads['wire'] / loads['psycopg']:.2f}x).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rows", type=int, default=200_000)
    options = parser.parse_args()
    probes, loads = measure(options.rounds, options.rows)
    print(markdown(probes, loads, options.rounds, options.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
