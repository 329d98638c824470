"""Root's file operations inside folders a service account can change: never through a link.

When coursestack runs as root, each instance's services run as its own account, which
owns its data folder and may write a course team's notebooks folder (ACL). Whatever the
daemon (root) does there could be turned against it by that account: a folder swapped
for a symbolic link to `/etc`, a file swapped for a link to a root-only file, just
before root writes, chowns or reads it. So every such operation here works on
descriptors: the folder is opened without following links (`O_NOFOLLOW`), its owner is
checked on the open descriptor, and everything below it is done relative to that
descriptor (`dir_fd=`, `follow_symlinks=False`), on objects opened the same way. A
link is refused, never followed; ownership is changed with `fchown` on the object that
was checked, never by path.

The folders *above* the service-writable one (the state folder, `data/`) belong to
root and the account cannot change them, so they are opened by path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

from coursestack.errors import UserError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Regular files are opened for their metadata only: nonblocking (a FIFO never hangs us),
#: never as a controlling terminal.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class UnsafePath(UserError):
    """A path root was about to act on is a link or belongs to someone unexpected."""


def _refuse(path: Path | str, why: str) -> UnsafePath:
    return UnsafePath(
        f"refused to act on {path}: {why}",
        where=str(path),
        hint="something replaced part of this folder (a link, or a folder of "
        "another owner); coursestack follows no link here. Remove the odd "
        "entry, or restore the folder from a backup",
    )


def open_folder(path: Path, owners: Collection[int] | None = None) -> int:
    """A descriptor of `path`: its last component opened without following a link.

    `owners`: the uids it may belong to (None: anyone). The caller closes it.
    """
    parent = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return open_child_folder(parent, path.name, owners, shown=path)
    finally:
        os.close(parent)


def open_child_folder(
    dir_fd: int, name: str, owners: Collection[int] | None = None, shown: Path | str | None = None
) -> int:
    """A descriptor of folder `name` inside `dir_fd`, refusing links and foreign owners."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refuse(shown or name, "it is not a folder (a link?)") from None
        raise
    owner = os.fstat(fd).st_uid
    if owners is not None and owner not in owners:
        os.close(fd)
        raise _refuse(shown or name, f"it belongs to uid {owner}")
    return fd


@contextlib.contextmanager
def folder(path: Path, owners: Collection[int] | None = None) -> Iterator[int]:
    """`open_folder` as a context manager."""
    fd = open_folder(path, owners)
    try:
        yield fd
    finally:
        os.close(fd)


def make_folder(
    dir_fd: int,
    name: str,
    mode: int,
    uid: int | None,
    gid: int | None,
    owners: Collection[int] | None = None,
) -> int:
    """Folder `name` inside `dir_fd`, created if missing, handed to uid:gid when new.

    Returns its descriptor. An existing one must not be a link, and must belong to one
    of `owners` (or to uid); a new one is given away on its descriptor, so what is given
    away is the folder just made, never what a link points to.
    """
    created = False
    try:
        os.mkdir(name, mode, dir_fd=dir_fd)
        created = True
    except FileExistsError:
        pass
    fd = open_child_folder(dir_fd, name)
    info = os.fstat(fd)
    allowed = set(owners or ()) | ({uid} if uid is not None else {os.geteuid()})
    if created and info.st_uid == os.geteuid():
        if uid is not None and info.st_uid != uid:
            os.fchown(fd, uid, gid if gid is not None else -1)
        os.fchmod(fd, mode)
    elif info.st_uid not in allowed:
        os.close(fd)
        raise _refuse(name, f"it belongs to uid {info.st_uid}")
    return fd


def make_folders(base: int, relative: str, mode: int, uid: int | None, gid: int | None) -> None:
    """`mkdir -p` of `relative` below the folder `base` (each new part handed to uid)."""
    fd = os.dup(base)
    try:
        for part in Path(relative).parts:
            child = make_folder(fd, part, mode, uid, gid)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def _keeping_acl_grants(dir_fd: int, mode: int) -> int:
    """`mode` for a new file in folder `dir_fd`. Where the folder has a default ACL (a
    course team's notebooks folder shared with the service account), a file's group bits
    are its ACL mask: 0644 would cut the account's `rw` entry to read-only, so the group
    bits get the owner's read/write and the ACL entries alone decide who may write."""
    try:
        os.getxattr(dir_fd, "system.posix_acl_default")
    except OSError:  # no default ACL (ENODATA), or no ACL support at all
        return mode
    return mode | ((mode & 0o600) >> 3)


def write_file(
    dir_fd: int,
    name: str,
    data: bytes,
    mode: int,
    uid: int | None = None,
    gid: int | None = None,
    *,
    temporary: str | None = None,
    mtime_after: float | None = None,
) -> None:
    """Replace file `name` in `dir_fd` atomically with `data` (a new file, never a link's
    target): written under a fresh name with O_EXCL, then renamed over `name`.

    `temporary`: that fresh name (a stale file of that name is removed first);
    `mtime_after`: the new file's modification time is at least a second after it.
    """
    mode = _keeping_acl_grants(dir_fd, mode)
    if temporary is None:
        temporary = f".{name}.{secrets.token_hex(6)}.tmp"
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=dir_fd)
    fd = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        mode,
        dir_fd=dir_fd,
    )
    try:
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(fd)
        os.fchmod(fd, mode)
        if uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
        if mtime_after is not None:
            now = time.time()
            os.utime(fd, (now, max(now, mtime_after + 1.0)))
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def read_file(dir_fd: int, name: str) -> bytes | None:
    """The content of regular file `name` in `dir_fd`; None if missing or not a file."""
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO):
            return None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def remove(dir_fd: int, name: str) -> None:
    """Remove `name` (a file, a link, or a whole folder) inside `dir_fd`; missing is fine.

    A folder goes with shutil.rmtree's descriptor-based walk, which never follows links.
    """
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=dir_fd)


def rename(dir_fd: int, source: str, target: str) -> None:
    """Rename inside one folder (rename never follows links)."""
    os.rename(source, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def walk(
    dir_fd: int,
    visit: Callable[[int, os.stat_result], None],
    skip: Callable[[os.stat_result], bool] = lambda info: False,
) -> None:
    """Call `visit(fd, stat)` for the folder `dir_fd` and every folder and regular file
    below it, each opened without following links (links and special files are left
    alone). A folder for which `skip` is true is not entered (nor visited)."""
    visit(dir_fd, os.fstat(dir_fd))
    with os.scandir(dir_fd) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode):
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # swapped for a link or removed meanwhile: not ours to follow
            try:
                if not skip(os.fstat(child)):
                    walk(child, visit, skip)
            finally:
                os.close(child)
        elif stat.S_ISREG(info.st_mode):
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                opened = os.fstat(fd)
                if stat.S_ISREG(opened.st_mode):
                    visit(fd, opened)
            finally:
                os.close(fd)


def chown_owned_by(
    dir_fd: int,
    old_uid: int,
    uid: int,
    gid: int,
    skip: Callable[[os.stat_result], bool] = lambda info: False,
) -> int:
    """Give every folder and file below `dir_fd` owned by `old_uid` to uid:gid; the count.

    Each object is checked and changed through its own descriptor: a link planted
    meanwhile is never followed, a hard link to somebody else's file fails the check.
    """
    changed = 0

    def give(fd: int, info: os.stat_result) -> None:
        nonlocal changed
        if info.st_uid == old_uid:
            os.fchown(fd, uid, gid)
            changed += 1

    walk(dir_fd, give, skip)
    return changed
