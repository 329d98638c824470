"""Sizes and durations, read from people and written for people: said once, here.

Sizes use binary units under their everyday names (1K = 1024 bytes, 1M = 1024 K, ...), as
PostgreSQL, the JVM and `free` do. Durations are written the way the dashboard's live
view (web/static/dashboard.js) writes them, so the page and the command line agree.

The bottom of the import layers (pyproject.toml): it imports nothing of coursestack.
"""

from __future__ import annotations

import math
import re

KB = 1024
MB = 1024 * KB
GB = 1024 * MB

_SCALES = {"b": 1, "k": KB, "m": MB, "g": GB, "t": 1024 * GB}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_BYTES_RE = re.compile(r"^\s*(\d+)\s*b\s*$", re.IGNORECASE)

#: What a missing figure reads as, unless a caller says otherwise.
MISSING = "-"


def parse_size(text: str) -> int:
    """A size such as "1G", "512M", "1.5GB", "800MiB" or "65536B", in bytes.

    Raises ValueError with a plain message for anything else (no unit, zero, negative).
    """
    if not isinstance(text, str):
        raise ValueError(f'a size must be text such as "1G", not {text!r}')
    found = _SIZE_RE.match(text)
    if not found:
        raise ValueError(f"{text!r} is not a size")
    number, unit, suffix = found.group(1), found.group(2).lower(), (found.group(3) or "")
    if not unit:
        if not suffix or suffix.lower() != "b" or not _BYTES_RE.match(text):
            raise ValueError(f"{text!r} has no unit")
        unit = "b"
    value = float(number) * _SCALES[unit]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"{text!r} is not a positive size")
    return int(value)


def format_size(count: int | None, missing: str = MISSING) -> str:
    """Bytes as a short figure: 512 bytes, 3.9 KB, 41 MB, 1.2 GB (`missing` for None).

    One decimal below 10 of a unit, whole numbers above: two or three digits at most.
    """
    if count is None:
        return missing
    if count < KB:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def format_duration(seconds: float | None, missing: str = MISSING) -> str:
    """A span of time for people: 45 s, 3 min 7 s, 2 h 5 min (`missing` for None).

    Whole seconds, rounded down; a negative span (clocks apart) reads as 0 s.
    """
    if seconds is None:
        return missing
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"
