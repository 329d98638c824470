"""A PostgreSQL service in a backup: the course database as one `pg_dump -Fc` file.

Dump and restore use the service's own PostgreSQL programs (`PostgresKind.bin_dir()`)
and this instance's superuser password, never a password from the archive: a backup
restores into a fresh instance (another machine, other ports, other passwords) too.

Restore is all or nothing: the dump goes into a new database first; only when that
succeeded is the course database dropped and the new one renamed into its place, owned
by the course role (objects are created as that role, `--no-owner --role`).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from coursestack.errors import UserError
from coursestack.kinds.base import LOCALHOST
from coursestack.kinds.postgres import SUPERUSER, PostgresKind
from coursestack.kinds.postgres_wire import Connection, WireError, quote_identifier, quote_literal

T = TypeVar("T")

DUMP_MEMBER = "database.dump"
#: No compression in pg_dump: the archive's one light gzip pass (archive.COMPRESS_LEVEL)
#: is faster than pg_dump's own zlib, for a slightly larger file (docs/benchmarks-backup.md).
DUMP_COMPRESSION = "--compress=0"


def _environment(kind: PostgresKind) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT", "TMPDIR", "HOME")
    }
    env.update(
        {
            "PGPASSWORD": kind.superuser_password,
            "PGCONNECT_TIMEOUT": "10",
            "PGHOST": LOCALHOST,
            "PGPORT": str(kind.port),
            "PGUSER": SUPERUSER,
        }
    )
    return env


def _as_superuser(
    kind: PostgresKind, work: Callable[[Connection], Awaitable[T]], database: str = "postgres"
) -> T:
    """Run `work` in a superuser session (the CLI's own wire client: no driver import)."""

    async def session() -> T:
        async with await kind.superuser_session(database, timeout=10) as admin:
            return await work(admin)

    try:
        return asyncio.run(session())
    except WireError as error:
        raise UserError(
            f"PostgreSQL refused the backup's work: {error}",
            where=f"services.{kind.name}",
            hint="see `coursestack logs " + kind.name + "`",
        ) from None


def tool_version(program: Path) -> str:
    """`pg_dump --version` etc.: 'pg_dump (PostgreSQL) 16.2' -> '16.2'."""
    result = subprocess.run(
        [str(program), "--version"], capture_output=True, text=True, check=False
    )
    found = re.search(r"(\d+(?:\.\d+)*)", result.stdout)
    return found.group(1) if found else ""


def _major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def _run(argv: list[str], kind: PostgresKind, what: str) -> None:
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=_environment(kind),
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise UserError(
            f"{what} failed (exit {result.returncode}): " + " | ".join(lines[-4:]),
            where=f"services.{kind.name}",
            hint="see `coursestack logs " + kind.name + "`",
        )


def dump(kind: PostgresKind, folder: Path) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """Dump the course database into `folder`; the manifest entry and the files."""
    bin_dir = kind.bin_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / DUMP_MEMBER
    _run(
        [
            str(bin_dir / "pg_dump"),
            "--format=custom",
            DUMP_COMPRESSION,
            "--no-password",
            f"--file={target}",
            kind.database,
        ],
        kind,
        "pg_dump",
    )

    async def describe(admin: Connection) -> tuple[str, int]:
        version = await admin.fetch("SHOW server_version")
        tables = await admin.fetch(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema')"
        )
        return str(version[0][0]) if version else "", int(tables[0][0] or 0) if tables else 0

    version, tables = _as_superuser(kind, describe, kind.database)
    entry = {
        "kind": kind.KIND,
        "version": version,
        "pg_dump": tool_version(bin_dir / "pg_dump"),
        "database": kind.database,
        "user": kind.spec.user,
        "tables": tables,
        "parts": {"dump": DUMP_MEMBER},
    }
    return entry, [(DUMP_MEMBER, target)]


def check_restorable(kind: PostgresKind, entry: dict[str, Any], where: str) -> None:
    """Refuse (before anything changes) a dump this PostgreSQL cannot read."""
    made_by = str(entry.get("pg_dump", ""))
    ours = tool_version(kind.bin_dir() / "pg_restore")
    if _major(made_by) > _major(ours):
        raise UserError(
            f"service {kind.name}: the backup was made with PostgreSQL {made_by}, "
            f"this instance has {ours} (too old to read it); nothing was changed",
            where=where,
            hint=f"use a PostgreSQL of version {_major(made_by)} or "
            f"newer (services.{kind.name}.binaries)",
        )


def restore(kind: PostgresKind, folder: Path) -> None:
    """Replace the course database with the dump in `folder`."""
    database = quote_identifier(kind.database)
    staging_name = f"{kind.database}__restoring"[:63]
    staging = quote_identifier(staging_name)
    owner = kind.spec.user

    async def make_staging(admin: Connection) -> None:
        await admin.execute(f"DROP DATABASE IF EXISTS {staging}")
        await admin.execute(f"CREATE DATABASE {staging} OWNER {quote_identifier(owner)}")

    async def drop_staging(admin: Connection) -> None:
        await admin.execute(f"DROP DATABASE IF EXISTS {staging}")

    async def swap_in(admin: Connection) -> None:
        version = await admin.fetch("SHOW server_version_num")
        force = bool(version and int(version[0][0] or 0) >= 130000)
        if not force:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = {quote_literal(kind.database)} "
                "AND pid <> pg_backend_pid()"
            )
        await admin.execute(
            f"DROP DATABASE IF EXISTS {database}" + (" WITH (FORCE)" if force else "")
        )
        await admin.execute(f"ALTER DATABASE {staging} RENAME TO {database}")

    _as_superuser(kind, make_staging)
    try:
        _run(
            [
                str(kind.bin_dir() / "pg_restore"),
                "--no-password",
                "--exit-on-error",
                "--no-owner",
                f"--role={owner}",
                f"--dbname={staging_name}",
                str(folder / DUMP_MEMBER),
            ],
            kind,
            "pg_restore",
        )
    except UserError:
        _as_superuser(kind, drop_staging)
        raise
    _as_superuser(kind, swap_in)
