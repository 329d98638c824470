"""Helpers for tests: traversable scratch folders and the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from coursestack.instances import Instance

_BASE = Path(tempfile.gettempdir()) / "coursestack-tests"


#: Every folder open_folder made in this session (the session's clean-up looks there).
MADE: list[Path] = []
#: Service accounts of state folders that vanish before the session ends (unmounted).
ACCOUNTS_SEEN: set[str] = set()


def open_folder(prefix: str) -> Path:
    """A new folder every user can traverse (services may run as another user)."""
    _BASE.mkdir(exist_ok=True)
    os.chmod(_BASE, 0o755)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=_BASE))
    os.chmod(folder, 0o755)
    MADE.append(folder)
    return folder


def cli(
    *args: str, check: bool = True, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `coursestack` command line."""
    result = subprocess.run(
        [sys.executable, "-m", "coursestack", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"coursestack {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def wait_for(predicate: Any, timeout: float = 90.0, what: str = "condition") -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ready(
    instance: Instance, names: tuple[str, ...] = ("postgres", "jupyter"), timeout: float = 120.0
) -> None:
    """Other tests share the sample instance and may be restarting a service: wait."""
    client = instance.client()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {s.name: s.state for s in client.services()}
            if all(states.get(name) == "ready" for name in names):
                return
            time.sleep(0.2)
    finally:
        client.close()
    raise AssertionError(f"sample services not ready: {states}")
