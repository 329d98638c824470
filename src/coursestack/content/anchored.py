"""The update's reads and writes in the student's folders: never through a link.

Run as root (a shared server), an update writes into a notebooks folder the instance's
service account may change, and into the course folder beside the spec. Between the
update's checks and its writes, that account could swap `notebooks/week1` for a link to
`/etc`, or a notebook for a link to `/etc/shadow`. So every file is reached from its
*anchor* (the notebooks folder or the course folder, the folders the spec names) through
descriptors: each folder on the way opened `O_NOFOLLOW|O_DIRECTORY` relative to the one
above (`coursestack.nofollow`), the file itself read, written, renamed or removed
relative to its folder's descriptor. A link anywhere below the anchor is refused
(`UnsafePath`), never followed; the update then leaves that file alone and says so.

The anchor itself is the spec's choice: run as root, a link there is refused too (the
account may be able to plant it); run as the student, it is followed (their own link to
their own folder is theirs to make).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from coursestack import nofollow
from coursestack.nofollow import UnsafePath

FOLDER_MODE = 0o755
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


def running_as_root() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class Place:
    """A file below an anchor folder: `anchor / folders... / name`."""

    anchor: Path
    folders: tuple[str, ...]
    name: str

    @classmethod
    def of(cls, path: Path, anchors: Iterable[Path]) -> Place:
        """`path` below the innermost of `anchors` that holds it (by name, no disk);
        below its own folder if none does."""
        best: Path | None = None
        for anchor in anchors:
            if (
                path.is_relative_to(anchor)
                and path != anchor
                and (best is None or anchor.is_relative_to(best))
            ):
                best = anchor
        if best is None:
            return cls(path.parent, (), path.name)
        parts = path.relative_to(best).parts
        return cls(best, tuple(parts[:-1]), parts[-1])

    @property
    def path(self) -> Path:
        return self.anchor.joinpath(*self.folders, self.name)


@dataclass(frozen=True)
class Found:
    """A regular file read through its descriptor: content and metadata."""

    data: bytes
    info: os.stat_result


def _open_anchor(anchor: Path, create: bool, uid: int | None, gid: int | None) -> int | None:
    if not running_as_root():
        anchor = anchor.resolve()
    try:
        return nofollow.open_folder(anchor)
    except FileNotFoundError:
        if not create:
            return None
    # A missing anchor is made in its parent, which is above the service-writable folders.
    anchor.parent.mkdir(parents=True, exist_ok=True)
    with nofollow.folder(anchor.parent) as parent:
        return nofollow.make_folder(parent, anchor.name, FOLDER_MODE, uid, gid)


def _descend(place: Place, create: bool, uid: int | None, gid: int | None) -> int | None:
    """A descriptor of the folder holding `place`, None if part of it is missing."""
    fd = _open_anchor(place.anchor, create, uid, gid)
    if fd is None:
        return None
    try:
        shown = place.anchor
        for part in place.folders:
            shown = shown / part
            try:
                child = nofollow.open_child_folder(fd, part, shown=shown)
            except FileNotFoundError:
                if not create:
                    os.close(fd)
                    return None
                child = nofollow.make_folder(fd, part, FOLDER_MODE, uid, gid, owners={os.geteuid()})
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def folder_of(
    place: Place, create: bool = False, uid: int | None = None, gid: int | None = None
) -> Iterator[int | None]:
    """The descriptor of the folder holding `place` (None: missing and not `create`).

    With `create`, missing folders are made and, run as root, given to uid:gid on their
    descriptor. Raises UnsafePath for a link or a non-folder on the way.
    """
    fd = _descend(place, create, uid if running_as_root() else None, gid)
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def read_in(dir_fd: int, name: str, shown: Path | str) -> Found | None:
    """Regular file `name` in `dir_fd`, never through a link; None if there is none.

    Raises UnsafePath for a link, a folder or a special file, and for a file with
    several hard links belonging to someone other than the folder's owner (a hard link
    to a root-only file must not end up in a backup or a report).
    """
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise UnsafePath(
                f"refused to read {shown}: it is a link or special file", where=str(shown)
            ) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "folder" if stat.S_ISDIR(info.st_mode) else "special file"
            raise UnsafePath(f"refused to read {shown}: it is a {kind}", where=str(shown))
        trusted = {os.fstat(dir_fd).st_uid} | (set() if running_as_root() else {os.geteuid()})
        if info.st_nlink > 1 and info.st_uid not in trusted:
            raise UnsafePath(
                f"refused to read {shown}: a hard link to a file of uid {info.st_uid}",
                where=str(shown),
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return Found(handle.read(), info)
    finally:
        os.close(fd)


def read(place: Place) -> Found | None:
    """The regular file at `place`, reached without following any link (see read_in)."""
    with folder_of(place) as fd:
        return None if fd is None else read_in(fd, place.name, place.path)
