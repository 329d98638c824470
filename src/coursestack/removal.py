"""`coursestack remove`: stop an instance, delete its state folder and its service account.

An account's uid is freed when the account goes, and a later account may get the same
uid: a file left owned by it would then belong to a stranger. So before the account is
deleted, every file it owns is gone (the state folder, its leftovers in the shared
temporary folders) or given back (what it made in a course team's notebooks folder goes
to that folder's owner, and its ACL entries are removed).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from coursestack.errors import UserError
from coursestack.instances import Instance, stop_leftovers, wait_for_exit
from coursestack.privileges import (
    RunAs,
    is_instance_account,
    lookup,
    remove_account,
    revoke_folder,
    revoke_reachable,
)
from coursestack.state import instance_registry, read_json

#: Shared places a service may leave files in (kernels' temporary files, shared memory).
TEMPORARY_FOLDERS = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))


@dataclass
class Removal:
    """What `remove_instance` did."""

    state: Path
    account: str | None = None
    given_back: list[Path] = field(default_factory=list)
    temporary_removed: list[str] = field(default_factory=list)


def remove_instance(instance: Instance, timeout: float = 120.0) -> Removal:
    """Stop the instance, give back or delete what its account owns, delete the state
    folder, its registry entry, and its account (only one coursestack made for it)."""
    state = instance.state
    if not state.root.is_dir():
        raise UserError(
            f"no instance {instance.name!r} here: {state.root} does not exist",
            where=str(state.root),
            hint="see `coursestack list`",
        )
    result = Removal(state.root)
    recorded = read_json(state.account_file, {}) or {}
    account = lookup(str(recorded.get("name", ""))) if isinstance(recorded, dict) else None
    shared, needed = _folders_outside(instance)
    _stop(instance, timeout)
    if account is not None:
        _end_processes(account)
        for folder in shared:
            if folder.is_dir() and not folder.resolve().is_relative_to(state.root.resolve()):
                revoke_folder(folder, account)
                result.given_back.append(folder)
        revoke_reachable([*needed, *shared, state.root], account)
    if state.root.exists():
        shutil.rmtree(state.root)  # descriptor-based: never follows a link out
    key = hashlib.sha256(str(state.root).encode()).hexdigest()[:16]
    (instance_registry() / f"{key}.json").unlink(missing_ok=True)
    if account is not None and is_instance_account(account.name):
        result.temporary_removed = _remove_temporary_files(account)
        remove_account(account.name)
        result.account = account.name
    return result


def _folders_outside(instance: Instance) -> tuple[list[Path], list[Path]]:
    """Folders the account writes outside the state folder, and paths it was let reach."""
    from coursestack.kinds import Context, build_unit
    from coursestack.state import Secrets

    shared: list[Path] = []
    needed: list[Path] = [Path(sys.executable)]
    with contextlib.suppress(Exception):  # a broken or missing spec has no such folders
        spec = instance.spec()
        context = Context(
            instance.state, spec, Secrets(instance.state), None, instance_name=instance.name
        )
        for name, service in spec.services.items():
            unit = build_unit(name, service, context)
            shared += unit.shared_folders()
            with contextlib.suppress(Exception):
                needed += unit.needed_paths()
    return shared, needed


def _stop(instance: Instance, timeout: float) -> None:
    if not instance.daemon_alive():
        if instance.state.root.exists():
            stop_leftovers(instance)
        return
    client = instance.client()
    pid = client.pid
    client.shutdown()
    client.close()
    if not wait_for_exit(pid, timeout):
        raise UserError(
            f"the daemon did not stop within {timeout:g} s; nothing was deleted",
            where=str(instance.state.root),
            hint=f"stop it with `kill {pid}`, then run `coursestack remove` again",
        )


def _end_processes(account: RunAs) -> None:
    """Kill whatever still runs as the instance's account (a kernel's stray child)."""
    if not is_instance_account(account.name):
        return  # a shared account (COURSESTACK_SERVICE_USER) runs other instances too
    mine = [
        p
        for p in psutil.process_iter(["uids"])
        if p.info["uids"] is not None
        and account.uid in (p.info["uids"].real, p.info["uids"].effective)
    ]
    for process in mine:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(mine, timeout=5)


def _remove_temporary_files(account: RunAs) -> list[str]:
    removed = []
    for folder in TEMPORARY_FOLDERS:
        if not folder.is_dir():
            continue
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in os.listdir(fd):
                with contextlib.suppress(OSError):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if info.st_uid != account.uid:
                        continue
                    if stat.S_ISDIR(info.st_mode):
                        shutil.rmtree(name, dir_fd=fd)
                    else:
                        os.unlink(name, dir_fd=fd)
                    removed.append(str(folder / name))
        finally:
            os.close(fd)
    return removed
