"""Folders in a backup: the notebooks folder, OpenRefine's workspace, a raw data folder.

A folder's regular files become archive members under a prefix, byte for byte (symbolic
links and special files are skipped and reported). Restoring makes the folder hold
exactly the backed-up files: the folder itself is kept (its owner, its permissions), its
old content is replaced.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path

from coursestack.privileges import RunAs, hand_over


def folder_members(folder: Path, prefix: str, exclude: Iterable[Path] = ()
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


def replace_folder(target: Path, staged: Path | None, run_as: RunAs | None,
                   keep: Iterable[Path] = ()) -> int:
    """Make `target` hold exactly the files of `staged` (None: nothing); return the count.

    Folders in `keep` (the instance's state folder) survive, wherever they are inside.
    When services run as another account (coursestack runs as root), the files are
    handed to it, as the service itself does with its folders.
    """
    target.mkdir(parents=True, exist_ok=True)
    _empty(target, [path.resolve() for path in keep])
    count = 0
    if staged is not None and staged.is_dir():
        for root, _dirs, files in os.walk(staged):
            here = Path(root)
            destination = target / here.relative_to(staged)
            destination.mkdir(parents=True, exist_ok=True)
            for name in files:
                shutil.copy2(here / name, destination / name)
                count += 1
    hand_over([target], run_as)
    return count


def _empty(folder: Path, keep: list[Path]) -> None:
    for entry in list(folder.iterdir()):
        resolved = entry.resolve()
        if entry.is_dir() and not entry.is_symlink():
            if resolved in keep:
                continue
            if any(resolved in kept.parents for kept in keep):
                _empty(entry, keep)
                continue
            shutil.rmtree(entry)
        else:
            entry.unlink()
