"""Who owns what in a state folder, and moving an instance to its own service account.

The state folder belongs to whoever runs coursestack (root on a shared host, the
student on a laptop). Only `data/<service>/` is handed to the service account, once, when
it is made (`Kind.data_folder`); everything else stays the owner's: `run/` (secrets,
pids), `logs/` and `backups/` are owner-only, the state folder and `data/` may only be
traversed by others, `connections.json` is readable by the owner and the instance's
group. Instances made before accounts were per instance ran as the shared `coursestack`
account: their files move to the instance's own account once, through descriptors that
follow no link (`nofollow.chown_owned_by`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from coursestack import nofollow
from coursestack.privileges import LEGACY_SERVICE_USER, RunAs, lookup
from coursestack.state import OWNER_ONLY, StateFolder, atomic_write_json, read_json

log = logging.getLogger("coursestack.ownership")


def secure_state_folder(state: StateFolder, account: RunAs | None) -> None:
    """Modes and owners of the state folder's own parts (not of what services made).

    Only what the current user owns is changed (coursestack made it); `data/`, which
    older versions gave to the service account, is taken back first.
    """
    me = os.geteuid()
    traverse = 0o711 if account is not None else 0o700
    for folder in (state.root, state.data):
        folder.mkdir(parents=True, exist_ok=True)
        info = os.lstat(folder)
        if account is not None and folder == state.data and info.st_uid != me:
            # An older version handed data/ over; its parent is ours, so the path is firm.
            os.lchown(folder, me, os.getegid())
            info = os.lstat(folder)
        if info.st_uid == me:
            os.chmod(folder, traverse)
    for folder in state.private_folders:
        if folder.is_dir() and not folder.is_symlink() and os.lstat(folder).st_uid == me:
            os.chmod(folder, 0o700)
    if state.logs.is_dir():
        for entry in state.logs.iterdir():
            with contextlib.suppress(OSError):
                if entry.is_file() and not entry.is_symlink():
                    os.chmod(entry, OWNER_ONLY)


def move_to_account(state: StateFolder, account: RunAs | None, shared_folders: list[Path]) -> int:
    """Give files of the instance's previous account to `account`, once; the count moved.

    The previous account is the one `run/account.json` names, else (an instance made
    before accounts were per instance) the shared `coursestack` account. Its files in
    `data/` and in `shared_folders` (the notebooks folders) change owner; nothing else.
    """
    if account is None:
        return 0
    record = read_json(state.account_file, {}) or {}
    previous: int | None = record.get("uid") if isinstance(record, dict) else None
    if previous is None:
        legacy = lookup(LEGACY_SERVICE_USER)
        previous = legacy.uid if legacy is not None else None
    moved = 0
    if previous is not None and previous != account.uid and previous != 0:
        with nofollow.folder(state.data) as data:
            moved += nofollow.chown_owned_by(data, previous, account.uid, account.gid)
        for folder in shared_folders:
            if folder.is_dir():
                with nofollow.folder(folder) as top:
                    moved += nofollow.chown_owned_by(top, previous, account.uid, account.gid)
        if moved:
            log.warning(
                "moved %d files of this instance from uid %d to its own account %s",
                moved,
                previous,
                account.name,
            )
    if record.get("uid") != account.uid:
        atomic_write_json(
            state.account_file,
            {"name": account.name, "uid": account.uid, "gid": account.gid},
            OWNER_ONLY,
        )
    return moved
