"""The `mongodb` kind with a real `mongod`: a single server with authentication, and a
three-member replica set. No mongod can be installed on this project's build machines,
so these skip (saying why) there, and run wherever `mongod` is on PATH."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest

from support import cli, open_folder

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("mongod") is None,
        reason="no real mongod on PATH (MongoDB cannot be installed from "
        "this machine's registries); the mongodb-lite stand-in is tested "
        "instead",
    ),
]


def course(replicas: int) -> Iterator[Path]:
    folder = open_folder("mongod-")
    (folder / "seed").mkdir()
    (folder / "seed" / "things.jsonl").write_text('{"n": 1}\n{"n": 2}\n')
    (folder / "course.toml").write_text(
        f'[course]\nname = "realmongo"\n[services.mongo]\nkind = "mongodb"\n'
        f'replicas = {replicas}\nseed = ["seed/things.jsonl"]\n'
    )
    cli("up", str(folder / "course.toml"), "--state", str(folder / "state"))
    yield folder / "state"
    cli("down", "--state", str(folder / "state"), check=False)


@pytest.fixture
def single() -> Iterator[Path]:
    yield from course(1)


@pytest.fixture
def replica_set() -> Iterator[Path]:
    yield from course(3)


def info(state: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((state / "connections.json").read_text())
    return data["services"]["mongo"]


def test_single_server_with_a_course_user_and_seed(single: Path) -> None:
    mongo = info(single)
    client: Any = pymongo.MongoClient(mongo["url"], serverSelectionTimeoutMS=5000)
    try:
        database = client[mongo["database"]]
        assert database.things.count_documents({}) == 2
        database.notes.insert_one({"kept": True})
    finally:
        client.close()
    anonymous: Any = pymongo.MongoClient(
        f"mongodb://127.0.0.1:{mongo['port']}/", serverSelectionTimeoutMS=5000
    )
    try:
        with pytest.raises(pymongo.errors.OperationFailure):
            anonymous[mongo["database"]].things.count_documents({})  # auth is on
    finally:
        anonymous.close()


def test_replica_set_of_three_members(replica_set: Path) -> None:
    mongo = info(replica_set)
    assert "replicaSet=rs0" in mongo["url"]
    client: Any = pymongo.MongoClient(mongo["url"], serverSelectionTimeoutMS=10000)
    try:
        hello = client.admin.command("hello")  # allowed without any role
        assert hello["setName"] == "rs0" and len(hello["hosts"]) == 3
        assert client[mongo["database"]].things.count_documents({}) == 2
    finally:
        client.close()
