"""Readiness checks as commands, for runtimes that probe by running a program.

A container engine's healthcheck runs a command inside the container; these use only
Python's standard library, which the course image always has.
"""

from __future__ import annotations


def tcp_check(port: int, host: str = "127.0.0.1") -> tuple[str, ...]:
    """Exits 0 once `host:port` accepts a connection."""
    return (
        "python3",
        "-c",
        f"import socket; socket.create_connection(({host!r}, {port}), 3).close()",
    )


def http_check(
    port: int, path: str = "/", status: int | None = None, host: str = "127.0.0.1"
) -> tuple[str, ...]:
    """Exits 0 once GET http://host:port/path answers (with `status`, or below 500)."""
    wanted = f"r.status == {status}" if status is not None else "r.status < 500"
    script = (
        "import sys, urllib.request, urllib.error\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://{host}:{port}{path}', timeout=3)\n"
        "except urllib.error.HTTPError as e:\n"
        "    r = e\n"
        f"sys.exit(0 if {wanted} else 1)"
    )
    return ("python3", "-c", script)
