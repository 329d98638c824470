"""The `postgres` kind: a real PostgreSQL server, from the pgserver wheel or the system.

First start runs `initdb` into a temporary folder and renames it into place, so a daemon
killed half-way never leaves a half-made cluster behind. The server listens on loopback
TCP only (no Unix socket: its path length limit bites deep state folders, and Windows
has none), with scram-sha-256 passwords. The course gets its own role and database;
seed SQL runs once, in one transaction, and is recorded with its checksum. The daemon
does all of that, and its probe, over its own protocol client (postgres_wire.py): psycopg
is for notebooks, and never loads in the daemon.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.util
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from coursestack import nofollow
from coursestack.errors import MissingBinaryError, UserError
from coursestack.kinds.base import LOCALHOST, Connection, Kind, count, first_output_line
from coursestack.kinds.export_hints import (
    SEED_DIR,
    Difference,
    ExportHints,
    InitFile,
    OfficialImage,
    run_by_official_image,
)
from coursestack.kinds.postgres_wire import (
    Connection as WireConnection,
)
from coursestack.kinds.postgres_wire import (
    ConnectionLost,
    ServerError,
    WireError,
    connect,
    quote_identifier,
    quote_literal,
    scram_verifier,
)
from coursestack.plan import DEFAULT_KERNELS, KindEstimate
from coursestack.procs import LaunchSpec
from coursestack.seeding import SeedLedger, copy_error_line, plan_table, seed_checksum
from coursestack.spec import CourseSpec, PostgresService
from coursestack.units import MB, parse_size

SUPERUSER = "postgres"


def pgserver_bin_dir() -> Path | None:
    """The bin folder of the pgserver wheel's PostgreSQL, without importing pgserver."""
    found = importlib.util.find_spec("pgserver")
    if found is None or found.origin is None:
        return None
    folder = Path(found.origin).parent / "pginstall" / "bin"
    return folder if (folder / "postgres").exists() else None


def system_bin_dir() -> Path | None:
    """The newest system PostgreSQL's bin folder (PATH first, then Debian/Homebrew places)."""
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    candidates += glob.glob("/opt/homebrew/opt/postgresql*/bin")
    candidates += glob.glob("/usr/local/opt/postgresql*/bin")
    for candidate in reversed(candidates):
        if (Path(candidate) / "postgres").exists():
            return Path(candidate)
    return None


