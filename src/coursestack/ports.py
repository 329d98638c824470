"""Free-port choice: a port in the spec is a preference, never a promise."""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Iterable

# Near the preferred port first, so a student who sees 5433 instead of 5432 understands.
_NEARBY = 20


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on `port` (binding without SO_REUSEADDR tells)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if sys.platform != "win32":
            # Ignore TIME_WAIT leftovers of our own last run: only a listener counts.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def ephemeral_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def port_range() -> tuple[int, int] | None:
    """The block of ports this instance must stay in, if any (a hub gives each student
    one: `COURSESTACK_PORT_RANGE=20000-20039`, closed to other students by nftables)."""
    text = os.environ.get("COURSESTACK_PORT_RANGE", "")
    first, _, last = text.partition("-")
    if not (first.isdigit() and last.isdigit()):
        return None
    return int(first), int(last)


def choose_port(preferred: int | None, avoid: Iterable[int] = (), host: str = "127.0.0.1") -> int:
    """The preferred port if free, else a free one nearby, else any free one."""
    taken = set(avoid)
    block = port_range()
    if block is not None:
        first, last = block
        start: int = preferred if preferred and first <= preferred <= last else first
        candidates: list[int] = list(range(start, last + 1)) + list(range(first, start))
        for candidate in candidates:
            if candidate not in taken and port_is_free(candidate, host):
                return candidate
        raise OSError(errno.EADDRINUSE, f"no free port left in {first}-{last}")
    if preferred:
        for candidate in range(preferred, min(preferred + _NEARBY, 65536)):
            if candidate not in taken and port_is_free(candidate, host):
                return candidate
    while True:
        candidate = ephemeral_port(host)
        if candidate not in taken:
            return candidate
