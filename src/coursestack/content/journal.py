"""The update journal: every file an update changes, so an interrupted one completes.

Before the first student file is touched, the journal (`content/journal.json`) lists
each change as "this path goes from hash A to hash B", and both contents are kept in the
content store. Each file is replaced atomically (temporary file, fsync, rename), so a
file is always wholly before or wholly after. After a crash or `kill -9`, the next
update reads the journal and brings every listed file to its after state (skipping any
the student changed in the meantime), then records the delivery: the update completes
as a whole. An error while applying (a full disk, a permission) rolls every change
already made back to its before state instead. Every file is reached from its anchor
(the notebooks or the course folder) without following links (`anchored`): a link
swapped in while the update runs is left alone and reported, never written through.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from coursestack import nofollow
from coursestack.content import anchored
from coursestack.content.anchored import Place
from coursestack.content.record import ContentStore, DeliveryRecord
from coursestack.content.sources import digest
from coursestack.errors import UserError
from coursestack.nofollow import UnsafePath
from coursestack.state import atomic_write_json, read_json

#: Test seam: pause (sleep) after this many changes, so a test can kill -9 mid-update.
PAUSE_VARIABLE = "COURSESTACK_UPDATE_PAUSE_AFTER"
TEMPORARY_SUFFIX = ".coursestack-tmp"
NEW_FILE_MODE = 0o644
CHANGED_MEANWHILE = "changed while the update ran; left as you had it"


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
    #: The folder `path` is reached from without following links (the notebooks or the
    #: course folder); "" in journals of older versions: the file's own folder.
    anchor: str = ""

    @property
    def place(self) -> Place:
        path = Path(self.path)
        return Place.of(path, [Path(self.anchor)] if self.anchor else [])


#: The "before" hash of a file that was a link or special file when staged (never a
#: content hash): the journal leaves such a file alone.
NOT_A_FILE = "not-a-regular-file"


class Journal:
    """One update in progress: its changes, the record it leads to, its report."""

    def __init__(
        self,
        store: ContentStore,
        changes: list[Change],
        record: DeliveryRecord,
        report: dict[str, Any],
    ) -> None:
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
        return cls(
            store,
            changes,
            DeliveryRecord.from_dict(data.get("record", {})),
            dict(data.get("report", {})),
        )

    def write(self) -> None:
        """Make the journal durable: from here on the update completes as a whole."""
        atomic_write_json(
            self.store.journal_file,
            {
                "changes": [asdict(change) for change in self.changes],
                "record": self.record.as_dict(),
                "report": self.report,
            },
            0o600,
        )

    def apply(self) -> list[tuple[str, str]]:
        """Bring every file to its after state; the paths left alone, each with why
        (the student changed it meanwhile, or a link is in its way). On an error, roll
        back and raise UpdateFailed."""
        pause_after = int(os.environ.get(PAUSE_VARIABLE, "-1"))
        skipped: list[tuple[str, str]] = []
        done: list[Change] = []
        for count, change in enumerate(self.changes):
            if count == pause_after:
                self.store.journal_file.with_suffix(".paused").touch()
                time.sleep(3600)
            try:
                if not self._bring(change, change.after, change.before):
                    skipped.append((change.path, CHANGED_MEANWHILE))
                done.append(change)
            except UnsafePath as error:
                skipped.append((change.path, error.message))
            except OSError as error:
                self._roll_back(done)
                raise UpdateFailed(
                    f"could not write {change.path}: {error.strerror or error}",
                    where=change.path,
                    hint="nothing was changed (every file is as it was); "
                    "free some disk space or fix the permission, then run "
                    "`coursestack update` again",
                ) from None
        return skipped

    def finish(self) -> None:
        """Record the delivery, then forget the journal and copies nobody needs."""
        self.store.save_record(self.record)
        self.store.journal_file.unlink(missing_ok=True)
        self.store.keep_only({entry.sha for entry in self.record.files.values()})
        _remove_temporaries(change.place for change in self.changes)

    def _roll_back(self, done: list[Change]) -> None:
        for change in reversed(done):
            with contextlib.suppress(OSError, UnsafePath):
                self._bring(change, change.before, change.after)
        self.store.journal_file.unlink(missing_ok=True)
        _remove_temporaries(change.place for change in self.changes)

    def _bring(self, change: Change, wanted: str | None, other: str | None) -> bool:
        """Make `change.path` hold `wanted` if it holds `wanted` or `other` now; False if
        it holds something else (left alone). Raises UnsafePath for a link on the way."""
        place = change.place
        with anchored.folder_of(
            place, create=wanted is not None, uid=change.uid, gid=change.gid
        ) as fd:
            found = None if fd is None else anchored.read_in(fd, place.name, place.path)
            current = None if found is None else digest(found.data)
            if current == wanted:
                return True
            if current != other:
                return False
            assert fd is not None  # something was there, or wanted is a file (created)
            if wanted is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(place.name, dir_fd=fd)
                return True
            data = self.store.get(wanted)
            if data is None:
                raise OSError(f"the update's copy of {place.name} is missing")
            write_file(
                place.path,
                data,
                change.uid,
                change.gid,
                change.mode,
                fd,
                found.info.st_mtime if found is not None else 0.0,
            )
            return True


def back_up(data: bytes, info: os.stat_result, backup: Path) -> None:
    """Keep a copy of the student's file (content, mode and times) before it changes.

    `backup` lies in the state folder, which is root's, but is written the same careful
    way: nothing already there (a link included) is ever written through.
    """
    backup.parent.mkdir(parents=True, exist_ok=True)
    with nofollow.folder(backup.parent) as fd:
        nofollow.write_file(fd, backup.name, data, stat.S_IMODE(info.st_mode) & 0o777)
        os.utime(
            backup.name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=fd, follow_symlinks=False
        )


def write_file(
    path: Path, data: bytes, uid: int, gid: int, mode: int, dir_fd: int, old_mtime: float
) -> None:
    """Replace `path` (a name in the folder `dir_fd`) atomically with `data`, owned by
    uid:gid when run as root.

    The new modification time is at least a second after the old one: JupyterLab tells
    a student "the file has changed on disk" by comparing times, with some tolerance.
    A fresh file (O_EXCL) is written and renamed over the name, so whatever a student
    puts there meanwhile, a link included, is never written, chmod-ed or chown-ed.
    """
    as_root = anchored.running_as_root()
    nofollow.write_file(
        dir_fd,
        path.name,
        data,
        mode,
        uid if as_root else None,
        gid if as_root else None,
        temporary=f".{path.name}.{os.getpid()}{TEMPORARY_SUFFIX}",
        mtime_after=old_mtime,
    )
    with contextlib.suppress(OSError):
        os.fsync(dir_fd)


def _remove_temporaries(places: Iterable[Place]) -> None:
    """Temporary files a killed update left beside the files it was writing."""
    folders = {(place.anchor, place.folders): place for place in places}
    for place in folders.values():
        with contextlib.suppress(OSError, UnsafePath), anchored.folder_of(place) as fd:
            if fd is None:
                continue
            for name in os.listdir(fd):
                if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                    os.unlink(name, dir_fd=fd)


def mode_of(found: anchored.Found | None) -> int:
    """Permission bits of an existing file, else those of a new file."""
    return NEW_FILE_MODE if found is None else stat.S_IMODE(found.info.st_mode)