class PostgresKind(Kind[PostgresService]):
    """A PostgreSQL server with a course role and database."""

    KIND = "postgres"
    # SIGINT is PostgreSQL's "fast shutdown": clients are disconnected, data is flushed.
    stop_signal = signal.SIGINT
    default_port = 5432
    default_stop_timeout = 30.0
    settings_model = PostgresService
    # postmaster + checkpointer, background writer, WAL writer, autovacuum launcher,
    # logical replication launcher, with default shared_buffers mostly untouched.
    memory_estimate = KindEstimate(60, basis="~60 MB idle (PostgreSQL server and its helpers)")
    # The course database, read live with pg_dump (kinds/postgres_backup.py).
    backup_mode = "live"

    @property
    def cluster(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def database(self) -> str:
        return self.spec.database or self.context.spec.course.name.replace("-", "_")

    @property
    def password(self) -> str:
        return self.context.secrets.get(f"{self.name}.password")

    @property
    def superuser_password(self) -> str:
        return self.context.secrets.get(f"{self.name}.superuser-password")

    def bin_dir(self) -> Path:
        """Folder holding `postgres` and `initdb`; MissingBinaryError says how to get one."""
        choice = self.spec.binaries
        where = f"services.{self.name}.binaries"
        if choice == "pgserver":
            found = pgserver_bin_dir()
            if found is None:
                raise MissingBinaryError(
                    "the pgserver wheel (PostgreSQL binaries) is missing",
                    where=where,
                    hint="pip install pgserver, or set "
                    'binaries = "system" to use an installed PostgreSQL',
                )
            return found
        if choice == "system":
            found = system_bin_dir()
            if found is None:
                raise MissingBinaryError(
                    "no PostgreSQL installed on this system",
                    where=where,
                    hint="install it (Debian: apt-get install postgresql;"
                    " macOS: brew install postgresql), or use binaries = "
                    '"pgserver"',
                )
            return found
        folder = Path(choice).expanduser()
        if not (folder / "postgres").exists():
            raise MissingBinaryError(
                f"no `postgres` program in {folder}",
                where=where,
                hint='point binaries at a PostgreSQL bin folder, or use "pgserver" or "system"',
            )
        return folder

    def check_installed(self) -> None:
        self.bin_dir()

    def needed_paths(self) -> list[Path]:
        return [*super().needed_paths(), self.bin_dir() / "postgres"]

    def _prepare_folders(self) -> None:
        super()._prepare_folders()
        if not (self.cluster / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        staging = self.data_dir / "pgdata.init"
        password_file = ".initdb-password"
        account = self.run_as
        # The superuser password reaches initdb in a new file of the service account's
        # own folder (0700), made through its descriptor: never on a command line, never
        # written through a link the account planted.
        with self.data_folder() as folder:
            nofollow.remove(folder, staging.name)
            nofollow.remove(folder, password_file)
            nofollow.write_file(
                folder,
                password_file,
                (self.superuser_password + "\n").encode(),
                0o600,
                account.uid if account else None,
                account.gid if account else None,
            )
        argv = [
            str(self.bin_dir() / "initdb"),
            "-D",
            str(staging),
            "-U",
            SUPERUSER,
            f"--pwfile={self.data_dir / password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]
        kwargs: dict[str, Any] = {}
        if account is not None:
            kwargs.update(user=account.uid, group=account.gid, extra_groups=[])
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=self.environment(),
                cwd=self.data_dir,
                check=False,
                stdin=subprocess.DEVNULL,
                **kwargs,
            )
        finally:
            with self.data_folder() as folder:
                nofollow.remove(folder, password_file)
        with open(
            os.open(self.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600),
            "a",
            encoding="utf-8",
        ) as log:
            log.write(result.stdout + result.stderr)
        if result.returncode != 0:
            raise UserError(
                f"initdb failed (exit {result.returncode})",
                where=f"services.{self.name}",
                hint="see the last lines of its log: "
                + " | ".join(result.stderr.strip().splitlines()[-3:]),
            )
        # initdb --no-sync is fast; one sync of the finished cluster keeps it durable.
        if hasattr(os, "sync"):
            os.sync()
        with self.data_folder() as folder:
            nofollow.rename(folder, staging.name, self.cluster.name)

    def launch_spec(self) -> LaunchSpec:
        argv = [
            str(self.bin_dir() / "postgres"),
            "-D",
            str(self.cluster),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={LOCALHOST}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "logging_collector=off",
        ]
        for key, value in self.spec.settings.items():
            argv += ["-c", f"{key}={value}"]
        return self._launch(argv)

    def _bound_port(self) -> int:
        if self.port is None:
            raise ConnectionLost(f"service {self.name} has no port yet")
        return self.port

    async def superuser_session(
        self, database: str = "postgres", options: str | None = None, timeout: float = 3.0
    ) -> WireConnection:
        """A session as the cluster's superuser (over our own wire client: no driver)."""
        return await connect(
            LOCALHOST,
            self._bound_port(),
            SUPERUSER,
            self.superuser_password,
            database,
            options=options,
            timeout=timeout,
        )

    async def course_session(self) -> WireConnection:
        """A session as the course role, in the course database."""
        return await connect(
            LOCALHOST, self._bound_port(), self.spec.user, self.password, self.database
        )

    #: The probe's own log line, which the log pump leaves out of the log.
    probe_log_marker = b"coursestack health probe"

    async def probe(self) -> bool:
        """True if a backend answers and can write to the server log.

        A backend that logs writes to the output pipe; if that ever blocks, the server
        still accepts connections and answers `SELECT 1`, but every backend that logs
        hangs. So the probe makes its backend write one LOG line (terse: no CONTEXT
        line), which returns only once written. The log pump drops that line, so the log
        does not get one per interval; the supervisor's probe timeout turns a hang into
        a failed probe (the session's socket is closed when the probe is cancelled).
        """
        try:
            session = await self.superuser_session(
                options="-c log_error_verbosity=terse -c statement_timeout=5000"
            )
        except WireError:
            return False
        try:
            async with session:
                await session.execute(
                    "DO $$BEGIN RAISE LOG "
                    + quote_literal(self.probe_log_marker.decode())
                    + "; END$$"
                )
            return True
        except WireError:
            return False

    async def after_ready(self, report: Callable[[str], None]) -> None:
        await self._ensure_course_database()
        if self.spec.seed:
            await self._seed_once(report)

    async def _ensure_course_database(self) -> None:
        async with await self.superuser_session() as admin:
            role = quote_identifier(self.spec.user)
            exists = await admin.fetch(
                "SELECT 1 FROM pg_roles WHERE rolname = " + quote_literal(self.spec.user)
            )
            # The server gets the password's SCRAM verifier, never the password itself.
            await admin.execute(
                f"{'ALTER' if exists else 'CREATE'} ROLE {role} LOGIN "
                f"PASSWORD {quote_literal(scram_verifier(self.password))}"
            )
            if not await admin.fetch(
                "SELECT 1 FROM pg_database WHERE datname = " + quote_literal(self.database)
            ):
                await admin.execute(
                    f"CREATE DATABASE {quote_identifier(self.database)} OWNER {role}"
                )

    async def _seed_once(self, report: Callable[[str], None]) -> None:
        files = [self.context.spec.resolve(name) for name in self.spec.seed]
        checksum = await asyncio.to_thread(seed_checksum, files, self.name)
        ledger = SeedLedger(self.data_dir / "seeded.json")
        applied = ledger.applied()
        if applied is None:
            # The database's own record: written in the seed's transaction, it cannot
            # disagree with the data, even if we were killed before writing the file.
            async with await self.course_session() as session:
                applied = await _applied_in_database(session)
            if applied is not None:
                ledger.record(str(applied["checksum"]), files)
        if applied:
            if applied["checksum"] != checksum:
                report(
                    "seed files changed since first start; not re-applied "
                    "(`coursestack reset` starts again from the new seed)"
                )
            return
        async with await self.course_session() as session:
            # One transaction for the whole seed: a failure anywhere leaves nothing behind.
            await session.execute("BEGIN")
            for number, path in enumerate(files, start=1):
                report(f"seeding {path.name} ({number}/{len(files)})")
                try:
                    if path.suffix.lower() == ".csv":
                        await load_csv(session, path)
                    else:
                        await session.execute(
                            await asyncio.to_thread(path.read_text, encoding="utf-8")
                        )
                except ServerError as error:
                    await session.execute("ROLLBACK")
                    raise _seed_error(error, path) from None
                except UserError:
                    await session.execute("ROLLBACK")
                    raise
            await session.execute(
                "CREATE SCHEMA IF NOT EXISTS coursestack; "
                "CREATE TABLE IF NOT EXISTS coursestack.seed "
                "(checksum text NOT NULL, applied timestamptz DEFAULT now()); "
                f"INSERT INTO coursestack.seed (checksum) VALUES ({quote_literal(checksum)}); "
                "COMMIT"
            )
        ledger.record(checksum, files)

    def connection(self) -> Connection:
        url = (
            f"postgresql://{self.spec.user}:{self.password}@{LOCALHOST}:{self.port}/{self.database}"
        )
        conventional = {
            "DATABASE_URL": url,
            "PGHOST": LOCALHOST,
            "PGPORT": str(self.port),
            "PGUSER": self.spec.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }
        return Connection(
            self.name,
            self.KIND,
            LOCALHOST,
            self.port,
            url,
            self.spec.user,
            self.password,
            self.database,
            conventional_env=conventional,
            driver="psycopg",
        )

    # -- doctor, plan, backup ------------------------------------------------------------

    def program_version(self) -> str:
        program = self.bin_dir() / "postgres"
        return f"{first_output_line([str(program), '--version'])} at {program.parent}"

    @classmethod
    def expected_memory(
        cls, service: PostgresService | None, kernels: int = DEFAULT_KERNELS
    ) -> tuple[int, str]:
        total, basis = super().expected_memory(service, kernels)
        shared = service.settings.get("shared_buffers") if service is not None else None
        extra = _shared_buffers_extra(shared) if shared else 0
        if extra:
            total += extra // MB * MB
            basis += f"; + {extra // MB} MB as shared_buffers = {shared} fills"
        return total, basis

    def backup_dump(self, folder: Path) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
        from coursestack.kinds import postgres_backup

        return postgres_backup.dump(self, folder)

    def backup_check(self, entry: dict[str, Any], members: Mapping[str, Any], where: str) -> None:
        from coursestack.kinds import postgres_backup

        postgres_backup.check_restorable(self, entry, where)

    def backup_restore(self, entry: dict[str, Any], folder: Path) -> None:
        from coursestack.kinds import postgres_backup

        postgres_backup.restore(self, folder)

    @classmethod
    def describe_backup(cls, entry: dict[str, Any]) -> str | None:
        return (
            f"database {entry.get('database')} with {count(entry.get('tables', 0), 'table')}"
            f" (PostgreSQL {entry.get('version')})"
        )

    # -- export ----------------------------------------------------------------------------

    @classmethod
    def export_hints(cls, name: str, service: PostgresService, course: CourseSpec) -> ExportHints:
        """The official `postgres` image runs SQL seeds once; CSV seeds become SQL files
        (the types coursestack infers, or <name>.schema.json) that COPY the CSV in."""
        database = service.database or course.course.name.replace("-", "_")
        port = service.port or cls.default_port or 5432
        secret = f"{name}-password"
        init_files = []
        for number, seed in enumerate(service.seed, start=1):
            path = Path(seed)
            if path.suffix.lower() == ".csv":
                text = csv_seed_as_sql(course.resolve(seed), f"{SEED_DIR}/{path.name}")
                init_files.append(
                    InitFile(f"{number:02d}-{path.stem}.sql", text=text, reads=(seed,))
                )
            else:
                init_files.append(InitFile(f"{number:02d}-{path.name}", source=seed))
        command: tuple[str, ...] = ()
        if service.settings:
            command = (
                "postgres",
                *(
                    part
                    for key, value in service.settings.items()
                    for part in ("-c", f"{key}={value}")
                ),
            )
        # The same port inside the container as on the host: placeholders such as
        # {postgres.port} mean one thing everywhere (PGPORT sets the server's port too).
        official = OfficialImage(
            image=f"postgres:{OFFICIAL_MAJOR}",
            port=port,
            command=command,
            environment={
                "POSTGRES_USER": service.user,
                "POSTGRES_DB": database,
                "PGPORT": str(port),
            },
            secret_environment={"POSTGRES_PASSWORD_FILE": secret},
            healthcheck=(
                "pg_isready",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                service.user,
                "-d",
                database,
            ),
            data_path="/var/lib/postgresql/data",
            init_path="/docker-entrypoint-initdb.d",
            init_files=tuple(init_files),
        )
        url = f"postgresql://{service.user}@{{host}}:{{port}}/{database}"
        hints = run_by_official_image(
            super().export_hints(name, service, course),
            official,
            port=port,
            url=url,
            conventional_env={
                "DATABASE_URL": url,
                "PGHOST": "{host}",
                "PGPORT": "{port}",
                "PGUSER": service.user,
                "PGDATABASE": database,
            },
            secrets=(secret,),
            seeds=tuple(service.seed),
        )
        return replace(
            hints,
            official_differences=(
                Difference(
                    "user",
                    f"the official image makes {service.user!r} the database's "
                    "superuser (coursestack gives it only its own database)",
                ),
            ),
        )


async def _applied_in_database(session: WireConnection) -> dict[str, Any] | None:
    rows = await session.fetch("SELECT to_regclass('coursestack.seed') IS NOT NULL")
    if not rows or rows[0][0] != "t":
        return None
    found = await session.fetch(
        "SELECT checksum FROM coursestack.seed ORDER BY applied DESC LIMIT 1"
    )
    return {"checksum": found[0][0]} if found else None


async def _blocks(path: Path, size: int = 1 << 20) -> AsyncIterator[bytes]:
    """A file's bytes in blocks, read in a thread: the event loop keeps supervising."""
    with open(path, "rb") as source:
        while block := await asyncio.to_thread(source.read, size):
            yield block


async def load_csv(session: WireConnection, path: Path) -> int:
    """Create a table for a CSV file and COPY it in; indexes are built after the load."""
    plan = await asyncio.to_thread(plan_table, path)
    table = quote_identifier(plan.table)
    # The types come from the course's own seed (inferred, or its .schema.json).
    columns = ", ".join(f"{quote_identifier(name)} {kind}" for name, kind in plan.columns)
    await session.execute(f"CREATE TABLE {table} ({columns})")
    await session.copy_in(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)", _blocks(path))
    for number, index in enumerate(plan.indexes):
        await session.execute(
            f"CREATE INDEX {quote_identifier(f'{plan.table}_{number}_idx')} ON {table} "
            f"({', '.join(quote_identifier(column) for column in index)})"
        )
    return len(plan.columns)


def _seed_error(error: ServerError, path: Path) -> UserError:
    where = str(path)
    if path.suffix.lower() == ".csv":
        line = copy_error_line(error.context)
        if line is not None:
            where = f"{path}:{line}"
    elif error.position is not None:
        text = path.read_text(encoding="utf-8", errors="replace")
        where = f"{path}:{text[: error.position].count(chr(10)) + 1}"
    return UserError(
        f"seed failed: {error.message}",
        where=where,
        hint="fix the seed file; nothing of the seed was kept, and the next start tries again",
    )


#: PostgreSQL major version of the official image: the pgserver wheel's.
OFFICIAL_MAJOR = 16


def csv_seed_as_sql(path: Path, mounted_at: str) -> str:
    """SQL that creates a CSV seed's table, COPYs the file in, then builds its indexes."""
    plan = plan_table(path)
    table = quote_identifier(plan.table)
    columns = ",\n    ".join(f"{quote_identifier(column)} {kind}" for column, kind in plan.columns)
    lines = [
        f"-- {path.name}, as coursestack loads it (generated by `coursestack export`)",
        f"CREATE TABLE {table} (\n    {columns}\n);",
        f"COPY {table} FROM '{mounted_at}' (FORMAT csv, HEADER true);",
    ]
    for number, index in enumerate(plan.indexes):
        index_name = quote_identifier(f"{plan.table}_{number}_idx")
        lines.append(
            f"CREATE INDEX {index_name} ON {table} "
            f"({', '.join(quote_identifier(c) for c in index)});"
        )
    return "\n".join(lines) + "\n"


#: PostgreSQL's default shared_buffers, which the idle estimate already allows for.
DEFAULT_SHARED_BUFFERS = 128 * MB


def _shared_buffers_extra(value: str) -> int:
    """Bytes a larger shared_buffers may add once it fills (0 if smaller or unknown)."""
    try:
        size = parse_size(value)  # PostgreSQL writes 128MB, 1GB, 512kB
    except ValueError:
        return 0
    return max(0, size - DEFAULT_SHARED_BUFFERS)
