"""Every test under tests/integration starts real services (PostgreSQL, Jupyter, browsers,
daemons): all are marked `slow`, so `-m "not slow"` selects exactly tests/unit wherever
pytest is pointed."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)
