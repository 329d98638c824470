"""Backup, restore and reset with real PostgreSQL, the MongoDB stand-in and Jupyter.

The instance here is our own (not the shared sample instance): these tests wipe data.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymongo
import pytest
from bson import ObjectId
from psycopg import sql

from coursestack.backup.archive import MANIFEST, read_archive
from coursestack.backup.files import folder_members, replace_folder
from coursestack.errors import UserError
from coursestack.instances import Instance
from coursestack.state import StateFolder
from support import cli, open_folder

pytestmark = pytest.mark.slow


# -- helpers -----------------------------------------------------------------------------


def connection_info(instance: Instance, service: str) -> dict[str, Any]:
    document = json.loads(instance.state.connections_file.read_text())
    info: dict[str, Any] = document["services"][service]
    return info


def pg(instance: Instance) -> psycopg.Connection[Any]:
    info = connection_info(instance, "postgres")
    return psycopg.connect(
        host=info["host"],
        port=info["port"],
        user=info["user"],
        password=info["password"],
        dbname=info["database"],
        autocommit=True,
    )


def mongo(instance: Instance) -> Any:
    info = connection_info(instance, "mongo")
    client: Any = pymongo.MongoClient(info["url"], serverSelectionTimeoutMS=5000)
    return client


def tables(instance: Instance) -> dict[str, list[str]]:
    """Every table's rows, as sorted JSON text."""
    with pg(instance) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        return {
            name: sorted(
                r[0]
                for r in conn.execute(
                    sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(name))
                )
            )
            for name in names
        }


def collections(instance: Instance) -> dict[str, list[dict[str, Any]]]:
    client = mongo(instance)
    try:
        database = client[connection_info(instance, "mongo")["database"]]
        return {
            name: list(database[name].find({}, sort=[("_id", 1)]))
            for name in sorted(database.list_collection_names())
        }
    finally:
        client.close()


def notebooks(instance: Instance) -> dict[str, bytes]:
    folder = Path(connection_info(instance, "jupyter")["notebooks"])
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def snapshot(instance: Instance) -> dict[str, Any]:
    return {
        "tables": tables(instance),
        "collections": collections(instance),
        "notebooks": notebooks(instance),
    }


def pids(instance: Instance) -> dict[str, int | None]:
    result = cli("status", "--json", "--state", str(instance.state.root))
    return {s["name"]: s["pid"] for s in json.loads(result.stdout)["services"]}


def backups(instance: Instance) -> list[Path]:
    return sorted((instance.state.root / "backups").glob("*.coursestack.tar.gz"))


def rewrite(archive: Path, target: Path, change: Any) -> None:
    """Copy an archive member by member; `change(name, data)` may alter bytes or add."""
    with tarfile.open(archive, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            handle = source.extractfile(member)
            assert handle is not None
            data = change(member.name, handle.read())
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        extra = change("", b"")
        if extra:
            info = tarfile.TarInfo("services/jupyter/files/extra.ipynb")
            info.size = len(extra)
            out.addfile(info, io.BytesIO(extra))


@pytest.fixture(scope="module")
def instance() -> Iterator[Instance]:
    """Our own sample-course instance (the tests wipe its data)."""
    state = open_folder("backup-")
    cli("up", "--state", str(state))
    yield Instance("sample", StateFolder(state))
    cli("down", "--state", str(state), check=False)


@pytest.fixture(scope="module")
def backed_up(instance: Instance) -> tuple[Path, dict[str, Any]]:
    """A backup of the instance with a row, a document and a notebook edit of our own,
    and what the instance held when it was made."""
    with pg(instance) as conn:
        conn.execute("INSERT INTO students_notes (note) VALUES ('mine, before the backup')")
    client = mongo(instance)
    try:
        client["teaching"]["nobel_prizes"].insert_one(
            {
                "_id": ObjectId(),
                "year": 2024,
                "category": "test",
                "ratio": 0.25,
                "big": 2**40,
                "laureates": [{"name": "Ada", "country": "UK"}],
            }
        )
    finally:
        client.close()
    folder = Path(connection_info(instance, "jupyter")["notebooks"])
    (folder / "01-anscombe.ipynb").write_bytes(
        (folder / "01-anscombe.ipynb").read_bytes().replace(b"Anscombe", b"Anscombe (edited)")
    )
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "sub" / "mine.ipynb").write_bytes(b'{"cells": [], "nbformat": 4}\n\xc3\xa9')
    path = open_folder("archives-") / "round-trip.coursestack.tar.gz"
    result = cli("backup", "--state", str(instance.state.root), "--output", str(path))
    assert "Backup written" in result.stdout and path.is_file()
    return path, snapshot(instance)


