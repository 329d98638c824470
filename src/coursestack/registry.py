"""Which kinds exist: the built-in ones and those other packages register.

A kind is a class (a subclass of `coursestack.kinds.Kind`) named by an entry point of
the group `coursestack.kinds`: the entry point's name is the kind's name (what `kind =`
says in course.toml), its value `package.module:Class`. coursestack's own kinds are
registered the same way in its pyproject.toml, and are also known without the package
metadata (a source checkout on PYTHONPATH has none).

Nothing is imported until a kind is asked for. A package whose kind fails to import, or
that registers a name another package already took, becomes a `KindProblem` naming the
package; every other kind keeps working. `doctor` and `up` show the problems.

This module sits below `spec` (which asks it for the settings models of kinds other
packages bring) and imports no kind module statically: classes are loaded by name.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from dataclasses import dataclass, field
from typing import Any

GROUP = "coursestack.kinds"
OWN_PACKAGE = "coursestack"

#: coursestack's own kinds (the same as its `coursestack.kinds` entry points).
BUILTIN: dict[str, str] = {
    "postgres": "coursestack.kinds.postgres:PostgresKind",
    "jupyter": "coursestack.kinds.jupyter:JupyterKind",
    "command": "coursestack.kinds.command:CommandKind",
    "mongodb": "coursestack.kinds.mongodb:MongoKind",
    "mongodb-lite": "coursestack.kinds.mongodb:MongoLiteKind",
    "openrefine": "coursestack.kinds.openrefine:OpenRefineKind",
}


@dataclass(frozen=True)
class KindProblem:
    """A kind some package registers that cannot be used."""

    package: str
    kind: str
    message: str

    def line(self) -> str:
        return f"package {self.package!r}: kind {self.kind!r} {self.message}"


@dataclass
class Registry:
    """Kind name -> where its class is (and, once loaded, the class)."""

    targets: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    problems: list[KindProblem] = field(default_factory=list)
    _loaded: dict[str, type[Any]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return list(self.targets)

    def package_of(self, name: str) -> str:
        return self.packages.get(name, OWN_PACKAGE)

    def get(self, name: str) -> type[Any] | None:
        """The class of kind `name`, imported on first use (None: unknown or broken)."""
        if name in self._loaded:
            return self._loaded[name]
        target = self.targets.get(name)
        if target is None:
            return None
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
            loaded: Any = getattr(module, attribute) if attribute else module
        except Exception as error:  # any failure of a foreign package
            self._drop(name, f"cannot be loaded ({type(error).__name__}: {error})")
            return None
        if getattr(loaded, "KIND", name) != name:
            loaded.KIND = name  # registered under another name: the entry point decides
        self._loaded[name] = loaded
        kind: type[Any] = loaded
        return kind

    def load_all(self) -> dict[str, type[Any]]:
        """Every kind that loads (problems of the others are kept in `problems`)."""
        found = {name: self.get(name) for name in list(self.targets)}
        return {name: kind for name, kind in found.items() if kind is not None}

    def _drop(self, name: str, message: str) -> None:
        self.problems.append(KindProblem(self.package_of(name), name, message))
        self.targets.pop(name, None)


def discover() -> Registry:
    """A fresh registry from the built-in kinds and the installed entry points."""
    registry = Registry(targets=dict(BUILTIN))
    try:
        points = sorted(
            importlib.metadata.entry_points(group=GROUP),
            key=lambda point: (point.dist.name if point.dist else "", point.name),
        )
    except Exception as error:  # broken metadata of some distribution
        registry.problems.append(KindProblem("?", "?", f"entry points unreadable: {error}"))
        return registry
    for point in points:
        package = point.dist.name if point.dist else "?"
        if package == OWN_PACKAGE and BUILTIN.get(point.name) == point.value:
            continue
        if point.name in registry.targets:
            taken = registry.package_of(point.name)
            registry.problems.append(
                KindProblem(
                    package,
                    point.name,
                    f"is already registered by package {taken!r}; this "
                    "one is ignored (uninstall one of the two)",
                )
            )
            continue
        registry.targets[point.name] = point.value
        registry.packages[point.name] = package
    return registry


@functools.cache
def registry() -> Registry:
    """The registry of this process (discovered once)."""
    return discover()


def settings_models() -> dict[str, type[Any]]:
    """Settings model per kind other packages bring (their `settings_model`)."""
    found = registry()
    models: dict[str, type[Any]] = {}
    for name in found.names():
        if name in BUILTIN:
            continue
        kind = found.get(name)
        model = getattr(kind, "settings_model", None) if kind is not None else None
        if model is not None:
            models[name] = model
    return models


def problem_lines() -> list[str]:
    """Every problem of a kind package as a line, after trying to load each kind other
    packages bring (coursestack's own load when used: `up` stays light)."""
    found = registry()
    for name in found.names():
        if name not in BUILTIN:
            found.get(name)
    return [problem.line() for problem in found.problems]
