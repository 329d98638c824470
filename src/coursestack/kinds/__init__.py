"""One module per kind; `build_unit` binds a service of the spec to its kind.

Kinds are found through `coursestack.registry` (the `coursestack.kinds` entry points):
`KINDS` holds the built-in ones and loads a kind another package brings when it is
first asked for. See `kinds/base.py` for the verbs every kind answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coursestack.endpoints import EndpointTable
from coursestack.kinds.base import Connection, Context, Kind
from coursestack.kinds.command import CommandKind
from coursestack.kinds.jupyter import JupyterKind
from coursestack.kinds.mongodb import MongoKind, MongoLiteKind
from coursestack.kinds.openrefine import OpenRefineKind
from coursestack.kinds.postgres import PostgresKind
from coursestack.registry import registry
from coursestack.spec import ServiceSpec


class _KindTable(dict[str, type[Kind[Any]]]):
    """Kind name -> class; a name not here yet is looked up in the registry."""

    def __missing__(self, name: str) -> type[Kind[Any]]:
        found = registry().get(name)
        if found is None or not (isinstance(found, type) and issubclass(found, Kind)):
            raise KeyError(name)
        self[name] = found
        return found

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


KINDS: dict[str, type[Kind[Any]]] = _KindTable(
    {
        kind.KIND: kind
        for kind in (
            PostgresKind,
            JupyterKind,
            CommandKind,
            MongoKind,
            MongoLiteKind,
            OpenRefineKind,
        )
    }
)

__all__ = ["KINDS", "Connection", "Context", "Kind", "bind_all", "build_unit", "kind_class"]


def kind_class(name: str) -> type[Kind[Any]] | None:
    """The class of kind `name` (None: no such kind, or its package is broken)."""
    found: type[Kind[Any]] | None = KINDS.get(name)
    return found


def bind_all(
    units: Mapping[str, Kind[Any]],
    endpoints: EndpointTable,
    shared_env: Mapping[str, str] | None = None,
) -> None:
    """Hand every kind its endpoint and the others' (see coursestack.endpoints)."""
    for name, unit in units.items():
        unit.bind(endpoints.get(name), endpoints.endpoints, shared_env)


def build_unit(name: str, spec: ServiceSpec, context: Context) -> Kind[Any]:
    """The kind object that runs service `name`."""
    return KINDS[spec.kind](name, spec, context)
