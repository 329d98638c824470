"""Exporters: one course.toml as another runtime's configuration, one module per target.

Each target module has `HELP` (one line), `IS_FOLDER` (whether `-o` names a folder or a
file) and `export(course, output) -> list[Path]`. Exporters ask the kinds for their
`ExportHints` and never name a kind.
"""

from __future__ import annotations

from types import ModuleType

TARGET_NAMES = ("image", "z2jh", "compose", "binder", "systemd", "launchd")


def target(name: str) -> ModuleType:
    """The module of export target `name` (imported when asked)."""
    import importlib

    return importlib.import_module(f"coursestack.export.{name}")
