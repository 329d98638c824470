"""Connection info: what notebooks see (env vars and `connections.json`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coursestack.kinds.base import Connection
from coursestack.privileges import RunAs
from coursestack.state import StateFolder, atomic_write_json


def environment_for(
    connections: Iterable[Connection], state: StateFolder, instance_name: str
) -> dict[str, str]:
    """Variables every service (and so every notebook kernel) gets.

    Each service gives <NAME>_URL/_HOST/_PORT; the first service of a kind also gives the
    variables that kind's tools read by convention (DATABASE_URL, PGHOST, ...).
    """
    env = {
        "COURSESTACK_CONNECTIONS": str(state.connections_file),
        "COURSESTACK_INSTANCE": instance_name,
    }
    seen_kinds: set[str] = set()
    for connection in connections:
        env.update(connection.env())
        if connection.kind not in seen_kinds:
            seen_kinds.add(connection.kind)
            for key, value in connection.conventional_env.items():
                env.setdefault(key, value)
    return env


def write_connections(
    connections: Iterable[Connection], state: StateFolder, run_as: RunAs | None
) -> dict[str, Any]:
    """Write connections.json, readable by the owner and the service account only."""
    document = {"services": {c.service: c.as_dict() for c in connections}}
    atomic_write_json(state.connections_file, document, mode=0o640)
    if run_as is not None:
        import os

        os.chown(state.connections_file, 0, run_as.gid)
    return document


def masked(document: dict[str, Any]) -> dict[str, Any]:
    """A copy of a connections document with passwords and tokens hidden."""
    secrets = {
        str(s["password"]) for s in document.get("services", {}).values() if s.get("password")
    }
    secrets |= {str(s["token"]) for s in document.get("services", {}).values() if s.get("token")}

    def hide(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: hide(v) for k, v in value.items()}
        if isinstance(value, list):
            return [hide(v) for v in value]
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, "••••••")
        return value

    result: dict[str, Any] = hide(document)
    return result
