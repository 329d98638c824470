"""The update journal: every file an update changes, so an interrupted one completes.

Before the first student file is touched, the journal (`content/journal.json`) lists
each change as "this path goes from hash A to hash B", and both contents are kept in the
content store. Each file is replaced atomically (temporary file, fsync, rename), so a
file is always wholly before or wholly after. After a crash or `kill -9`, the next
update reads the journal and brings every listed file to its after state (skipping any
the student changed in the meantime), then records the delivery: the update completes
as a whole. An error while applying (a full disk, a permission) rolls every change
already made back to its before state instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coursestack.content.record import ContentStore, DeliveryRecord
from coursestack.content.sources import digest
from coursestack.errors import UserError
from coursestack.state import atomic_write_json, read_json

#: Test seam: pause (sleep) after this many changes, so a test can kill -9 mid-update.
PAUSE_VARIABLE = "COURSESTACK_UPDATE_PAUSE_AFTER"
TEMPORARY_SUFFIX = ".coursestack-tmp"
NEW_FILE_MODE = 0o644
#: Open without following a final symbolic link (Windows has no such flag, nor such links
#: a student makes by accident).
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UpdateFailed(UserError):
    """Writing the update failed; every file was put back as it was."""


@dataclass(frozen=True)
class Change:
    """One file going from `before` to `after` (content hashes; None: no file)."""

    path: str
    before: str | None
    after: str | None
    uid: int
    gid: int
    mode: int
    #: Where the student's previous version was copied ("" if there was none).
    backup: str = ""


#: What file_hash says of something that is not a regular file (never a content hash).
NOT_A_FILE = "not-a-regular-file"


def file_hash(path: Path) -> str | None:
    """The content hash of the regular file at `path` (links are not followed), None if
    there is nothing there."""
    try:
        fd = os.open(path, os.O_RDONLY | NO_FOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:  # a link (ELOOP), or something we may not read
        return NOT_A_FILE
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return NOT_A_FILE
        return digest(handle.read())


class Journal:
    """One update in progress: its changes, the record it leads to, its report."""

    def __init__(self, store: ContentStore, changes: list[Change], record: DeliveryRecord,
                 report: dict[str, Any]) -> None:
        self.store = store
        self.changes = changes
        self.record = record
        self.report = report

    @classmethod
    def pending(cls, store: ContentStore) -> Journal | None:
        """The journal of an update that did not finish, if there is one."""
        data = read_json(store.journal_file)
        if not isinstance(data, dict):
            return None
        changes = [Change(**entry) for entry in data.get("changes", [])]
        return cls(store, changes, DeliveryRecord.from_dict(data.get("record", {})),
                   dict(data.get("report", {})))

    def write(self) -> None:
        """Make the journal durable: from here on the update completes as a whole."""
        atomic_write_json(self.store.journal_file,
                          {"changes": [asdict(change) for change in self.changes],
                           "record": self.record.as_dict(), "report": self.report}, 0o600)

    def apply(self) -> list[str]:
        """Bring every file to its after state; paths skipped because the student changed
        them meanwhile. On an error, roll back and raise UpdateFailed."""
        pause_after = int(os.environ.get(PAUSE_VARIABLE, "-1"))
        skipped: list[str] = []
        done: list[Change] = []
        for count, change in enumerate(self.changes):
            if count == pause_after:
                self.store.journal_file.with_suffix(".paused").touch()
                time.sleep(3600)
            try:
                if not self._bring(change, change.after, change.before):
                    skipped.append(change.path)
                done.append(change)
            except OSError as error:
                self._roll_back(done)
                raise UpdateFailed(f"could not write {change.path}: "
                                   f"{error.strerror or error}",
                                   where=change.path,
                                   hint="nothing was changed (every file is as it was); "
                                   "free some disk space or fix the permission, then run "
                                   "`coursestack update` again") from None
        return skipped

    def finish(self) -> None:
        """Record the delivery, then forget the journal and copies nobody needs."""
        self.store.save_record(self.record)
        self.store.journal_file.unlink(missing_ok=True)
        self.store.keep_only({entry.sha for entry in self.record.files.values()})
        _remove_temporaries(Path(change.path) for change in self.changes)

    def _roll_back(self, done: list[Change]) -> None:
        for change in reversed(done):
            with contextlib.suppress(OSError):
                self._bring(change, change.before, change.after)
        self.store.journal_file.unlink(missing_ok=True)
        _remove_temporaries(Path(change.path) for change in self.changes)

    def _bring(self, change: Change, wanted: str | None, other: str | None) -> bool:
        """Make `change.path` hold `wanted` if it holds `wanted` or `other` now; False if
        it holds something else (left alone)."""
        path = Path(change.path)
        current = file_hash(path)
        if current == wanted:
            return True
        if current != other:
            return False
        if wanted is None:
            path.unlink()
            return True
        data = self.store.get(wanted)
        if data is None:
            raise OSError(f"the update's copy of {path.name} is missing")
        write_file(path, data, change.uid, change.gid, change.mode)
        return True


def back_up(path: Path, backup: Path) -> None:
    """Copy the student's file before it changes (content and mode)."""
    backup.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, backup, follow_symlinks=False)


def write_file(path: Path, data: bytes, uid: int, gid: int, mode: int) -> None:
    """Replace `path` atomically with `data`, owned by uid:gid (when we may chown).

    The new modification time is at least a second after the old one: JupyterLab tells
    a student "the file has changed on disk" by comparing times, with some tolerance.
    """
    _make_folders(path.parent, uid, gid)
    try:
        old_mtime = os.lstat(path).st_mtime
    except FileNotFoundError:
        old_mtime = 0.0
    temporary = path.parent / f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}"
    # A fresh file (O_EXCL), changed through its descriptor only: whatever a student puts
    # at that name meanwhile, a link included, is never written, chmod-ed or chown-ed.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_FOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            _set_attributes(handle.fileno(), temporary, uid, gid, mode, old_mtime)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)


def _set_attributes(fd: int, path: Path, uid: int, gid: int, mode: int,
                    old_mtime: float) -> None:
    """Owner, permissions and a modification time later than `old_mtime`."""
    if _may_chown() and (uid, gid) != (os.geteuid(), os.getegid()):
        os.fchown(fd, uid, gid)
    now = time.time()
    times = (now, max(now, old_mtime + 1.0))
    if hasattr(os, "fchmod") and os.utime in os.supports_fd:
        os.fchmod(fd, mode)
        os.utime(fd, times)
    else:  # Windows: by path (no links there that a student could swap in)
        os.chmod(path, mode)
        os.utime(path, times)


def _make_folders(folder: Path, uid: int, gid: int) -> None:
    missing: list[Path] = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for created in reversed(missing):
        created.mkdir(mode=0o755)
        if _may_chown():
            os.chown(created, uid, gid, follow_symlinks=False)


def _may_chown() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_temporaries(paths: Iterable[Path]) -> None:
    """Temporary files a killed update left beside the files it was writing."""
    for folder in {path.parent for path in paths}:
        with contextlib.suppress(OSError):
            for leftover in folder.glob(f".*{TEMPORARY_SUFFIX}"):
                leftover.unlink()


def mode_of(path: Path) -> int:
    """Permission bits of an existing file, else those of a new file."""
    try:
        return stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        return NEW_FILE_MODE
