"""Every process a service started, so that a stop leaves none behind.

A signal to the service's process group misses children that made their own group or
session: PostgreSQL's backends and Jupyter's kernels do, and so does anything started
with `setsid`. Those can outlive the service and keep its output pipe open. So at stop
time the service's processes are gathered from every source there is, and the whole set
gets SIGKILL after the grace period:

- the service's cgroup, where coursestack could make one (it misses nothing);
- the leader's descendants, as `psutil` sees them (remembered before the stop signal, as
  children of a leader that has exited are adopted by init and no longer look like his);
- processes in the leader's process group or session;
- processes holding the service's output pipe (on Linux, from /proc), which catches one
  that escaped every other way but would still keep the pipe open.

Processes are held as `psutil.Process` objects, which check a pid's creation time before
signalling it, so a reused pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil


class ProcessTree:
    """The processes of one service: the leader and all it started."""

    def __init__(
        self, leader: int, pipe_inode: int | None = None, cgroup_procs: Path | None = None
    ) -> None:
        self.leader = leader
        self.pipe_inode = pipe_inode
        self.cgroup_procs = cgroup_procs
        self._known: dict[int, psutil.Process] = {}

    def remember(self) -> list[psutil.Process]:
        """Gather the service's live processes now (adds to what was gathered before)."""
        found: list[psutil.Process | None] = []
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.leader)
            found += [root, *root.children(recursive=True)]
        found += [self._process(pid) for pid in self._cgroup_members()]
        found += [self._process(pid) for pid in self._group_and_pipe_members()]
        for process in found:
            if process is not None and process.pid != os.getpid():
                self._known.setdefault(process.pid, process)
        # Descendants of every member (a kernel's own children, for one).
        for process in list(self._known.values()):
            with contextlib.suppress(psutil.Error):
                for child in process.children(recursive=True):
                    self._known.setdefault(child.pid, child)
        return self.alive()

    def alive(self) -> list[psutil.Process]:
        """Gathered processes that still run (zombies count as gone)."""
        living = []
        for process in self._known.values():
            with contextlib.suppress(psutil.Error):
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    living.append(process)
        return living

    def kill_all(self) -> int:
        """SIGKILL every process of the service, again until none is left; how many."""
        killed = 0
        for _ in range(10):  # a process may fork while we kill: gather again
            living = self.remember()
            if not living:
                break
            for process in living:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(signal.SIGKILL)
                    killed += 1
        return killed

    def _process(self, pid: int) -> psutil.Process | None:
        try:
            return psutil.Process(pid)
        except psutil.Error:
            return None

    def _cgroup_members(self) -> list[int]:
        if self.cgroup_procs is None:
            return []
        try:
            return [int(line) for line in self.cgroup_procs.read_text().split()]
        except (OSError, ValueError):
            return []

    def _group_and_pipe_members(self) -> list[int]:
        """Processes in the leader's group or session, or holding the output pipe."""
        pipe = f"pipe:[{self.pipe_inode}]" if self.pipe_inode is not None else None
        members = []
        for pid in psutil.pids():
            try:
                if os.getpgid(pid) == self.leader or os.getsid(pid) == self.leader:
                    members.append(pid)
                    continue
            except OSError:
                continue
            if pipe is not None and _holds(pid, pipe):
                members.append(pid)
        return members


def _holds(pid: int, target: str) -> bool:
    """True if process `pid` has `target` (e.g. "pipe:[123]") among its open files."""
    folder = f"/proc/{pid}/fd"
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    for name in names:
        with contextlib.suppress(OSError):
            if os.readlink(f"{folder}/{name}") == target:
                return True
    return False


def pipe_inode(fd: int) -> int | None:
    """The inode of a pipe (both ends share it), to find who else holds it."""
    try:
        return os.fstat(fd).st_ino
    except OSError:
        return None
