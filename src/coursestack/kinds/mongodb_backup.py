"""A MongoDB service in a backup: every collection of the course database as JSON lines.

Documents are written in MongoDB Extended JSON (canonical mode, `bson.json_util`), which
keeps ObjectIds, dates, 64-bit integers and binary data exactly. Secondary indexes are
kept too (key and `unique`/`sparse`). Only pymongo is used, so the same code works with
a real `mongod` and with the nx-27017 stand-in. Restore drops every collection of the
course database, then inserts the backed-up documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS

from coursestack.errors import UserError
from coursestack.kinds.mongodb import MongoBase

_BATCH = 1000
_INDEX_OPTIONS = ("unique", "sparse", "expireAfterSeconds", "partialFilterExpression")


def _client(kind: MongoBase) -> Any:
    import pymongo

    return pymongo.MongoClient(kind.url(), serverSelectionTimeoutMS=10_000, connectTimeoutMS=10_000)


def _failure(kind: MongoBase, what: str, error: Exception) -> UserError:
    return UserError(
        f"{what} failed: {error}",
        where=f"services.{kind.name}",
        hint=f"see `coursestack logs {kind.name}`",
    )


def dump(kind: MongoBase, folder: Path) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    """Write each collection to `folder/NNNN.jsonl`; the manifest entry and the files."""
    import pymongo.errors

    folder.mkdir(parents=True, exist_ok=True)
    files: list[tuple[str, Path]] = []
    collections: list[dict[str, Any]] = []
    client = _client(kind)
    try:
        database = client[kind.database]
        info = client.admin.command("buildInfo")
        for number, name in enumerate(sorted(database.list_collection_names()), start=1):
            member = f"{number:04d}.jsonl"
            count = 0
            with open(folder / member, "w", encoding="utf-8") as out:
                for document in database[name].find({}, sort=[("_id", 1)], batch_size=_BATCH):
                    out.write(json_util.dumps(document, json_options=CANONICAL_JSON_OPTIONS))
                    out.write("\n")
                    count += 1
            indexes = [
                _index_spec(index)
                for index in database[name].list_indexes()
                if index.get("name") != "_id_"
            ]
            collections.append(
                {"name": name, "file": member, "documents": count, "indexes": indexes}
            )
            files.append((member, folder / member))
    except pymongo.errors.PyMongoError as error:
        raise _failure(kind, "reading the MongoDB database", error) from None
    finally:
        client.close()
    version = str(info.get("version", ""))
    if info.get("process") and info.get("process") != "mongod":
        version += f" ({info['process']})"
    entry = {
        "kind": kind.KIND,
        "version": version,
        "database": kind.database,
        "collections": collections,
    }
    return entry, files


def _index_spec(index: Any) -> dict[str, Any]:
    spec = {
        "key": [[field, direction] for field, direction in dict(index["key"]).items()],
        "name": str(index.get("name", "")),
    }
    for option in _INDEX_OPTIONS:
        if option in index:
            spec[option] = json.loads(json_util.dumps(index[option]))
    return spec


def check_entry(entry: dict[str, Any], members: dict[str, Any], where: str) -> None:
    """Refuse (before anything changes) an entry whose collections make no sense."""
    collections = entry.get("collections")
    if not isinstance(collections, list) or any(
        not isinstance(c, dict)
        or not isinstance(c.get("name"), str)
        or str(c.get("file")) not in members
        for c in collections
    ):
        raise UserError(
            "the backup archive is damaged: its MongoDB collection list is "
            "malformed; nothing was changed",
            where=where,
            hint="use another backup",
        )


def restore(kind: MongoBase, entry: dict[str, Any], folder: Path) -> int:
    """Replace the course database's collections with the backup's; documents restored."""
    import pymongo
    import pymongo.errors

    restored = 0
    client = _client(kind)
    try:
        database = client[kind.database]
        for name in database.list_collection_names():
            database.drop_collection(name)
        for collection in entry["collections"]:
            target = database[collection["name"]]
            batch: list[Any] = []
            with open(folder / collection["file"], encoding="utf-8") as source:
                for line in source:
                    if not line.strip():
                        continue
                    batch.append(json_util.loads(line, json_options=CANONICAL_JSON_OPTIONS))
                    if len(batch) >= _BATCH:
                        target.insert_many(batch, ordered=True)
                        restored += len(batch)
                        batch = []
            if batch:
                target.insert_many(batch, ordered=True)
                restored += len(batch)
            if not collection["documents"]:
                database.create_collection(collection["name"])
            for index in collection.get("indexes", []):
                options = {
                    k: json_util.loads(json.dumps(index[k])) for k in _INDEX_OPTIONS if k in index
                }
                if index.get("name"):
                    options["name"] = index["name"]
                keys = [(str(k), d) for k, d in index["key"]]
                target.create_index(keys, **options)
    except pymongo.errors.PyMongoError as error:
        raise _failure(kind, "restoring the MongoDB database", error) from None
    finally:
        client.close()
    return restored
