"""Backup and restore time: `coursestack backup/restore` vs plain `pg_dump`/`pg_restore`.

    python bench/bench_backup.py [--rows 200000] [--rounds 3]

One fresh sample-course instance; a table of `--rows` rows (five columns, one index) is
loaded into its course database next to the seeded tables. In the same run, rounds
alternating, the same database is
- dumped by `pg_dump -Fc` (its default compression) and by `coursestack backup --only
  postgres` (the archive: uncompressed custom-format dump + manifest, gzip level 6);
- restored by `pg_restore --clean --if-exists --no-owner --role=student` and by
  `coursestack restore` (checks the whole archive, backs up the current data first, as
  it always does, restores into a new database and swaps it in).
coursestack is timed as the command line a student runs (a new Python process each time);
`backup/restore` in-process times (without the process start) are given too. Every restore
is checked: the table has all its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from bench_seed import cli

from coursestack.backup import create_backup, restore_backup
from coursestack.instances import resolve_instance
from coursestack.kinds.postgres import pgserver_bin_dir


def timed(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    began = time.perf_counter()
    result = subprocess.run(
        argv, check=True, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    return time.perf_counter() - began, result.stdout


def load_rows(conninfo: dict[str, Any], rows: int) -> None:
    random.seed(351)
    words = ["tidy", "join", "pivot", "null", "index", "schema", "query", "plot", "model"]
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE readings (id bigint PRIMARY KEY, station text, "
            "reading double precision, taken timestamp, note text)"
        )
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY readings (id, station, reading, taken, note) FROM STDIN") as copy,
        ):
            for number in range(rows):
                note = " ".join(random.choices(words, k=6))
                copy.write_row(
                    (
                        number,
                        f"st-{number % 977}",
                        random.uniform(-20, 40),
                        f"2024-{1 + number % 12:02d}-{1 + number % 28:02d} {number % 24:02d}:00",
                        note,
                    )
                )
        conn.execute("CREATE INDEX readings_station ON readings (station)")


def count(conninfo: dict[str, Any]) -> int:
    with psycopg.connect(**conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else -1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    os.chmod(base, 0o755)
    home, state, out = base / "home", base / "state", base / "out"
    os.environ["COURSESTACK_HOME"] = str(home)
    out.mkdir()
    bin_dir = pgserver_bin_dir() or Path("/usr/bin")
    cli("up", "--state", str(state), "--only", "postgres", home=home)
    try:
        connections = json.loads((state / "connections.json").read_text())["services"]
        info = connections["postgres"]
        student = {
            "host": info["host"],
            "port": info["port"],
            "user": info["user"],
            "password": info["password"],
            "dbname": info["database"],
        }
        load_rows(student, options.rows)
        secrets = json.loads((state / "run" / "secrets.json").read_text())
        env = {
            "PGHOST": info["host"],
            "PGPORT": str(info["port"]),
            "PGUSER": "postgres",
            "PGPASSWORD": secrets["postgres.superuser-password"],
        }
        database = info["database"]
        instance = resolve_instance(None, state)
        rows: dict[str, list[float]] = {
            k: []
            for k in (
                "pg_dump",
                "backup",
                "backup_inproc",
                "pg_restore",
                "restore",
                "restore_inproc",
                "restore_without_safety_backup",
            )
        }
        sizes: dict[str, int] = {}
        for number in range(options.rounds):
            dump = out / f"plain-{number}.dump"
            seconds, _ = timed([str(bin_dir / "pg_dump"), "-Fc", "-f", str(dump), database], env)
            rows["pg_dump"].append(seconds)
            sizes["pg_dump"] = dump.stat().st_size
            archive = out / f"cs-{number}.coursestack.tar.gz"
            seconds, _ = timed(
                [
                    sys.executable,
                    "-m",
                    "coursestack",
                    "backup",
                    "--only",
                    "postgres",
                    "--state",
                    str(state),
                    "--output",
                    str(archive),
                ]
            )
            rows["backup"].append(seconds)
            sizes["backup"] = archive.stat().st_size
            again = out / f"cs-{number}-inproc.coursestack.tar.gz"
            rows["backup_inproc"].append(create_backup(instance, again, ["postgres"]).seconds)

            seconds, _ = timed(
                [
                    str(bin_dir / "pg_restore"),
                    "--clean",
                    "--if-exists",
                    "--no-owner",
                    f"--role={info['user']}",
                    "-d",
                    database,
                    str(dump),
                ],
                env,
            )
            rows["pg_restore"].append(seconds)
            assert count(student) == options.rows
            seconds, _ = timed(
                [
                    sys.executable,
                    "-m",
                    "coursestack",
                    "restore",
                    str(archive),
                    "--state",
                    str(state),
                ]
            )
            rows["restore"].append(seconds)
            assert count(student) == options.rows
            result = restore_backup(instance, archive)
            assert count(student) == options.rows and result.before is not None
            rows["restore_inproc"].append(result.seconds)
            # Without the safety backup it always takes first.
            rows["restore_without_safety_backup"].append(result.seconds - result.before.seconds)
            for path in (state / "backups").glob("*before-restore*"):
                path.unlink()
        report(rows, sizes, options)
    finally:
        cli("down", "--state", str(state), home=home)


def report(rows: dict[str, list[float]], sizes: dict[str, int], options: Any) -> None:
    median = {k: statistics.median(v) for k, v in rows.items()}
    version = subprocess.run(
        [str((pgserver_bin_dir() or Path("/usr/bin")) / "pg_dump"), "--version"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(
        f"{options.rows} rows, median of {options.rounds} rounds; {version}; "
        f"Python {platform.python_version()}, {platform.machine()}, {platform.system()}"
    )
    print()
    print(
        "| operation | plain PostgreSQL | coursestack (command) | coursestack (work only) "
        "| ratio (command) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| backup | pg_dump -Fc {median['pg_dump']:.2f} s | {median['backup']:.2f} s | "
        f"{median['backup_inproc']:.2f} s | {median['backup'] / median['pg_dump']:.2f}x |"
    )
    print(
        f"| restore | pg_restore --clean {median['pg_restore']:.2f} s | "
        f"{median['restore']:.2f} s | {median['restore_inproc']:.2f} s "
        f"(without its safety backup {median['restore_without_safety_backup']:.2f} s) | "
        f"{median['restore'] / median['pg_restore']:.2f}x |"
    )
    print()
    print(
        f"Sizes: pg_dump -Fc {sizes['pg_dump'] / 2**20:.1f} MiB, coursestack archive "
        f"{sizes['backup'] / 2**20:.1f} MiB."
    )
    print(json.dumps({"rows": options.rows, "median": median, "all": rows, "sizes": sizes}))


if __name__ == "__main__":
    main()
