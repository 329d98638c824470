"""Helpers for tests: traversable scratch folders and the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_BASE = Path(tempfile.gettempdir()) / "coursestack-tests"


def open_folder(prefix: str) -> Path:
    """A new folder every user can traverse (services may run as another user)."""
    _BASE.mkdir(exist_ok=True)
    os.chmod(_BASE, 0o755)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=_BASE))
    os.chmod(folder, 0o755)
    return folder


def cli(*args: str, check: bool = True, timeout: float = 300,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `coursestack` command line."""
    result = subprocess.run([sys.executable, "-m", "coursestack", *args], capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, **(env or {})},
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"coursestack {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


