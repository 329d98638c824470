"""Running services as an unprivileged account when coursestack itself runs as root.

PostgreSQL refuses to run as root and Jupyter should not, so in containers, CI and on
shared hosts the daemon (root) starts every service as an account of its instance:
`cs-<instance>-<hash of the state folder>`, created on first use (a system account
without home or login shell, in its own group) and removed by `coursestack remove`.
One account per instance keeps instances apart: one instance's services cannot read
another's files or its processes' environments. `COURSESTACK_SERVICE_USER` names an
existing account to use instead (every instance then shares it).

Root never changes the owner or mode of anything outside what coursestack created:
where the account needs a way into a folder of somebody else (the Python installation
under /root, a course team's notebooks folder), it gets an ACL entry for that account
alone (`setfacl`, Debian/Ubuntu package `acl`). Work *inside* folders the account can
write goes through `coursestack.nofollow`. Linux-specific calls live here; elsewhere,
and when not root, services simply run as the current user.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coursestack import nofollow
from coursestack.errors import UserError
from coursestack.state import is_root

#: The account every instance shared before accounts were per instance (moved from once).
LEGACY_SERVICE_USER = "coursestack"
ACCOUNT_PREFIX = "cs-"
#: Linux user names: at most 32 characters (useradd refuses longer ones).
MAX_NAME = 32


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account services run as."""

    name: str
    uid: int
    gid: int


def account_name(instance_name: str, state_root: Path) -> str:
    """`cs-<instance, first 12 safe characters>-<8 hex of sha256(state folder)>`: unique
    per state folder (two folders with one instance name differ), at most 24 characters."""
    safe = re.sub(r"[^a-z0-9]+", "-", instance_name.lower()).strip("-")[:12].strip("-")
    digest = hashlib.sha256(str(state_root.resolve()).encode()).hexdigest()[:8]
    return f"{ACCOUNT_PREFIX}{safe or 'instance'}-{digest}"


def is_instance_account(name: str) -> bool:
    """True for a name `account_name` makes (so only those are ever deleted)."""
    return re.fullmatch(r"cs-[a-z0-9-]{1,12}-[0-9a-f]{8}", name) is not None


def service_account(state_root: Path, instance_name: str) -> RunAs | None:
    """The account to run this instance's services as: None means 'as the current user'."""
    if not is_root():
        return None
    import pwd

    override = os.environ.get("COURSESTACK_SERVICE_USER")
    name = override or account_name(instance_name, state_root)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if override:
            raise UserError(
                f"COURSESTACK_SERVICE_USER names no account: {name!r}",
                hint="create that account first, or unset the variable so "
                "each instance gets its own",
            ) from None
        _create_system_user(name)
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise UserError(
            f"service user {name!r} is root",
            hint="set COURSESTACK_SERVICE_USER to an unprivileged account",
        )
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def lookup(name: str) -> RunAs | None:
    """An existing account by name."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_system_user(name: str) -> None:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise UserError(
            f"cannot create the service account {name!r}: no `useradd`",
            hint="install it (Debian/Ubuntu: apt-get install passwd), or create "
            "an account and name it in COURSESTACK_SERVICE_USER",
        )
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            name,
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode not in (0, 9):  # 9: created meanwhile by another instance's start
        raise UserError(
            f"cannot create the service account {name!r}: {result.stderr.strip()}",
            hint="create it by hand (useradd --system "
            f"--user-group {name}) or name an account in COURSESTACK_SERVICE_USER",
        )


def remove_account(name: str) -> None:
    """Delete an instance's account and its group (only names `account_name` makes)."""
    if not is_instance_account(name) or lookup(name) is None:
        return
    result = subprocess.run(["userdel", name], check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(
            f"cannot remove the service account {name!r}: {result.stderr.strip()}",
            hint=f"remove it by hand: userdel {name}",
        )


# -- access to folders coursestack did not create: ACL entries only ----------------------


def _setfacl() -> str:
    found = shutil.which("setfacl")
    if found is None:
        raise UserError(
            "`setfacl` is missing: the service account needs an ACL entry to reach folders "
            "coursestack does not own, and coursestack never changes their mode instead",
            hint="install it (Debian/Ubuntu: apt-get install acl; Fedora: dnf install acl), "
            "then run the command again",
        )
    return found


def ensure_reachable(paths: Iterable[Path], account: RunAs | None) -> list[Path]:
    """Make sure `account` can traverse every parent of `paths`; return folders changed.

    Only folders it cannot already traverse get an ACL entry, `--x` for that one user:
    nothing becomes listable or readable, nobody else gains anything.
    """
    if account is None:
        return []
    changed: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        for folder in reversed(Path(path).resolve().parents):
            if folder in seen:
                continue
            seen.add(folder)
            if _can_traverse(folder, account):
                continue
            _set_acl([folder], f"u:{account.name}:x", needed_for=path)
            changed.append(folder)
    return changed


def revoke_reachable(paths: Iterable[Path], account: RunAs) -> list[Path]:
    """Remove the traverse entries `ensure_reachable` gave `account` above `paths` (before
    the account is deleted: a later account with its uid must not inherit them)."""
    removed: list[Path] = []
    folders = {folder for path in paths for folder in Path(path).resolve().parents}
    for folder in sorted(folders):
        if folder.is_dir() and _acl_grants(folder, account, "x"):
            _set_acl([folder], f"u:{account.name}", needed_for=folder, remove=True)
            removed.append(folder)
    return removed


def _set_acl(
    paths: list[str] | list[Path],
    entry: str,
    needed_for: Path | str,
    pass_fds: tuple[int, ...] = (),
    remove: bool = False,
) -> None:
    argv = [_setfacl(), "-x" if remove else "-m", entry, "--", *map(str, paths)]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, pass_fds=pass_fds)
    if result.returncode != 0:
        raise UserError(
            f"cannot give the service account access to {needed_for}: {result.stderr.strip()}",
            where=str(needed_for),
            hint="the file system must support ACLs (mount option `acl`); or put "
            "the course and coursestack in a folder every user can traverse",
        )


