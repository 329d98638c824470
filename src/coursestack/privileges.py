"""Running services as an unprivileged user when coursestack itself runs as root.

PostgreSQL refuses to run as root and Jupyter should not, so in containers and CI the
daemon (root) starts every service as a dedicated user, `coursestack` by default (created
when missing), and makes sure that user can reach what it needs: its data folders are
handed over, and closed parent folders (root's home holding Python, say) get a
traverse-only ACL entry for that user alone. Linux-specific calls live here and nowhere
else; on other systems, and when not root, services simply run as the current user.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from coursestack.errors import UserError
from coursestack.state import is_root

DEFAULT_SERVICE_USER = "coursestack"


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account services run as."""

    name: str
    uid: int
    gid: int


def service_account() -> RunAs | None:
    """The account to run services as: None means 'as the current user'."""
    if not is_root():
        return None
    import pwd

    name = os.environ.get("COURSESTACK_SERVICE_USER", DEFAULT_SERVICE_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _create_system_user(name)
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = pwd.getpwnam("nobody")
    if entry.pw_uid == 0:
        raise UserError(f"service user {name!r} is root", hint="set COURSESTACK_SERVICE_USER "
                        "to an unprivileged account")
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_system_user(name: str) -> None:
    useradd = shutil.which("useradd")
    if useradd is None:
        return
    subprocess.run([useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "--user-group", name], check=False, capture_output=True)


def hand_over(paths: Iterable[Path], account: RunAs | None) -> None:
    """Give the service account ownership of folders it writes (recursively)."""
    if account is None:
        return
    for top in paths:
        if not top.exists():
            continue
        if not top.is_dir():
            os.lchown(top, account.uid, account.gid)
            continue
        for folder, dirs, files in os.walk(top):
            for name in [folder, *(os.path.join(folder, d) for d in dirs),
                         *(os.path.join(folder, f) for f in files)]:
                info = os.lstat(name)
                if info.st_uid != account.uid:
                    os.lchown(name, account.uid, account.gid)


def hand_over_new(folder: Path, account: RunAs | None) -> None:
    """Hand over `folder` and its direct entries; descend only into what the account does
    not own yet. A database's own files are the account's already: walking thousands of
    them on every start would only slow the start down."""
    if account is None or not folder.exists():
        return
    if os.lstat(folder).st_uid != account.uid:
        hand_over([folder], account)
        return
    for entry in folder.iterdir():
        if os.lstat(entry).st_uid != account.uid:
            hand_over([entry], account)


def ensure_reachable(paths: Iterable[Path], account: RunAs | None) -> list[Path]:
    """Make sure `account` can traverse every parent of `paths`; return folders changed.

    Only folders it cannot already traverse get an ACL entry, and only `--x` for that
    one user; where ACLs are not available, `o+x`. Nothing becomes listable or readable.
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
            _grant_traverse(folder, account, path)
            changed.append(folder)
    return changed


def _grant_traverse(folder: Path, account: RunAs, needed_for: Path) -> None:
    setfacl = shutil.which("setfacl")
    if setfacl is not None:
        result = subprocess.run([setfacl, "-m", f"u:{account.name}:x", str(folder)],
                                capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return
    # No ACL support: traverse-only for everybody (nothing becomes listable or readable).
    try:
        os.chmod(folder, folder.stat().st_mode | stat.S_IXOTH)
    except OSError as error:
        raise UserError(
            f"the service user {account.name!r} cannot reach {needed_for}", where=str(folder),
            hint=f"{error.strerror}; run `chmod o+x {folder}` or install coursestack elsewhere",
        ) from None


def _can_traverse(folder: Path, account: RunAs) -> bool:
    info = folder.stat()
    if info.st_uid == account.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == account.gid and info.st_mode & stat.S_IXGRP:
        return True
    if info.st_mode & stat.S_IXOTH:
        return True
    return _acl_grants(folder, account)


def _acl_grants(folder: Path, account: RunAs) -> bool:
    getfacl = shutil.which("getfacl")
    if getfacl is None:
        return False
    result = subprocess.run([getfacl, "-p", "-c", str(folder)], capture_output=True, text=True,
                            check=False)
    return any(line.startswith(f"user:{account.name}:") and line.split(":")[2][2:3] == "x"
               for line in result.stdout.splitlines())
