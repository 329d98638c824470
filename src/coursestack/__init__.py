"""coursestack: one course.toml runs a course's data-science environment natively."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0.dev0"

__all__ = ["__version__", "connect", "connection_info"]


def connect(service: str = "postgres", **kwargs: Any) -> Any:
    """Return a live connection to a course service (see `coursestack.client`)."""
    from coursestack.client import connect as _connect

    return _connect(service, **kwargs)


def connection_info(service: str | None = None) -> Any:
    """Return where a course service is (see `coursestack.client`)."""
    from coursestack.client import connection_info as _info

    return _info(service)
