"""Hub user names -> unix accounts, one per student, created on first spawn.

Names follow The Littlest JupyterHub (`tljh/normalize.py`: a long name is cut and given
a short sha256 of the full name, so it stays under Linux's 32 characters): here a prefix,
the hub name lower-cased with anything outside `[a-z0-9_-]` replaced, cut so that the
whole name with its prefix fits, plus 7 hex digits of the hash. Two hub names that
normalise alike ("Ann.Lee" and "ann-lee") must still get two users, so the choice is
recorded in a registry kept by the hub (root-only) and a taken name gets a hash suffix.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
from filelock import FileLock

from coursestack.errors import UserError
from coursestack.state import OWNER_ONLY, atomic_write_json, read_json

#: Linux's limit for user names (useradd refuses longer ones).
MAX_UNIX_NAME = 32
#: Every student account is in this group; the group gets traverse-only ACLs on the
#: folders between `/` and this Python, so students can run it and read nothing there.
STUDENTS_GROUP = "coursestack-students"
_UNSAFE = re.compile(r"[^a-z0-9_-]+")


class UnixUserError(UserError):
    """A student's unix account could not be created or found."""


def normalise(hub_name: str, prefix: str) -> str:
    """The unix name TLJH would give `hub_name` (prefix, safe characters, <= 32)."""
    safe = _UNSAFE.sub("-", hub_name.lower()).strip("-") or "user"
    name = prefix + safe
    if len(name) > MAX_UNIX_NAME:
        digest = hashlib.sha256(hub_name.encode()).hexdigest()[:7]
        name = f"{name[: MAX_UNIX_NAME - 8]}-{digest}"
    return name


@dataclass(frozen=True)
class Student:
    """One student's unix account."""

    hub_name: str
    unix_name: str
    uid: int
    gid: int
    home: Path


class Registry:
    """Which unix name belongs to which hub name (a JSON file the hub owns)."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix

    def _load(self) -> dict[str, str]:
        data = read_json(self.path, {}) or {}
        return {str(k): str(v) for k, v in data.items()}

    def unix_name(self, hub_name: str) -> str:
        """The unix name for `hub_name`, chosen (and recorded) on first use."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            names = self._load()
            if hub_name in names:
                return names[hub_name]
            candidate = normalise(hub_name, self.prefix)
            if candidate in names.values():
                digest = hashlib.sha256(hub_name.encode()).hexdigest()[:7]
                candidate = f"{candidate[: MAX_UNIX_NAME - 8]}-{digest}"
            names[hub_name] = candidate
            atomic_write_json(self.path, names, OWNER_ONLY)
            return candidate

    def forget(self, hub_name: str) -> None:
        with FileLock(str(self.path) + ".lock"):
            names = self._load()
            if names.pop(hub_name, None) is not None:
                atomic_write_json(self.path, names, OWNER_ONLY)

    def all(self) -> dict[str, str]:
        return self._load()


def ensure_group() -> int:
    """The students' group id (created when missing)."""
    try:
        return grp.getgrnam(STUDENTS_GROUP).gr_gid
    except KeyError:
        subprocess.run(["groupadd", "--system", STUDENTS_GROUP], check=True, capture_output=True)
        return grp.getgrnam(STUDENTS_GROUP).gr_gid


def _exists(unix_name: str) -> bool:
    try:
        pwd.getpwnam(unix_name)
    except KeyError:
        return False
    return True


def ensure_student(hub_name: str, unix_name: str, create: bool = True) -> Student:
    """The student's account, created (home 0700, in the students' group) if missing."""
    if not _exists(unix_name):
        if not create:
            raise UnixUserError(
                f"there is no unix user {unix_name!r} for {hub_name!r}",
                hint="with --auth pam students log in with existing "
                "accounts; create it with useradd",
            )
        ensure_group()
        result = subprocess.run(
            [
                "useradd",
                "--create-home",
                "--shell",
                "/bin/bash",
                "--user-group",
                "--groups",
                STUDENTS_GROUP,
                unix_name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode not in (0, 9):  # 9: created meanwhile by another spawn
            raise UnixUserError(
                f"could not create the unix user {unix_name!r}",
                where="useradd",
                hint=result.stderr.strip(),
            )
    entry = pwd.getpwnam(unix_name)
    if entry.pw_uid == 0:
        raise UnixUserError(f"{hub_name!r} maps to root", hint="choose another name")
    home = Path(entry.pw_dir)
    home.mkdir(mode=0o700, exist_ok=True)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    os.chmod(home, 0o700)  # other students: permission denied on everything inside
    return Student(hub_name, unix_name, entry.pw_uid, entry.pw_gid, home)


def remove_student(unix_name: str) -> None:
    """Delete the account, its home and its processes (disposable sessions, tests)."""
    try:
        uid = pwd.getpwnam(unix_name).pw_uid
    except KeyError:
        return
    for process in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error):
            if process.info["uids"] and process.info["uids"].real == uid:
                process.kill()
    subprocess.run(["userdel", "--remove", "--force", unix_name], capture_output=True, check=False)


def grant_traverse(paths: list[Path]) -> list[Path]:
    """Let the students' group traverse (only) the folders above `paths`."""
    ensure_group()
    changed: list[Path] = []
    setfacl = shutil.which("setfacl")
    for path in paths:
        for folder in reversed(Path(path).resolve().parents):
            mode = folder.stat().st_mode
            if mode & 0o001:
                continue
            if setfacl is not None:
                subprocess.run(
                    [setfacl, "-m", f"g:{STUDENTS_GROUP}:x", str(folder)],
                    capture_output=True,
                    check=False,
                )
            else:
                os.chmod(folder, mode | 0o001)
            changed.append(folder)
    return changed
