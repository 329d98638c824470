"""Shared fixtures: a private COURSESTACK_HOME, the CLI, and a running sample instance.

Instances started here are real: a real PostgreSQL and a real Jupyter Server. Folders are
made traversable because, when the tests run as root, services run as an unprivileged
user who must reach them (pytest's own temp folders are private to root).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from coursestack.instances import Instance
from coursestack.state import StateFolder
from support import cli, open_folder


@pytest.fixture(scope="session", autouse=True)
def coursestack_home() -> Iterator[Path]:
    """Every test works in its own COURSESTACK_HOME, never the user's real instances."""
    home = open_folder("home-")
    previous = os.environ.get("COURSESTACK_HOME")
    os.environ["COURSESTACK_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("COURSESTACK_HOME", None)
    else:
        os.environ["COURSESTACK_HOME"] = previous


@pytest.fixture
def workdir() -> Path:
    """A traversable scratch folder for one test."""
    return open_folder("work-")


@pytest.fixture(scope="session")
def sample_instance() -> Iterator[Instance]:
    """The embedded sample course, up (PostgreSQL + Jupyter), shared by a session."""
    state = open_folder("sample-")
    cli("up", "--state", str(state))
    instance = Instance("sample", StateFolder(state))
    yield instance
    cli("down", "--state", str(state), check=False)
