"""Per-service memory limits enforced by the kernel, where a cgroup hierarchy is writable.

Linux only, and only when coursestack may create cgroups (root in a container or CI, or
a delegated hierarchy): a service then runs in its own cgroup with its `memory_limit`,
the kernel kills it if it goes over, and the kill is recognised and reported as such.
Elsewhere (a student's laptop, macOS, Windows) the supervisor's own sampling of each
service's memory is the limit (see `Service._watch`). Both cgroup versions are handled:
v2 (`memory.max`, `memory.events`) and v1 (`memory.limit_in_bytes`, `memory.oom_control`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from coursestack.privileges import RunAs

_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class MemoryCgroup:
    """One service's cgroup."""

    path: Path
    version: int

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """How many times the kernel killed a process here for memory."""
        name, key = (
            ("memory.events", "oom_kill")
            if self.version == 2
            else ("memory.oom_control", "oom_kill")
        )
        try:
            for line in (self.path / name).read_text().splitlines():
                field, _, value = line.partition(" ")
                if field == key:
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    def remove(self) -> None:
        """Remove the cgroup (once its processes are gone)."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


def _hierarchy() -> tuple[Path, int] | None:
    """The writable memory hierarchy to create groups in, and its version."""
    v2 = _ROOT / "cgroup.controllers"
    if v2.exists():
        own = _own_v2_group()
        if own is not None and "memory" in (own / "cgroup.subtree_control").read_text().split():
            return own, 2
        return None
    v1 = _ROOT / "memory"
    if (v1 / "memory.limit_in_bytes").exists() and os.access(v1, os.W_OK):
        return v1, 1
    return None


def _own_v2_group() -> Path | None:
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                group = _ROOT / line[3:].lstrip("/")
                return group if os.access(group, os.W_OK) else None
    except OSError:
        return None
    return None


def create(
    instance_key: str, service: str, limit: int | None, account: RunAs | None
) -> MemoryCgroup | None:
    """A cgroup for `service` (limited to `limit` bytes, if given), or None where that is
    not possible. Without a limit it still lists every process of the service."""
    found = _hierarchy()
    if found is None:
        return None
    base, version = found
    group = base / "coursestack" / instance_key / service
    try:
        group.mkdir(parents=True, exist_ok=True)
        # The service account opens cgroup.procs itself: it must pass these folders
        # (the daemon's umask makes new folders owner-only).
        for folder in (base / "coursestack", group.parent, group):
            os.chmod(folder, 0o711)
        if version == 2:
            for parent in (base / "coursestack", base / "coursestack" / instance_key):
                with contextlib.suppress(OSError):
                    (parent / "cgroup.subtree_control").write_text("+memory")
            (group / "memory.max").write_text(str(limit) if limit is not None else "max")
            with contextlib.suppress(OSError):
                (group / "memory.swap.max").write_text("0" if limit is not None else "max")
        else:
            (group / "memory.limit_in_bytes").write_text(str(limit) if limit is not None else "-1")
        if account is not None:
            # The service moves itself in, after it has become the service account.
            os.chown(group / "cgroup.procs", account.uid, account.gid)
    except OSError:
        return None
    return MemoryCgroup(group, version)