def _can_traverse(folder: Path, account: RunAs) -> bool:
    info = folder.stat()
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == account.gid and info.st_mode & stat.S_IXGRP:
        return True
    if info.st_mode & stat.S_IXOTH:
        return True
    return _acl_grants(folder, account, "x")


def _acl_grants(folder: Path, account: RunAs, permission: str, default: bool = False) -> bool:
    getfacl = shutil.which("getfacl")
    if getfacl is None:
        return False
    result = subprocess.run(
        [getfacl, "-p", "-c", str(folder)], capture_output=True, text=True, check=False
    )
    prefix = f"{'default:' if default else ''}user:{account.name}:"
    return any(
        line.startswith(prefix) and permission in line[len(prefix) :]
        for line in result.stdout.splitlines()
    )


#: setfacl gets descriptors as /proc/self/fd/N, so it acts on the very object we opened
#: without following links; this many at a time (well below the descriptor limit).
_FD_BATCH = 200


def grant_folder(folder: Path, account: RunAs | None) -> bool:
    """Let `account` read and write `folder` (a course team's notebooks folder) and
    everything in it, by ACL entries only; new entries inherit them (a default ACL).

    The tree is walked once, when the folder does not have the entry yet; every object
    is opened without following links and changed through its descriptor, so a link
    the account planted is never followed. True if entries were added.
    """
    if account is None or _acl_grants(folder, account, "rwx", default=True):
        return False
    _setfacl()
    with nofollow.folder(folder) as top, _AclBatches(folder) as batches:

        def add(fd: int, info: os.stat_result) -> None:
            if info.st_uid == account.uid:
                return
            if stat.S_ISDIR(info.st_mode):
                batches.add(fd, f"u:{account.name}:rwx,d:u:{account.name}:rwx")
            else:
                batches.add(fd, f"u:{account.name}:rw")

        nofollow.walk(top, add)
    return True


def revoke_folder(folder: Path, account: RunAs) -> None:
    """Undo `grant_folder` before the account is deleted: its ACL entries go, and what it
    created there is given to the folder's owner (no file is left to a freed uid)."""
    if not folder.is_dir():
        return
    with nofollow.folder(folder) as top:
        owner = os.fstat(top)
        if owner.st_uid == account.uid:  # moved from the shared account: its parent's owner
            owner = os.stat(folder.parent)
        nofollow.chown_owned_by(top, account.uid, owner.st_uid, owner.st_gid)
        if shutil.which("setfacl") is None:
            return
        with _AclBatches(folder, remove=True) as batches:

            def drop(fd: int, info: os.stat_result) -> None:
                batches.add(
                    fd,
                    f"u:{account.name},d:u:{account.name}"
                    if stat.S_ISDIR(info.st_mode)
                    else f"u:{account.name}",
                )

            nofollow.walk(top, drop)


class _AclBatches:
    """Descriptors waiting for one `setfacl` call per ACL entry text, at most _FD_BATCH
    open at a time (a big notebooks folder must not exhaust the descriptor limit)."""

    def __init__(self, shown: Path, remove: bool = False) -> None:
        self._shown = shown
        self._remove = remove
        self._waiting: dict[str, list[int]] = {}

    def add(self, fd: int, entry: str) -> None:
        waiting = self._waiting.setdefault(entry, [])
        waiting.append(os.dup(fd))
        if len(waiting) >= _FD_BATCH:
            self._flush(entry)

    def _flush(self, entry: str) -> None:
        batch = tuple(self._waiting.pop(entry, []))
        try:
            if batch:
                _set_acl(
                    [f"/proc/self/fd/{fd}" for fd in batch],
                    entry,
                    self._shown,
                    pass_fds=batch,
                    remove=self._remove,
                )
        finally:
            for fd in batch:
                os.close(fd)

    def __enter__(self) -> _AclBatches:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if kind is not None:
            for fds in self._waiting.values():
                for fd in fds:
                    os.close(fd)
            self._waiting.clear()
            return
        for entry in list(self._waiting):
            self._flush(entry)
