"""One module per kind; `build_unit` binds a service of the spec to its kind."""

from __future__ import annotations

from coursestack.kinds.base import Connection, Context, Kind
from coursestack.kinds.command import CommandKind
from coursestack.kinds.jupyter import JupyterKind
from coursestack.kinds.mongodb import MongoKind, MongoLiteKind
from coursestack.kinds.openrefine import OpenRefineKind
from coursestack.kinds.postgres import PostgresKind
from coursestack.spec import ServiceSpec

KINDS: dict[str, type[Kind]] = {  # type: ignore[type-arg]
    kind.KIND: kind for kind in (PostgresKind, JupyterKind, CommandKind, MongoKind,
                                 MongoLiteKind, OpenRefineKind)
}

__all__ = ["KINDS", "Connection", "Context", "Kind", "build_unit"]


def build_unit(name: str, spec: ServiceSpec, context: Context) -> Kind:  # type: ignore[type-arg]
    """The kind object that runs service `name`."""
    return KINDS[spec.kind](name, spec, context)
