"""The `mongodb` kind (a real `mongod`, or a replica set) and `mongodb-lite`, a
MongoDB-wire-compatible stand-in (the nx-27017 server) for machines where MongoDB
cannot be installed. The stand-in is always labelled as such: it is not MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import importlib.util
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

from coursestack import mongo_wire, nofollow
from coursestack.errors import MissingBinaryError, UserError
from coursestack.kinds.base import LOCALHOST, Connection, Kind, count, first_output_line
from coursestack.kinds.export_hints import (
    SECRETS_DIR,
    SEED_DIR,
    Difference,
    ExportHints,
    InitFile,
    OfficialImage,
    run_by_official_image,
)
from coursestack.plan import DEFAULT_KERNELS, KindEstimate
from coursestack.procs import LaunchSpec
from coursestack.seeding import SeedLedger, read_documents, seed_checksum
from coursestack.spec import CourseSpec, MongoLiteService, MongoService
from coursestack.units import MB

STAND_IN_LABEL = "MongoDB-compatible stand-in, not MongoDB"
REPLICA_SET = "rs0"


def _client(uri: str, **options: Any) -> Any:
    import pymongo

    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000, **options)


def seed_collections(database: Any, files: list[Path], report: Callable[[str], None]) -> None:
    """Load JSON/JSONL seed files into collections named after them, all or nothing."""
    import pymongo.errors

    # Read and check every file before writing anything.
    batches = [(path.stem, read_documents(path)) for path in files]
    # No ledger yet means no finished seed: whatever an interrupted one left goes first.
    for collection, _ in batches:
        database.drop_collection(collection)
    created: list[str] = []
    try:
        for number, (collection, documents) in enumerate(batches, start=1):
            report(f"seeding {collection} ({number}/{len(batches)})")
            created.append(collection)
            if documents:
                database[collection].insert_many(documents, ordered=True)
    except pymongo.errors.PyMongoError as error:
        for collection in created:
            database.drop_collection(collection)
        raise UserError(
            f"seed failed: {error}",
            where=str(files[len(created) - 1]),
            hint="fix the seed file; nothing of the seed was kept",
        ) from None


class MongoBase(Kind[Any]):
    """What MongoDB and its stand-in share: the course database, the driver-free probe,
    seeding, and backups (one format, so each restores the other's)."""

    default_port: ClassVar[int | None] = 27017
    default_stop_timeout: ClassVar[float] = 20.0
    # Read live with pymongo: the same code for mongod and for the stand-in, so each
    # restores the other's backups.
    backup_mode = "live"
    backup_family = frozenset({"mongodb", "mongodb-lite"})

    @property
    def database(self) -> str:
        name = self.spec.database or self.context.spec.course.name
        return str(name).replace("-", "_")

    def url(self) -> str:
        raise NotImplementedError

    def admin_url(self) -> str:
        return f"mongodb://{LOCALHOST}:{self.port}/?directConnection=true"

    async def probe(self) -> bool:
        return await mongo_wire.ping(LOCALHOST, self.port or 0)

    def _seed_needed(self, report: Callable[[str], None]) -> bool:
        """False if the seed was applied already (said so if it changed since)."""
        files = [self.context.spec.resolve(name) for name in self.spec.seed]
        applied = SeedLedger(self.data_dir / "seeded.json").applied()
        if applied is None:
            return True
        if applied["checksum"] != seed_checksum(files, self.name):
            report("seed files changed since first start; not re-applied")
        return False

    def _seed(self, database: Any, report: Callable[[str], None]) -> None:
        if not self._seed_needed(report):
            return
        files = [self.context.spec.resolve(name) for name in self.spec.seed]
        checksum = seed_checksum(files, self.name)
        seed_collections(database, files, report)
        SeedLedger(self.data_dir / "seeded.json").record(checksum, files)

    # -- backup ----------------------------------------------------------------------------

    def backup_dump(self, folder: Path) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
        from coursestack.kinds import mongodb_backup

        return mongodb_backup.dump(self, folder)

    def backup_check(self, entry: dict[str, Any], members: Mapping[str, Any], where: str) -> None:
        from coursestack.kinds import mongodb_backup

        mongodb_backup.check_entry(entry, dict(members), where)

    def backup_restore(self, entry: dict[str, Any], folder: Path) -> None:
        from coursestack.kinds import mongodb_backup

        mongodb_backup.restore(self, entry, folder)

    @classmethod
    def describe_backup(cls, entry: dict[str, Any]) -> str | None:
        collections = entry.get("collections", [])
        documents = sum(int(c.get("documents", 0)) for c in collections)
        return (
            f"database {entry.get('database')}: {count(len(collections), 'collection')}"
            f", {count(documents, 'document')} ({entry.get('kind', cls.KIND)} "
            f"{entry.get('version')})"
        )

    def _connection(self, user: str | None, password: str | None, label: str = "") -> Connection:
        conventional = {
            "MONGO_URL": self.url(),
            "MONGODB_URI": self.url(),
            "MONGO_HOST": LOCALHOST,
            "MONGO_PORT": str(self.port),
            "MONGO_DB": self.database,
        }
        extra = {"label": label} if label else {}
        return Connection(
            self.name,
            self.spec.kind,
            LOCALHOST,
            self.port,
            self.url(),
            user,
            password,
            self.database,
            conventional_env=conventional,
            extra=extra,
            driver="pymongo",
        )

    # -- export ----------------------------------------------------------------------------

    @classmethod
    def _mongo_export_hints(
        cls,
        name: str,
        service: Any,
        course: CourseSpec,
        official: OfficialImage,
        secrets: tuple[str, ...],
    ) -> ExportHints:
        port = service.port or cls.default_port or 27017
        database = str(service.database or course.course.name).replace("-", "_")
        url = f"mongodb://{{host}}:{{port}}/{database}"
        seeds = tuple(
            InitFile(
                f"{number:02d}-seed-{Path(seed).stem}.sh",
                text=_mongoimport_script(seed, database),
                reads=(seed,),
            )
            for number, seed in enumerate(service.seed, start=50)
        )
        # The same port inside the container as on the host (see postgres.py).
        official = replace(
            official,
            port=port,
            init_files=official.init_files + seeds,
            command=(*(official.command or ("mongod",)), "--port", str(port)),
            healthcheck=(*official.healthcheck, "--port", str(port)),
        )
        return run_by_official_image(
            super().export_hints(name, service, course),
            official,
            port=port,
            url=url,
            conventional_env={
                "MONGO_URL": url,
                "MONGODB_URI": url,
                "MONGO_HOST": "{host}",
                "MONGO_PORT": "{port}",
                "MONGO_DB": database,
            },
            secrets=secrets,
            seeds=tuple(service.seed),
        )


class MongoLiteKind(MongoBase):
    """The nx-27017 server, speaking MongoDB's wire protocol over SQLite files."""

    KIND = "mongodb-lite"
    settings_model = MongoLiteService
    # nx-27017, a Python server: ~31 MB measured idle.
    memory_estimate = KindEstimate(40, basis="~40 MB (the Python stand-in server)")
    spec: MongoLiteService

    def check_installed(self) -> None:
        if importlib.util.find_spec("nx_27017") is None:
            raise MissingBinaryError(
                "the MongoDB stand-in (nx-27017) is not installed",
                where=f"services.{self.name}",
                hint='pip install nx-27017, or use kind = "mongodb" with a real mongod',
            )

    def launch_spec(self) -> LaunchSpec:
        store = self.data_dir / "db"
        argv = [
            sys.executable,
            "-c",
            "from nx_27017.nx_27017 import main; main()",
            "--data-dir",
            str(store),
            "--host",
            LOCALHOST,
            "-p",
            str(self.port),
            "--log-file",
            str(self.data_dir / "nx-27017.log"),
            "--pid-file",
            str(self.data_dir / "nx-27017.pid"),
        ]
        return self._launch(argv)

    def _prepare_folders(self) -> None:
        super()._prepare_folders()
        self.make_data_folders("db")

    def url(self) -> str:
        return f"mongodb://{LOCALHOST}:{self.port}/{self.database}?directConnection=true"

    async def after_ready(self, report: Callable[[str], None]) -> None:
        if self.spec.seed:
            await asyncio.to_thread(self._seed_now, report)

    def _seed_now(self, report: Callable[[str], None]) -> None:
        if not self._seed_needed(report):
            return  # the common case: no driver loaded into the daemon at all
        client = _client(self.admin_url())
        try:
            self._seed(client[self.database], report)
        finally:
            client.close()

    def connection(self) -> Connection:
        return self._connection(None, None, STAND_IN_LABEL)

    def program_version(self) -> str:
        return f"nx-27017 {importlib.metadata.version('nx-27017')} (a {STAND_IN_LABEL})"

    @classmethod
    def export_hints(cls, name: str, service: MongoLiteService, course: CourseSpec) -> ExportHints:
        """Exports as real MongoDB where an official image runs it: the stand-in exists
        only for machines where mongod cannot be installed."""
        database = str(service.database or course.course.name).replace("-", "_")
        official = OfficialImage(
            image=f"mongo:{MONGO_SERIES}",
            port=27017,
            environment={"MONGO_INITDB_DATABASE": database},
            healthcheck=_MONGO_HEALTHCHECK,
            data_path="/data/db",
            init_path="/docker-entrypoint-initdb.d",
        )
        hints = cls._mongo_export_hints(name, service, course, official, ())
        return replace(
            hints,
            runs_as_kind=MongoKind.KIND,
            apt_packages=_MONGO_APT_NEEDS,
            install_commands=_MONGO_APT,
            notes=(
                f"{cls.KIND!r} is a {STAND_IN_LABEL}: it exports as real MongoDB (compose: "
                f"mongo:{MONGO_SERIES}; the course image and so Z2JH: MongoDB {MONGO_SERIES} "
                "from MongoDB's repository, the image's course.toml saying kind = "
                '"mongodb"); only Binder, which cannot change the repository\'s course.toml, '
                "keeps the stand-in",
            ),
        )


class MongoKind(MongoBase):
    """A real mongod with authentication; `replicas = N` starts an N-member replica set."""

    KIND = "mongodb"
    spec: MongoService
    settings_model = MongoService
    # mongod with the WiredTiger cache mostly empty (see expected_memory).
    memory_estimate = KindEstimate(100, basis="~100 MB per mongod")

    @property
    def port_count(self) -> int:
        return self.spec.replicas

    def member_ports(self) -> list[int]:
        ports = [self.port or 0]
        ports += list(self.endpoint.members if self.endpoint is not None else ())
        return ports

    @property
    def password(self) -> str:
        return self.context.secrets.get(f"{self.name}.password")

    @property
    def admin_password(self) -> str:
        return self.context.secrets.get(f"{self.name}.admin-password")

    def binary(self) -> str:
        found = shutil.which(self.spec.binary)
        if found is None:
            raise MissingBinaryError(
                f"MongoDB's server program {self.spec.binary!r} was not found",
                where=f"services.{self.name}.binary",
                hint="install MongoDB Community Server and put mongod on PATH (or give its "
                'path), or use kind = "mongodb-lite" for a stand-in',
            )
        return found

    def check_installed(self) -> None:
        self.binary()

    def program_version(self) -> str:
        program = self.binary()
        return f"{first_output_line([program, '--version'])} at {program}"

    @classmethod
    def expected_memory(
        cls, service: MongoService | None, kernels: int = DEFAULT_KERNELS
    ) -> tuple[int, str]:
        total, basis = super().expected_memory(service, kernels)
        if service is None:
            return total, basis
        # The WiredTiger cache (cache_size_gb) is added per member as it fills.
        cache = int(service.cache_size_gb * 1024)
        basis += f" + its {cache} MB cache as it fills"
        if service.replicas > 1:
            basis += f", x {service.replicas} replica set members"
        return (cls.memory_estimate.base_mb + cache) * service.replicas * MB, basis

    def needed_paths(self) -> list[Path]:
        return [*super().needed_paths(), Path(self.binary())]

    def _prepare_folders(self) -> None:
        super()._prepare_folders()
        self.make_data_folders(*(f"db{member}" for member in range(self.spec.replicas)))
        if self.spec.replicas > 1:
            account = self.run_as
            with self.data_folder() as folder:
                if nofollow.read_file(folder, "keyfile") is None:
                    secret = self.context.secrets.get(f"{self.name}.keyfile", 48)
                    nofollow.write_file(
                        folder,
                        "keyfile",
                        secret.encode(),
                        0o400,
                        account.uid if account else None,
                        account.gid if account else None,
                    )

    def _mongod_argv(self, member: int, port: int) -> list[str]:
        argv = [
            self.binary(),
            "--dbpath",
            str(self.data_dir / f"db{member}"),
            "--bind_ip",
            LOCALHOST,
            "--port",
            str(port),
            "--auth",
            "--wiredTigerCacheSizeGB",
            f"{self.spec.cache_size_gb:g}",
        ]
        if self.spec.replicas > 1:
            argv += ["--replSet", REPLICA_SET, "--keyFile", str(self.data_dir / "keyfile")]
        return argv

    def launch_spec(self) -> LaunchSpec:
        if self.spec.replicas == 1:
            return self._launch(self._mongod_argv(0, self.port or 0))
        # Several members live in one process group under a tiny launcher, so the
        # supervisor starts, probes and stops the replica set as one service.
        members = [shlex.join(self._mongod_argv(i, p)) for i, p in enumerate(self.member_ports())]
        argv = [sys.executable, "-m", "coursestack.members", *members]
        return self._launch(argv)

    def url(self) -> str:
        hosts = ",".join(f"{LOCALHOST}:{port}" for port in self.member_ports())
        options = f"authSource={self.database}"
        if self.spec.replicas > 1:
            options += f"&replicaSet={REPLICA_SET}"
        return f"mongodb://{self.spec.user}:{self.password}@{hosts}/{self.database}?{options}"

    async def after_ready(self, report: Callable[[str], None]) -> None:
        await asyncio.to_thread(self._set_up, report)

    def _set_up(self, report: Callable[[str], None]) -> None:
        import pymongo.errors

        client = _client(self.admin_url())
        try:
            if self.spec.replicas > 1:
                self._initiate_replica_set(client, report)
            # The localhost exception allows the first user only; later it exists already.
            with contextlib.suppress(pymongo.errors.OperationFailure):
                client.admin.command("createUser", "admin", pwd=self.admin_password, roles=["root"])
        finally:
            client.close()
        options = (
            {"replicaSet": REPLICA_SET} if self.spec.replicas > 1 else {"directConnection": True}
        )
        hosts = ",".join(f"{LOCALHOST}:{port}" for port in self.member_ports())
        admin = _client(
            f"mongodb://{hosts}/",
            username="admin",
            password=self.admin_password,
            authSource="admin",
            **options,
        )
        try:
            database = admin[self.database]
            roles = [{"role": "readWrite", "db": self.database}]
            try:
                database.command("createUser", self.spec.user, pwd=self.password, roles=roles)
            except pymongo.errors.OperationFailure:
                database.command("updateUser", self.spec.user, pwd=self.password, roles=roles)
            if self.spec.seed:
                self._seed(database, report)
        finally:
            admin.close()

    def _initiate_replica_set(self, client: Any, report: Callable[[str], None]) -> None:
        import time

        import pymongo.errors

        members = [
            {"_id": i, "host": f"{LOCALHOST}:{port}"} for i, port in enumerate(self.member_ports())
        ]
        try:
            client.admin.command("replSetInitiate", {"_id": REPLICA_SET, "members": members})
            report("initiating the replica set")
        except pymongo.errors.OperationFailure as error:
            if "already initialized" not in str(error) and error.code not in (13, 23):
                raise UserError(
                    f"replica set initiation failed: {error}", where=f"services.{self.name}"
                ) from None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.admin.command("hello").get("isWritablePrimary"):
                    return
            except pymongo.errors.PyMongoError:
                pass
            time.sleep(0.5)
        raise UserError(
            "the replica set elected no primary within 60 s",
            where=f"services.{self.name}",
            hint="see the service log",
        )

    def connection(self) -> Connection:
        return self._connection(self.spec.user, self.password)

    @classmethod
    def export_hints(cls, name: str, service: MongoService, course: CourseSpec) -> ExportHints:
        """The official `mongo` image, with the course user made by an init script."""
        database = str(service.database or course.course.name).replace("-", "_")
        admin_secret, user_secret = f"{name}-admin-password", f"{name}-password"
        create_user = InitFile(
            "10-course-user.sh",
            text=(
                "#!/bin/bash\n# The course's own user (generated by `coursestack export`)\n"
                "set -euo pipefail\n"
                f'password="$(cat {SECRETS_DIR}/{user_secret})"\n'
                'mongosh --quiet --norc --username "$MONGO_INITDB_ROOT_USERNAME" --password '
                '"$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin '
                f"--eval \"db.getSiblingDB('{database}').createUser({{user: '{service.user}', "
                f"pwd: '$password', roles: [{{role: 'readWrite', db: '{database}'}}]}})\"\n"
            ),
        )
        official = OfficialImage(
            image=f"mongo:{MONGO_SERIES}",
            port=27017,
            command=("mongod", "--wiredTigerCacheSizeGB", f"{service.cache_size_gb:g}"),
            environment={"MONGO_INITDB_ROOT_USERNAME": "admin", "MONGO_INITDB_DATABASE": database},
            secret_environment={"MONGO_INITDB_ROOT_PASSWORD_FILE": admin_secret},
            healthcheck=_MONGO_HEALTHCHECK,
            data_path="/data/db",
            init_path="/docker-entrypoint-initdb.d",
            init_files=(create_user,),
        )
        hints = cls._mongo_export_hints(
            name, service, course, official, (admin_secret, user_secret)
        )
        differences: tuple[Difference, ...] = ()
        if service.replicas > 1:
            differences = (
                Difference(
                    "replicas",
                    f"the official image runs one mongod: a single server, not a "
                    f"{service.replicas}-member replica set (the course image, run by "
                    "coursestack, starts the replica set)",
                ),
            )
        return replace(
            hints,
            apt_packages=_MONGO_APT_NEEDS,
            install_commands=_MONGO_APT,
            user_install_commands=_MONGO_USER_INSTALL,
            official_differences=differences,
        )


#: The official image's MongoDB release, and the same from MongoDB's own repositories.
MONGO_SERIES = "7.0"
_MONGO_HEALTHCHECK = ("mongosh", "--quiet", "--norc", "--eval", "db.adminCommand('ping').ok")
_MONGO_APT_NEEDS = ("curl", "gnupg", "ca-certificates")
_MONGO_APT = (
    "curl -fsSL https://www.mongodb.org/static/pgp/server-7.0.asc "
    "| gpg --dearmor -o /usr/share/keyrings/mongodb-server-7.0.gpg",
    'echo "deb [signed-by=/usr/share/keyrings/mongodb-server-7.0.gpg] '
    'https://repo.mongodb.org/apt/debian bookworm/mongodb-org/7.0 main" '
    "> /etc/apt/sources.list.d/mongodb-org-7.0.list",
    "apt-get update && apt-get install -y --no-install-recommends mongodb-org-server "
    "&& rm -rf /var/lib/apt/lists/*",
)
_MONGO_USER_INSTALL = (
    'mkdir -p "$HOME/.local/bin" && curl -fsSL '
    "https://fastdl.mongodb.org/linux/mongodb-linux-x86_64-ubuntu2204-7.0.14.tgz "
    "| tar -xz --strip-components=2 -C \"$HOME/.local/bin\" --wildcards '*/bin/mongod'",
)


def _mongoimport_script(seed: str, database: str) -> str:
    """A script the official image runs once: loads one JSON/JSONL seed file."""
    name = Path(seed).name
    array = "--jsonArray " if Path(seed).suffix.lower() == ".json" else ""
    return (
        f"#!/bin/bash\n# {name}, loaded as coursestack loads it (generated by "
        "`coursestack export`)\nset -euo pipefail\nauth=()\n"
        'if [ -n "${MONGO_INITDB_ROOT_USERNAME:-}" ]; then\n'
        '    auth=(--username "$MONGO_INITDB_ROOT_USERNAME" --password '
        '"$MONGO_INITDB_ROOT_PASSWORD" --authenticationDatabase admin)\nfi\n'
        f'mongoimport "${{auth[@]}}" --quiet --db {database} --collection '
        f"{Path(seed).stem} {array}--file {SEED_DIR}/{name}\n"
    )
