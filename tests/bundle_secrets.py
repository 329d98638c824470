"""Finding secrets in a diagnostics bundle: shared by the unit and integration bundle tests."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from coursestack.state import StateFolder


def unpack(bundle: Path, into: Path) -> dict[str, str]:
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(into)
    return {
        str(p.relative_to(into)): p.read_text(encoding="utf-8")
        for p in into.rglob("*")
        if p.is_file()
    }


def values_in(document: Any) -> Iterator[tuple[str, str]]:
    if isinstance(document, dict):
        for key, value in document.items():
            if isinstance(value, str):
                yield str(key), value
            else:
                yield from values_in(value)
    elif isinstance(document, list):
        for value in document:
            yield from values_in(value)


def secrets_of(state: StateFolder) -> set[str]:
    """Every secret the instance has: secrets.json, connections.json, the daemon token."""
    found = set(json.loads((state.run / "secrets.json").read_text()).values())
    connections = json.loads(state.connections_file.read_text())
    found |= {
        value
        for key, value in values_in(connections)
        if any(word in key.lower() for word in ("password", "token", "secret"))
    }
    daemon = state.daemon()
    if daemon:
        found.add(daemon["token"])
    return {s for s in found if s}


def assert_no_secret(files: dict[str, str], secrets: set[str]) -> None:
    for secret in secrets:
        for form in {secret, quote(secret, safe="")}:
            leaks = [name for name, text in files.items() if form in text]
            assert not leaks, f"secret {form[:4]}… found in {leaks}"