@pytest.fixture
def archive(backed_up: tuple[Path, dict[str, Any]]) -> Path:
    return backed_up[0]


# -- round trip ----------------------------------------------------------------------------


def test_backup_wipe_restore_gives_back_tables_collections_and_notebook_bytes(
    instance: Instance, backed_up: tuple[Path, dict[str, Any]]
) -> None:
    archive, before = backed_up
    assert snapshot(instance) == before
    assert "mine, before the backup" in "".join(before["tables"]["students_notes"])
    assert any(d.get("category") == "test" for d in before["collections"]["nobel_prizes"])
    assert "sub/mine.ipynb" in before["notebooks"]

    root = instance.state.root
    cli("down", "--state", str(root))
    for service in ("postgres", "mongo"):
        shutil.rmtree(root / "data" / service)
    shutil.rmtree(Path(connection_info(instance, "jupyter")["notebooks"]))
    cli("up", "--state", str(root))
    wiped = snapshot(instance)
    assert wiped["tables"]["students_notes"] == [] and wiped["notebooks"] == {}
    assert wiped != before

    result = cli("restore", str(archive), "--state", str(root))
    assert "restored postgres" in result.stdout and "restored mongo" in result.stdout
    after = snapshot(instance)
    assert after["tables"] == before["tables"]
    assert after["collections"] == before["collections"]
    assert after["notebooks"] == before["notebooks"]
    # The wiped-and-reseeded data it replaced was backed up first.
    assert [p for p in backups(instance) if "before-restore" in p.name]
    # Seeds are recorded as applied: a restart does not load them on top.
    assert (root / "data" / "postgres" / "seeded.json").is_file()
    cli("restart", "postgres", "--state", str(root))
    assert tables(instance) == before["tables"]


def test_restore_into_a_fresh_state_folder_another_machine(
    instance: Instance, backed_up: tuple[Path, dict[str, Any]]
) -> None:
    archive, expected = backed_up
    fresh = Instance("sample", StateFolder(open_folder("machine-b-")))
    try:
        result = cli("restore", str(archive), "--state", str(fresh.state.root))
        assert "it is running" in result.stdout
        assert (
            connection_info(fresh, "postgres")["password"]
            != connection_info(instance, "postgres")["password"]
        )
        assert (
            connection_info(fresh, "postgres")["port"]
            != connection_info(instance, "postgres")["port"]
        )
        assert snapshot(fresh) == expected
        # Nothing was there before, so nothing needed backing up.
        assert backups(fresh) == []
    finally:
        cli("down", "--state", str(fresh.state.root), check=False)


# -- bad archives --------------------------------------------------------------------------


def test_truncated_archive_is_refused_before_anything_changes(
    instance: Instance, archive: Path, tmp_path: Path
) -> None:
    with pg(instance) as conn:
        conn.execute("INSERT INTO students_notes (note) VALUES ('after the backup')")
    before, listed = snapshot(instance), backups(instance)
    truncated = tmp_path / "truncated.coursestack.tar.gz"
    data = archive.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    result = cli("restore", str(truncated), "--state", str(instance.state.root), check=False)
    assert result.returncode == 1
    assert "truncated or corrupt" in result.stderr and "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(instance) == before and backups(instance) == listed
    checked = cli("restore", "--check", str(truncated), check=False)
    assert checked.returncode == 1 and "truncated" in checked.stderr


@pytest.mark.parametrize("cut", [1, 2, 4, 8, 12, 20, 33, 100])
def test_an_archive_cut_short_by_a_few_bytes_is_refused(
    archive: Path, tmp_path: Path, cut: int
) -> None:
    # The gzip trailer (CRC-32, length) and the tar end marker are the last bytes: a
    # reader that stops at the last member never sees them.
    truncated = tmp_path / f"cut-{cut}.coursestack.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:-cut])
    checked = cli("restore", "--check", str(truncated), check=False)
    assert checked.returncode == 1 and "truncated or corrupt" in checked.stderr, checked.stderr


