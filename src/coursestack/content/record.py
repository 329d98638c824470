"""The delivery record: what was last delivered, kept in the state folder.

`content/record.json` maps each release path to the hash of the version last delivered
and where it went; `content/objects/` holds a copy of every such version, by hash. The
copy is the "base" of the three-way comparison: without it a student's edit and a
course change cannot be told apart.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coursestack.content.sources import digest
from coursestack.state import atomic_write_json, read_json


@dataclass(frozen=True)
class Delivered:
    """One file as last delivered: its content hash and its destination."""

    sha: str
    destination: str


@dataclass
class DeliveryRecord:
    """Everything last delivered (`exists` is False before the first update)."""

    files: dict[str, Delivered] = field(default_factory=dict)
    label: str = ""
    source: str = ""
    delivered_at: float = 0.0
    exists: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "source": self.source,
            "delivered_at": self.delivered_at,
            "files": {
                path: {"sha": entry.sha, "destination": entry.destination}
                for path, entry in sorted(self.files.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeliveryRecord:
        files = {
            path: Delivered(str(entry["sha"]), str(entry["destination"]))
            for path, entry in dict(data.get("files", {})).items()
        }
        return cls(
            files,
            str(data.get("label", "")),
            str(data.get("source", "")),
            float(data.get("delivered_at", 0.0)),
            True,
        )


class ContentStore:
    """The instance's `content/` folder: record, copies by hash, journal, backups."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.backups = root / "backups"
        self.record_file = root / "record.json"
        self.journal_file = root / "journal.json"
        self.lock_file = root / "update.lock"
        self.git_cache = root / "git"
        self.last_report = root / "last-report.json"

    def create(self) -> None:
        for folder in (self.root, self.objects, self.backups):
            folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)

    def load_record(self) -> DeliveryRecord:
        data = read_json(self.record_file)
        return DeliveryRecord.from_dict(data) if isinstance(data, dict) else DeliveryRecord()

    def save_record(self, record: DeliveryRecord) -> None:
        atomic_write_json(self.record_file, record.as_dict(), 0o600)

    def object_path(self, sha: str) -> Path:
        return self.objects / sha[:2] / sha

    def put(self, data: bytes, durable: bool = True, sha: str | None = None) -> str:
        """Keep a copy of `data` (whose hash is `sha`, if known); its hash. `durable`
        copies are on disk before this returns (the journal relies on them after a
        crash)."""
        sha = sha or digest(data)
        path = self.object_path(sha)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{sha}.{os.getpid()}.tmp")
            with open(temporary, "wb") as handle:
                handle.write(data)
                if durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(temporary, path)
        return sha

    def get(self, sha: str) -> bytes | None:
        try:
            return self.object_path(sha).read_bytes()
        except FileNotFoundError:
            return None

    def keep_only(self, wanted: set[str]) -> None:
        """Drop copies no record or journal needs any more."""
        if not self.objects.is_dir():
            return
        for path in self.objects.glob("*/*"):
            if path.name not in wanted:
                with contextlib.suppress(OSError):
                    path.unlink()

    def new_backup_folder(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.backups / stamp
        counter = 2
        while folder.exists():
            folder = self.backups / f"{stamp}-{counter}"
            counter += 1
        return folder
