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