def test_a_flipped_byte_anywhere_is_refused_and_nothing_changes(
    instance: Instance, archive: Path, tmp_path: Path
) -> None:
    before, listed = snapshot(instance), backups(instance)
    data = archive.read_bytes()
    size = len(data)
    # The header, the body, and the end (where deflate's zeros and gzip's trailer are).
    positions = sorted(
        {
            3,
            5,
            20,
            50,
            size // 3,
            size // 2,
            size - 200,
            size - 40,
            size - 9,
            size - 5,
            size - 1,
            *random.Random(7).sample(range(size), 6),
        }
    )
    for position in positions:
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path = tmp_path / f"flip-{position}.coursestack.tar.gz"
        path.write_bytes(bytes(damaged))
        checked = cli("restore", "--check", str(path), check=False)
        assert checked.returncode == 1, f"byte {position} of {size} flipped: accepted"
        assert "Traceback" not in checked.stderr
    for position in (size // 2, size - 5):  # and a real restore: refused, nothing changed
        result = cli(
            "restore",
            str(tmp_path / f"flip-{position}.coursestack.tar.gz"),
            "--state",
            str(instance.state.root),
            check=False,
        )
        assert result.returncode == 1 and "nothing was changed" in result.stderr
    assert snapshot(instance) == before and backups(instance) == listed


def test_tampered_or_padded_archive_is_refused_before_anything_changes(
    instance: Instance, archive: Path, tmp_path: Path
) -> None:
    before, listed = snapshot(instance), backups(instance)

    def tamper(name: str, data: bytes) -> bytes:
        return data.replace(b"Marie Curie", b"Marie Kurie") if name.endswith(".jsonl") else data

    tampered = tmp_path / "tampered.coursestack.tar.gz"
    rewrite(archive, tampered, tamper)
    result = cli("restore", str(tampered), "--state", str(instance.state.root), check=False)
    assert result.returncode == 1 and "does not match its checksum" in result.stderr

    padded = tmp_path / "padded.coursestack.tar.gz"
    rewrite(archive, padded, lambda name, data: data if name else b"{}")
    result = cli("restore", str(padded), "--state", str(instance.state.root), check=False)
    assert result.returncode == 1 and "does not list" in result.stderr
    assert snapshot(instance) == before and backups(instance) == listed


def test_archive_checks_without_services(tmp_path: Path, archive: Path) -> None:
    manifest = read_archive(archive)
    assert manifest.course == "sample"
    assert {"postgres", "mongo", "jupyter", "openrefine"} <= set(manifest.services)
    assert manifest.services["postgres"]["version"].startswith(("1", "9"))
    # Not gzip at all; a gzip of something else; a member escaping its folder.
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"hello")
    with pytest.raises(UserError, match="truncated or corrupt"):
        read_archive(junk)
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(gzip.compress(b"not a tar file" * 100))
    with pytest.raises(UserError):
        read_archive(plain)

    def escape(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        document = json.loads(data)
        document["members"]["../escape.txt"] = {"sha256": "0" * 64, "size": 0}
        return json.dumps(document).encode()

    unsafe = tmp_path / "unsafe.tar.gz"
    rewrite(archive, unsafe, escape)
    into = tmp_path / "into"
    with pytest.raises(UserError, match="unsafe"):
        read_archive(unsafe, into=into)
    assert not into.exists() and not (tmp_path / "escape.txt").exists()


def test_backup_of_another_course_is_refused(
    instance: Instance, archive: Path, tmp_path: Path
) -> None:
    def other_course(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        document = json.loads(data)
        document["course"] = "tm351"
        return json.dumps(document).encode()

    other = tmp_path / "other.coursestack.tar.gz"
    rewrite(archive, other, other_course)
    before, listed = snapshot(instance), backups(instance)
    result = cli("restore", str(other), "--state", str(instance.state.root), check=False)
    assert result.returncode == 1 and "of course 'tm351'" in result.stderr
    assert snapshot(instance) == before and backups(instance) == listed


def test_a_notebooks_folder_holding_the_state_folder_never_loses_it(tmp_path: Path) -> None:
    notebooks = tmp_path / "course"
    state = notebooks / "deep" / "state"
    (state / "data").mkdir(parents=True)
    (state / "data" / "cluster").write_text("precious")
    (notebooks / "a.ipynb").write_text("a")
    (notebooks / "deep" / "b.ipynb").write_text("b")
    members, _ = folder_members(notebooks, "files", [state])
    assert sorted(name for name, _ in members) == ["files/a.ipynb", "files/deep/b.ipynb"]
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / "c.ipynb").write_text("c")
    assert replace_folder(notebooks, staged, None, [state]) == 1
    left = sorted(p.relative_to(notebooks).as_posix() for p in notebooks.rglob("*") if p.is_file())
    assert left == ["c.ipynb", "deep/state/data/cluster"]


# -- reset -----------------------------------------------------------------------------------


def test_reset_postgres_reseeds_leaves_mongo_alone_and_keeps_a_backup(instance: Instance) -> None:
    root = str(instance.state.root)
    with pg(instance) as conn:
        conn.execute("INSERT INTO students_notes (note) VALUES ('lost by the reset?')")
        anscombe = conn.execute("SELECT count(*) FROM anscombe").fetchone()
    documents = collections(instance)
    before = pids(instance)
    result = cli("reset", "postgres", "--state", root)
    assert "postgres reset: ready" in result.stdout
    after = pids(instance)
    assert after["mongo"] == before["mongo"] and after["jupyter"] == before["jupyter"]
    assert after["postgres"] != before["postgres"]
    with pg(instance) as conn:
        assert conn.execute("SELECT count(*) FROM students_notes").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM anscombe").fetchone() == anscombe
    assert collections(instance) == documents
    kept = [p for p in backups(instance) if "before-reset-postgres" in p.name]
    assert len(kept) == 1 and set(read_archive(kept[0]).services) == {"postgres"}
    # And it really holds the row: restoring it brings the row back.
    cli("restore", str(kept[0]), "--state", root)
    with pg(instance) as conn:
        notes = [r[0] for r in conn.execute("SELECT note FROM students_notes")]
    assert "lost by the reset?" in notes
    assert pids(instance)["mongo"] == before["mongo"]


def test_reset_and_backup_of_unknown_service_say_so(instance: Instance) -> None:
    root = str(instance.state.root)
    result = cli("reset", "nosuch", "--state", root, check=False)
    assert result.returncode == 2 and "no service named 'nosuch'" in result.stderr
    result = cli("backup", "--only", "nosuch", "--state", root, check=False)
    assert result.returncode == 2 and "services: postgres" in result.stderr


@pytest.mark.skipif(shutil.which("openrefine") is None, reason="OpenRefine is not installed")
def test_openrefine_project_made_moments_ago_survives_backup_reset_restore(
    instance: Instance, tmp_path: Path
) -> None:
    import httpx

    root = str(instance.state.root)
    cli("start", "openrefine", "--state", root)
    base = connection_info(instance, "openrefine")["url"]

    def projects() -> list[str]:
        found = httpx.get(base + "command/core/get-all-project-metadata").json()
        return sorted(p["name"] for p in found["projects"].values())

    token = httpx.get(base + "command/core/get-csrf-token").json()["token"]
    httpx.post(
        base + "command/core/create-project-from-upload",
        params={"csrf_token": token},
        files={"project-file": ("t.csv", b"a,b\n1,2\n", "text/csv")},
        data={
            "project-name": "just made",
            "format": "text/line-based/*sv",
            "options": '{"separator": ","}',
        },
    )
    assert projects() == ["just made"]
    path = tmp_path / "refine.coursestack.tar.gz"
    # OpenRefine holds the new project in memory: the backup makes it save first.
    made = cli("backup", "--only", "openrefine", "--output", str(path), "--state", root)
    assert "running again" in made.stdout and projects() == ["just made"]
    assert any(n.endswith("metadata.json") for n in read_archive(path).members)
    cli("stop", "openrefine", "--state", root)
    # Stopped before the reset: it stays stopped (it starts on first use).
    assert "openrefine reset: stopped" in cli("reset", "openrefine", "--state", root).stdout
    assert not (instance.state.root / "data" / "openrefine").exists()
    cli("restore", str(path), "--state", root)
    cli("start", "openrefine", "--state", root)
    base = connection_info(instance, "openrefine")["url"]
    assert projects() == ["just made"]
    cli("stop", "openrefine", "--state", root)
