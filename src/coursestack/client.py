"""What notebooks import: where each course service is, and a live connection to it.

    import coursestack
    conn = coursestack.connect()             # the course's PostgreSQL (psycopg)
    db = coursestack.connect("mongo")        # a service by name (or by kind)
    coursestack.connection_info()            # every service: url, host, port, ...

The daemon writes `connections.json` and points `COURSESTACK_CONNECTIONS` at it in every
kernel's environment; the file is read on each call, so a port that changed after a
restart is picked up without restarting the kernel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from coursestack.errors import UserError


def _document() -> dict[str, Any]:
    path = os.environ.get("COURSESTACK_CONNECTIONS")
    if not path:
        from coursestack.instances import resolve_instance

        path = str(resolve_instance().state.connections_file)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            "no connection info: is the course running?",
            where=path,
            hint="start it with `coursestack up`",
        ) from None
    if not isinstance(data, dict):
        raise UserError(
            "connection info is not a JSON object",
            where=path,
            hint="restart the course with `coursestack down` and `up`",
        )
    return data


def connection_info(service: str | None = None) -> dict[str, Any]:
    """Connection info of one service (or of all, keyed by name, if `service` is None)."""
    services: dict[str, Any] = _document().get("services", {})
    if service is None:
        return services
    if service in services:
        info: dict[str, Any] = services[service]
        return info
    by_kind = [info for info in services.values() if info.get("kind") == service]
    if by_kind:
        return dict(by_kind[0])
    raise UserError(
        f"this course has no service {service!r}", hint=f"services: {', '.join(sorted(services))}"
    )


def _first_database() -> dict[str, Any]:
    services: dict[str, Any] = _document().get("services", {})
    for info in services.values():
        if info.get("driver") == "psycopg":
            return dict(info)
    raise UserError(
        "this course has no PostgreSQL service",
        hint=f"name one: connect(NAME); services: {', '.join(sorted(services))}",
    )


def connect(service: str | None = None, **kwargs: Any) -> Any:
    """A live connection to a course service, by name or kind (none: the first
    PostgreSQL service, that is the first whose driver is psycopg).

    What it returns follows the `driver` the service's kind publishes in
    connections.json (this module never imports the kinds): "psycopg" (PostgreSQL): a
    psycopg connection; "pymongo" (MongoDB and its stand-in): a pymongo Database (the
    course database; `db.client.close()` closes it); anything else: an httpx.Client whose
    base URL is the service. The file is read on every call: a port that moved since the
    kernel started is found.
    """
    info = connection_info(service) if service is not None else _first_database()
    driver = info.get("driver", "http")
    if driver == "psycopg":
        import psycopg

        return psycopg.connect(
            host=info["host"],
            port=info["port"],
            user=info["user"],
            password=info["password"],
            dbname=info["database"],
            **kwargs,
        )
    if driver == "pymongo":
        import pymongo

        client: Any = pymongo.MongoClient(info["url"], **kwargs)
        return client[info["database"]]
    import httpx

    return httpx.Client(base_url=info["url"], **kwargs)
