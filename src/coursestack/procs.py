"""Starting and stopping a service's processes: the one OS seam of the supervisor.

POSIX: each service gets its own session (its stop signal goes to that process group;
SIGKILL goes to every process it started, see `proctree`),
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from coursestack.logpump import LogPump
from coursestack.privileges import RunAs
from coursestack.proctree import ProcessTree, pipe_inode
from coursestack.units import MB

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
    log_max_bytes: int = 10 * MB
    log_keep: int = 3
    #: Most log output per second; more is dropped and counted (never left in the pipe).
    log_rate: int = 4 * MB
    #: Lines holding this are left out of the log (a probe's own lines).
    log_filter: bytes | None = None
    #: A cgroup's `cgroup.procs`: the child moves itself in before it runs the program.
    cgroup_procs: Path | None = None
    extra: Mapping[str, str] = field(default_factory=dict)


class ProcessHandle(Protocol):
    """A started process, as the supervisor sees it."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def signal_group(self, signum: int) -> None:
        """Send `signum` to the process group (the polite stop signal)."""
        ...

    def kill_all(self) -> None:
        """SIGKILL every process the service started, in whatever group or session."""
        ...

    async def all_exited(self) -> None:
        """Return once no process of the service holds its output pipe any more."""
        ...

    def output_note(self) -> str:
        """What the log pump had to drop, for the status ("" if nothing)."""
        ...


class Launcher(Protocol):
    """Starts processes (the real one spawns; tests use a fake)."""

    async def launch(self, spec: LaunchSpec) -> ProcessHandle: ...


class OSProcess:
    """A real child process in its own session, with every process it starts."""

    def __init__(
        self, process: asyncio.subprocess.Process, pump: LogPump | None, tree: ProcessTree
    ) -> None:
        self._process = process
        self._pump = pump
        self._tree = tree
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        """The leader's exit status, as soon as it exits (not when its pipe closes)."""
        code = await _exit_of(self._process)
        if self._pump is not None:
            # Let its last words reach the log (a crash reason quotes them); a grandchild
            # still holding the pipe must not keep us waiting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._pump.task), 1.0)
        return code

    def signal_group(self, signum: int) -> None:
        # Before the leader goes, while its children still look like his.
        self._tree.remember()
        signal_process_group(self.pid, signum)

    def kill_all(self) -> None:
        signal_process_group(self.pid, signal.SIGKILL)
        self._tree.kill_all()

    async def all_exited(self) -> None:
        await _exit_of(self._process)
        if self._pump is not None:
            await asyncio.shield(self._pump.task)

    def output_note(self) -> str:
        return self._pump.note() if self._pump is not None else ""


async def _exit_of(process: asyncio.subprocess.Process) -> int:
    """Wait for a process to exit. On Python 3.11 `Process.wait()` returns only once every
    pipe is closed too, which a grandchild holding the output pipe can put off forever; a
    pidfd (Linux) says when the process itself has exited, else its status is polled."""
    if process.returncode is not None:
        return process.returncode
    loop = asyncio.get_running_loop()
    closed = asyncio.ensure_future(process.wait())
    try:
        pidfd = os.pidfd_open(process.pid) if hasattr(os, "pidfd_open") else None
    except OSError:
        pidfd = None  # already reaped: its status arrives at once
    try:
        if pidfd is not None:
            exited: asyncio.Future[int] = loop.create_future()

            def on_exit() -> None:
                if not exited.done():
                    exited.set_result(0)

            loop.add_reader(pidfd, on_exit)
            try:
                await asyncio.wait({exited, closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                loop.remove_reader(pidfd)
                os.close(pidfd)
        # The child watcher reaps it and sets the status a moment after it exits.
        while process.returncode is None and not closed.done():
            await asyncio.wait({closed}, timeout=0.02 if pidfd is not None else 0.5)
    finally:
        if not closed.done():
            closed.cancel()
    code = process.returncode
    assert code is not None
    return code


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
            *spec.argv,
            cwd=str(spec.cwd),
            env=dict(spec.env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=1 << 20,
            **kwargs,  # type: ignore[arg-type]
        )
        assert process.stdout is not None
        pipe = process.stdout._transport.get_extra_info("pipe")  # type: ignore[attr-defined]
        tree = ProcessTree(
            process.pid, pipe_inode(pipe.fileno()) if pipe else None, spec.cgroup_procs
        )
        return OSProcess(process, LogPump(process.stdout, spec), tree)


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


def kill_leftover_group(
    pid: int, created: float, grace: float, stop_signal: int, cgroup_procs: Path | None = None
) -> bool:
    """Stop a service left by a daemon that died, and all it started; True if found."""
    if process_identity(pid) != created:
        return False
    tree = ProcessTree(pid, cgroup_procs=cgroup_procs)
    tree.remember()
    signal_process_group(pid, stop_signal)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=grace)
    tree.kill_all()
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
            found = kill_leftover_group(
                int(entry["pid"]),
                float(entry["created"]),
                float(entry.get("grace", 10)),
                int(entry.get("signal", signal.SIGTERM)),
                Path(entry["cgroup"]) if entry.get("cgroup") else None,
            )
        except (KeyError, TypeError, ValueError):
            continue
        if found:
            cleaned.append(str(name))
    return cleaned
