"""Courses the export tests use: the sample course and two more from tests/data/export."""

from __future__ import annotations

from pathlib import Path

import pytest

from export_readback import COURSES


@pytest.fixture(params=sorted(COURSES))
def course_spec(request: pytest.FixtureRequest) -> Path:
    """Each test course's spec in turn."""
    path: Path = COURSES[request.param]
    return path
