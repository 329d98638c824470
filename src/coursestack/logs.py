"""Reading service logs: the tail of a file, and following it."""

from __future__ import annotations

import os
from pathlib import Path

_BLOCK = 8192


def tail_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of a text file, read from the end (cheap for huge logs)."""
    if count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            position = handle.tell()
            chunks: list[bytes] = []
            newlines = 0
            while position > 0 and newlines <= count:
                step = min(_BLOCK, position)
                position -= step
                handle.seek(position)
                chunk = handle.read(step)
                chunks.append(chunk)
                newlines += chunk.count(b"\n")
    except FileNotFoundError:
        return []
    text = b"".join(reversed(chunks)).decode("utf-8", errors="replace")
    return text.splitlines()[-count:]


def rotate_if_large(path: Path, max_bytes: int, keep: int) -> bool:
    """Rotate a log that grew past `max_bytes`: name.log -> name.log.1 -> ... -> .keep.

    The service keeps writing to its open file (opened with O_APPEND), so the log is
    copied and then truncated in place ("copytruncate"): a service writing gigabytes
    cannot fill the disk, and nothing needs restarting.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    _shift_rotated(path, keep)
    if keep > 0:
        with open(path, "rb") as source, open(path.with_name(f"{path.name}.1"), "wb") as copy:
            while block := source.read(1 << 20):
                copy.write(block)
    with open(path, "r+b") as handle:
        handle.truncate(0)
    return True


def rotate_by_rename(path: Path, keep: int) -> None:
    """Rotate a closed log: name.log -> name.log.1 -> ... ; the oldest beyond `keep` goes."""
    _shift_rotated(path, keep)
    if keep > 0:
        os.replace(path, path.with_name(f"{path.name}.1"))
    else:
        path.unlink(missing_ok=True)


def _shift_rotated(path: Path, keep: int) -> None:
    """name.log.1 -> .2 -> ... -> .keep; the oldest goes, making room for a new .1."""
    for number in range(keep, 0, -1):
        older = path.with_name(f"{path.name}.{number}")
        if number == keep:
            older.unlink(missing_ok=True)
        elif older.exists():
            os.replace(older, path.with_name(f"{path.name}.{number + 1}"))
