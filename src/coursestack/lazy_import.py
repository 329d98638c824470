"""A module imported on first use: heavy drivers stay out of the daemon's start-up path.

`psycopg = lazy_module("psycopg")` behaves like `import psycopg` once an attribute is
read; until then nothing is imported. Type checkers see the real import (write it under
`if TYPE_CHECKING:`), so this only moves *when* the import happens.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class _LazyModule(types.ModuleType):
    """Stands in for a module; the first attribute read imports it."""

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name__)
        return getattr(module, attribute)


def lazy_module(name: str) -> Any:
    """A stand-in for module `name` that imports it when first used."""
    return _LazyModule(name)


def load_now(name: str) -> None:
    """Import `name` (e.g. in a thread, so the import does not block an event loop)."""
    importlib.import_module(name)
