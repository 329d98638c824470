"""Backup, restore and reset: one archive with every service's data and a manifest.

`archive.py` is the file format, `files.py` copies folders, each kind dumps and restores
its own data (its `backup_*` verbs, kinds/base.py), and `service.py` runs them through an
instance's daemon.
"""

from __future__ import annotations

from coursestack.backup.archive import Manifest, read_archive
from coursestack.backup.service import (
    BackupResult,
    Reporter,
    ResetResult,
    RestoreResult,
    check_archive,
    create_backup,
    reset_service,
    restore_backup,
)

__all__ = [
    "BackupResult",
    "Manifest",
    "Reporter",
    "ResetResult",
    "RestoreResult",
    "check_archive",
    "create_backup",
    "read_archive",
    "reset_service",
    "restore_backup",
]
