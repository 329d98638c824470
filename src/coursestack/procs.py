"""Starting and stopping a service's process group: the one OS seam of the supervisor.

POSIX: each service gets its own session (so a signal reaches its whole process tree),
runs as the service account when we are root, and on Linux asks the kernel to send it
its stop signal if the daemon dies (no orphan keeps running unmanaged). Windows gets a new
process group and CTRL_BREAK instead; it is kept simple and not tested here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from coursestack.logs import rotate_by_rename
from coursestack.privileges import RunAs

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class LaunchSpec:
    """Everything needed to start one service process."""

    argv: Sequence[str]
    env: Mapping[str, str]
    cwd: Path
    log_file: Path
    run_as: RunAs | None = None
    stop_signal: int = signal.SIGTERM
    #: Rotate the log past this size, keeping this many old ones.
    log_max_bytes: int = 10 * 2**20
    log_keep: int = 3
    #: Most log output per second; a faster writer is slowed down (the pipe fills).
    log_rate: int = 4 * 2**20
    #: A cgroup's `cgroup.procs`: the child moves itself in before it runs the program.
    cgroup_procs: Path | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class ProcessHandle(Protocol):
    """A started process, as the supervisor sees it."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def signal_group(self, signum: int) -> None: ...


class Launcher(Protocol):
    """Starts processes (the real one spawns; tests use a fake)."""

    async def launch(self, spec: LaunchSpec) -> ProcessHandle: ...


class LogPump:
    """Copies a service's output from its pipe to its log file, rotating by size.

    The daemon owns the file, so rotation is a rename, not a copy; and output beyond
    `log_rate` bytes a second waits in the pipe, which slows the writer down instead of
    filling the disk or a core. A service writing gigabytes costs a bounded log.
    """

    def __init__(self, stream: asyncio.StreamReader, spec: LaunchSpec) -> None:
        self._stream = stream
        self._spec = spec
        self.task = asyncio.create_task(self._run(), name=f"log:{spec.log_file.name}")

    def _open(self) -> Any:
        # Owner-only: a log may quote connection strings with passwords.
        fd = os.open(self._spec.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        return open(fd, "ab", buffering=0)

    async def _run(self) -> None:
        spec = self._spec
        log = self._open()
        window_start, window_bytes = time.monotonic(), 0
        try:
            while chunk := await self._stream.read(65536):
                log.write(chunk)
                if log.tell() > spec.log_max_bytes:
                    log.close()
                    rotate_by_rename(spec.log_file, spec.log_keep)
                    log = self._open()
                window_bytes += len(chunk)
                elapsed = time.monotonic() - window_start
                if elapsed >= 1.0:
                    window_start, window_bytes = time.monotonic(), 0
                elif window_bytes >= spec.log_rate:
                    await asyncio.sleep(1.0 - elapsed)
                    window_start, window_bytes = time.monotonic(), 0
        except OSError:
            pass  # a full disk must not take the daemon down; the service goes on
        finally:
            log.close()


class OSProcess:
    """A real child process in its own session/process group."""

    def __init__(self, process: asyncio.subprocess.Process, pump: LogPump | None) -> None:
        self._process = process
        self._pump = pump
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        code = await self._process.wait()
        if self._pump is not None:
            # Let its last words reach the log (a crash reason quotes them); a grandchild
            # still holding the pipe must not keep us waiting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump.task), 1.0)
        return code

    def signal_group(self, signum: int) -> None:
        signal_process_group(self.pid, signum)


def signal_process_group(pid: int, signum: int) -> None:
    """Send `signum` to the process group led by `pid`; gone already is fine."""
    if sys.platform == "win32":  # pragma: no cover - not tested on this machine
        with contextlib.suppress(ProcessLookupError, OSError):
            os.kill(pid, signal.CTRL_BREAK_EVENT if signum != signal.SIGKILL else signal.SIGTERM)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _child_setup(stop_signal: int, cgroup_procs: Path | None) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None

    def in_the_child_before_exec() -> None:
        # Runs in the child after setuid (which would clear the setting), before exec.
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, stop_signal, 0, 0, 0)
        if cgroup_procs is not None:
            # Before the program runs, so every process it forks is limited too.
            with open(cgroup_procs, "w") as procs:
                procs.write("0")

    return in_the_child_before_exec


class OSLauncher:
    """Spawns real processes with output appended to the service's log file."""

    async def launch(self, spec: LaunchSpec) -> ProcessHandle:
        spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, object] = {}
        if sys.platform == "win32":  # pragma: no cover
            kwargs["creationflags"] = 0x00000200  # CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
            kwargs["preexec_fn"] = _child_setup(spec.stop_signal, spec.cgroup_procs)
            if spec.run_as is not None:
                kwargs["user"] = spec.run_as.uid
                kwargs["group"] = spec.run_as.gid
                kwargs["extra_groups"] = []
        process = await asyncio.create_subprocess_exec(
            *spec.argv, cwd=str(spec.cwd), env=dict(spec.env),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, limit=1 << 20,
            **kwargs,  # type: ignore[arg-type]
        )
        assert process.stdout is not None
        return OSProcess(process, LogPump(process.stdout, spec))


def process_tree_memory(pid: int) -> int | None:
    """Resident memory of a process and its children, in bytes (None if it is gone)."""
    try:
        root = psutil.Process(pid)
        total = root.memory_info().rss
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return int(total)
    except psutil.Error:
        return None


def process_identity(pid: int) -> float | None:
    """Creation time of `pid`, so a recorded pid is not confused with a reused one."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def kill_leftover_group(pid: int, created: float, grace: float, stop_signal: int) -> bool:
    """Stop a process group recorded by a daemon that died; True if one was found."""
    if process_identity(pid) != created:
        return False
    signal_process_group(pid, stop_signal)
    try:
        psutil.Process(pid).wait(timeout=grace)
    except psutil.TimeoutExpired:
        signal_process_group(pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).wait(timeout=5)
    except psutil.Error:
        pass
    # Children that outlived their leader (kernels, backends) share its group id.
    signal_process_group(pid, signal.SIGKILL)
    return True


def stop_recorded_processes(pids_file: Path) -> list[str]:
    """Stop every process group recorded in `pids_file` that is still the same process.

    The daemon records each service's pid and creation time; after the daemon dies
    (kill -9, power loss), the next `up` or `down` stops what it left behind.
    """
    from coursestack.state import read_json

    recorded = read_json(pids_file, {})
    cleaned = []
    for name, entry in (recorded if isinstance(recorded, dict) else {}).items():
        try:
            found = kill_leftover_group(int(entry["pid"]), float(entry["created"]),
                                        float(entry.get("grace", 10)),
                                        int(entry.get("signal", signal.SIGTERM)))
        except (KeyError, TypeError, ValueError):
            continue
        if found:
            cleaned.append(str(name))
    return cleaned
