"""Folders in a backup: the notebooks folder, OpenRefine's workspace, a raw data folder.

A folder's regular files become archive members under a prefix, byte for byte (symbolic
links and special files are skipped and reported). Restoring makes the folder hold
exactly the backed-up files: the folder itself is kept (its owner, its permissions), its
old content is replaced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from coursestack import nofollow
from coursestack.privileges import RunAs


def folder_members(
    folder: Path, prefix: str, exclude: Iterable[Path] = ()
) -> tuple[list[tuple[str, Path]], list[str]]:
    """(member name, file) for every regular file under `folder`, and what was skipped.

    Folders in `exclude` (the instance's state folder, if a notebooks folder holds it)
    are left out.
    """
    members: list[tuple[str, Path]] = []
    skipped: list[str] = []
    if not folder.is_dir():
        return members, skipped
    excluded = {path.resolve() for path in exclude}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        here = Path(root)
        dirs[:] = [d for d in dirs if (here / d).resolve() not in excluded]
        for name in sorted(files):
            path = here / name
            relative = path.relative_to(folder).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                members.append((f"{prefix}/{relative}", path))
            else:
                skipped.append(relative)
        for name in list(dirs):
            if (here / name).is_symlink():
                skipped.append((here / name).relative_to(folder).as_posix())
                dirs.remove(name)
    return members, skipped


def replace_folder(
    target: Path, staged: Path | None, run_as: RunAs | None, keep: Iterable[Path] = ()
) -> int:
    """Make `target` hold exactly the files of `staged` (None: nothing); return the count.

    Folders in `keep` (the instance's state folder) survive, wherever they are inside.
    The service account can change `target` while this runs (coursestack runs as root),
    so everything inside is removed and made through descriptors that follow no link
    (`coursestack.nofollow`); new files and folders belong to the account from the start.
    """
    target.mkdir(parents=True, exist_ok=True)
    kept, around_kept = _identities(keep)
    uid, gid = (run_as.uid, run_as.gid) if run_as is not None else (None, None)
    count = 0
    with nofollow.folder(target) as top:
        _empty(top, kept, around_kept)
        if staged is None or not staged.is_dir():
            return 0
        for root, _dirs, files in os.walk(staged):
            here = Path(root)
            relative = here.relative_to(staged)
            nofollow.make_folders(top, str(relative), 0o700, uid, gid)
            destination = top if relative == Path(".") else _open_below(top, relative)
            try:
                for name in files:
                    _copy_in(here / name, destination, name, uid, gid)
                    count += 1
            finally:
                if destination != top:
                    os.close(destination)
    return count


def _identities(paths: Iterable[Path]) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """(device, inode) of each path that exists, and of every folder above them."""
    kept: set[tuple[int, int]] = set()
    around: set[tuple[int, int]] = set()
    for path in paths:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            kept.add((info.st_dev, info.st_ino))
            for parent in Path(path).resolve().parents:
                above = os.stat(parent)
                around.add((above.st_dev, above.st_ino))
    return kept, around


def _open_below(top: int, relative: Path) -> int:
    fd = os.dup(top)
    for part in relative.parts:
        child = nofollow.open_child_folder(fd, part)
        os.close(fd)
        fd = child
    return fd


def _copy_in(source: Path, folder: int, name: str, uid: int | None, gid: int | None) -> None:
    fd = os.open(
        name,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=folder,
    )
    with os.fdopen(fd, "wb") as out, open(source, "rb") as data:
        if uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
        shutil.copyfileobj(data, out, 1 << 20)
    stamp = os.stat(source)
    with contextlib.suppress(OSError):
        os.utime(
            name, ns=(stamp.st_atime_ns, stamp.st_mtime_ns), dir_fd=folder, follow_symlinks=False
        )


def _empty(folder: int, kept: set[tuple[int, int]], around_kept: set[tuple[int, int]]) -> None:
    with os.scandir(folder) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
        identity = (info.st_dev, info.st_ino)
        if stat.S_ISDIR(info.st_mode) and identity in kept:
            continue
        if stat.S_ISDIR(info.st_mode) and identity in around_kept:
            child = nofollow.open_child_folder(folder, name)
            try:
                _empty(child, kept, around_kept)
            finally:
                os.close(child)
            continue
        nofollow.remove(folder, name)
