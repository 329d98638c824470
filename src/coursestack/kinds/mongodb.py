"""The `mongodb` kind (a real `mongod`, or a replica set) and `mongodb-lite`, a
MongoDB-wire-compatible stand-in (the nx-27017 server) for machines where MongoDB
cannot be installed. The stand-in is always labelled as such: it is not MongoDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from coursestack import mongo_wire, nofollow
from coursestack.errors import MissingBinaryError, UserError
from coursestack.kinds.base import LOCALHOST, Connection, Kind
from coursestack.procs import LaunchSpec
from coursestack.seeding import SeedLedger, read_documents, seed_checksum
from coursestack.spec import MongoLiteService, MongoService

STAND_IN_LABEL = "MongoDB-compatible stand-in, not MongoDB"
REPLICA_SET = "rs0"


def _client(uri: str, **options: Any) -> Any:
    import pymongo

    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=2000, connectTimeoutMS=2000,
                               **options)


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
        raise UserError(f"seed failed: {error}", where=str(files[len(created) - 1]),
                        hint="fix the seed file; nothing of the seed was kept") from None


class _MongoBase(Kind[Any]):
    default_port: ClassVar[int | None] = 27017
    default_stop_timeout: ClassVar[float] = 20.0

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

    def _connection(self, user: str | None, password: str | None, label: str = "") -> Connection:
        conventional = {"MONGO_URL": self.url(), "MONGODB_URI": self.url(),
                        "MONGO_HOST": LOCALHOST, "MONGO_PORT": str(self.port),
                        "MONGO_DB": self.database}
        extra = {"label": label} if label else {}
        return Connection(self.name, self.spec.kind, LOCALHOST, self.port, self.url(), user,
                          password, self.database, conventional_env=conventional, extra=extra)


class MongoLiteKind(_MongoBase):
    """The nx-27017 server, speaking MongoDB's wire protocol over SQLite files."""

    KIND = "mongodb-lite"
    spec: MongoLiteService

    def check_installed(self) -> None:
        if importlib.util.find_spec("nx_27017") is None:
            raise MissingBinaryError("the MongoDB stand-in (nx-27017) is not installed",
                                     where=f"services.{self.name}",
                                     hint="pip install nx-27017, or use kind = \"mongodb\" "
                                     "with a real mongod")

    def launch_spec(self) -> LaunchSpec:
        store = self.data_dir / "db"
        argv = [sys.executable, "-c", "from nx_27017.nx_27017 import main; main()",
                "--data-dir", str(store), "--host", LOCALHOST, "-p", str(self.port),
                "--log-file", str(self.data_dir / "nx-27017.log"),
                "--pid-file", str(self.data_dir / "nx-27017.pid")]
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


class MongoKind(_MongoBase):
    """A real mongod with authentication; `replicas = N` starts an N-member replica set."""

    KIND = "mongodb"
    spec: MongoService

    @property
    def port_count(self) -> int:
        return self.spec.replicas

    def member_ports(self) -> list[int]:
        ports = [self.port or 0]
        ports += [self.context.ports[f"{self.name}:{i}"] for i in range(1, self.spec.replicas)]
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
                'path), or use kind = "mongodb-lite" for a stand-in')
        return found

    def check_installed(self) -> None:
        self.binary()

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
                    nofollow.write_file(folder, "keyfile", secret.encode(), 0o400,
                                        account.uid if account else None,
                                        account.gid if account else None)

    def _mongod_argv(self, member: int, port: int) -> list[str]:
        argv = [self.binary(), "--dbpath", str(self.data_dir / f"db{member}"),
                "--bind_ip", LOCALHOST, "--port", str(port), "--auth",
                "--wiredTigerCacheSizeGB", f"{self.spec.cache_size_gb:g}"]
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
                client.admin.command("createUser", "admin", pwd=self.admin_password,
                                     roles=["root"])
        finally:
            client.close()
        options = {"replicaSet": REPLICA_SET} if self.spec.replicas > 1 else {
            "directConnection": True}
        hosts = ",".join(f"{LOCALHOST}:{port}" for port in self.member_ports())
        admin = _client(f"mongodb://{hosts}/", username="admin", password=self.admin_password,
                        authSource="admin", **options)
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

        members = [{"_id": i, "host": f"{LOCALHOST}:{port}"}
                   for i, port in enumerate(self.member_ports())]
        try:
            client.admin.command("replSetInitiate", {"_id": REPLICA_SET, "members": members})
            report("initiating the replica set")
        except pymongo.errors.OperationFailure as error:
            if "already initialized" not in str(error) and error.code not in (13, 23):
                raise UserError(f"replica set initiation failed: {error}",
                                where=f"services.{self.name}") from None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if client.admin.command("hello").get("isWritablePrimary"):
                    return
            except pymongo.errors.PyMongoError:
                pass
            time.sleep(0.5)
        raise UserError("the replica set elected no primary within 60 s",
                        where=f"services.{self.name}", hint="see the service log")

    def connection(self) -> Connection:
        return self._connection(self.spec.user, self.password)
