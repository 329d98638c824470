"""Starting an instance's daemon for `up`: forked from the CLI, or a new interpreter.

Fork (where the OS has it): the CLI has already loaded the spec and the kind registry,
so the child goes straight on to the daemon's own imports and its first launch, and no
second interpreter starts (docs/benchmarks-core.md has the figures). The fork happens
before the CLI imports typer and rich (entry.py) and before any thread or event loop
exists, and the child becomes a proper daemon: its own session, stdio on daemon.log,
umask 077, no inherited descriptors but the readiness pipe, default signal handlers.

Spawn (Windows, or `COURSESTACK_DAEMON_START=spawn`): `python -m coursestack daemon`, as
before, handed the same readiness pipe where the OS can pass descriptors.

Either way the daemon writes its progress to the readiness pipe (readiness.py) and the
CLI returns the moment it reads that every service is ready.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coursestack.spec import CourseSpec

#: `fork` (default where os.fork exists) or `spawn`: how `up` starts the daemon.
START_METHOD_VARIABLE = "COURSESTACK_DAEMON_START"


def start_method() -> str:
    """`fork` where the OS allows it and nobody asked for `spawn`, else `spawn`."""
    wanted = os.environ.get(START_METHOD_VARIABLE, "fork")
    if wanted == "fork" and hasattr(os, "fork") and sys.platform != "win32":
        return "fork"
    return "spawn"


@dataclass
class StartedDaemon:
    """A daemon `up` has just started: its pid, how, and the read end of its readiness
    pipe (None where the OS cannot pass one: the CLI then asks the API)."""

    pid: int
    method: str
    notify_fd: int | None
    process: subprocess.Popen[bytes] | None = None
    _code: int | None = None

    def exit_code(self) -> int | None:
        """The daemon's exit status if it has ended, else None (never blocks)."""
        if self._code is not None:
            return self._code
        if self.process is not None:
            self._code = self.process.poll()
        else:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == self.pid:
                self._code = os.waitstatus_to_exitcode(status)
        return self._code

    def close(self) -> None:
        """Stop reading the readiness pipe (the daemon goes on without it)."""
        if self.notify_fd is not None:
            os.close(self.notify_fd)
            self.notify_fd = None


def start_daemon_for_up(
    state_root: Path, course: CourseSpec, log_path: Path, method: str | None = None
) -> StartedDaemon:
    """Start the daemon of the instance in `state_root` by `method` (see start_method)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if (method or start_method()) == "fork":
        return fork_daemon(state_root, course, log_path)
    return spawn_daemon(state_root, log_path)


def fork_daemon(state_root: Path, course: CourseSpec, log_path: Path) -> StartedDaemon:
    """Fork the daemon from this process, which must have no other thread."""
    # A thread in the parent would be missing in the child, its locks held forever.
    if threading.active_count() != 1:
        raise RuntimeError(f"fork_daemon with {threading.active_count()} threads running")
    read_fd, write_fd = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # or the child writes the CLI's buffers again
        stream.flush()
    pid = os.fork()
    if pid == 0:  # the daemon: never returns into the CLI's code
        code = 1
        try:
            os.close(read_fd)
            code = _run_forked_daemon(state_root, course, log_path, write_fd)
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(code)
    os.close(write_fd)
    return StartedDaemon(pid, "fork", read_fd)


def _run_forked_daemon(state_root: Path, course: CourseSpec, log_path: Path, notify_fd: int) -> int:
    """In the forked child: become a daemon, then run it with the spec the CLI loaded."""
    become_daemon(log_path, keep_fd=notify_fd)
    name_process(f"{sys.executable} -m coursestack daemon --state {state_root}")
    from coursestack.daemon import run_daemon

    return run_daemon(state_root, spec=course, notify_fd=notify_fd, start="fork")


def become_daemon(log_path: Path, keep_fd: int) -> None:
    """Detach this (forked) process as `python -m coursestack daemon` would start: a new
    session, umask 077, stdin from /dev/null, stdout and stderr on `log_path`, no other
    descriptor than `keep_fd`, and the signal handlers of a fresh interpreter."""
    os.setsid()  # no terminal: Ctrl-C at the CLI or a closed terminal leaves it alone
    os.umask(0o077)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    # Everything else the CLI had open (its own pipes to a caller, say) is closed, and
    # with it the two descriptors just copied.
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, _max_fd())
    for signum in (
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGCHLD,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGALRM,
    ):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as Python sets it at start
    signal.set_wakeup_fd(-1)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _max_fd() -> int:
    try:
        return int(os.sysconf("SC_OPEN_MAX"))
    except (OSError, ValueError):
        return 65536


def name_process(title: str) -> None:
    """Show the forked daemon in `ps` as what it is, the same line a spawned one has (the
    CLI's `coursestack up ...` otherwise; tools and tests find daemons by this line)."""
    try:
        import setproctitle
    except ImportError:  # optional: only the name in `ps` differs
        return
    setproctitle.setproctitle(title)
    # A shorter title leaves NULs after it, and readers of /proc/PID/cmdline (psutil) then
    # take the whole title for one argument; filled up with spaces to the end of the
    # space it has, it reads as arguments separated by spaces (as setproctitle intends).
    try:
        with open("/proc/self/cmdline", "rb") as cmdline:
            room = len(cmdline.read())
    except OSError:
        return
    if room > len(title) + 1:
        setproctitle.setproctitle(title + " " * (room - len(title) - 1))


def spawn_daemon(state_root: Path, log_path: Path) -> StartedDaemon:
    """Start `python -m coursestack daemon` in the background with the readiness pipe."""
    from coursestack.instances import launch_daemon_process

    process, read_fd = launch_daemon_process(state_root, log_path, notify=True)
    return StartedDaemon(process.pid, "spawn", read_fd, process)
