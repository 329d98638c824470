"""Draining a service's output into its log: the pipe is read always, whatever the disk says.

A service writes to a pipe that only the daemon reads. If the daemon stopped reading, the
pipe would fill (64 KB on Linux) and every process of the service that writes a line
would block in `write()`: a PostgreSQL backend that logs a warning, a Jupyter kernel that
prints. So reading never stops while the pipe is open. What cannot be written is dropped
and counted instead: output past `[logs] rate` bytes a second, and everything while the
log file cannot be written (disk full, folder gone). Once writing works again, one line in
the log says how much was dropped and why; `note()` says it for the status and dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from coursestack.logs import rotate_by_rename
from coursestack.units import format_size

#: How often a log file that failed is tried again.
RETRY_SECONDS = 1.0
#: Largest read from the pipe: big enough that a flood costs few wake-ups.
READ_SIZE = 1 << 18
#: An incomplete line longer than this is written as it is (never held back forever).
MAX_HELD_LINE = 1 << 16


class PumpSettings(Protocol):
    """What the pump needs to know of a launch (a `LaunchSpec`)."""

    @property
    def log_file(self) -> Path: ...

    @property
    def log_max_bytes(self) -> int: ...

    @property
    def log_keep(self) -> int: ...

    @property
    def log_rate(self) -> int: ...

    @property
    def log_filter(self) -> bytes | None: ...


class LogPump:
    """Copies a service's output from its pipe to its log file, rotating by size.

    The daemon owns the file, so rotation is a rename, not a copy. Reading never waits for
    the file: output over the rate limit or while the file cannot be written is dropped
    and counted (`dropped`), the file is tried again every second, and the first write
    that works is preceded by one line saying what was dropped.
    """

    def __init__(
        self,
        stream: asyncio.StreamReader,
        settings: PumpSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._settings = settings
        self._clock = clock
        self._log: IO[bytes] | None = None
        self._retry_at = 0.0
        self._window_start = clock()
        self._window_bytes = 0
        self._held = b""
        self._ends_with_newline = True
        #: Bytes dropped since launch, and why the last were.
        self.dropped = 0
        self.drop_reason = ""
        #: Dropped since the last line in the log that said so.
        self._unreported = 0
        self._unreported_since = 0.0
        self._unreported_reasons: list[str] = []
        self.failing: str | None = None
        self._filter = (
            re.compile(rb"[^\n]*" + re.escape(settings.log_filter) + rb"[^\n]*\n")
            if settings.log_filter
            else None
        )
        self.task = asyncio.create_task(self._run(), name=f"log:{settings.log_file.name}")

    def note(self) -> str:
        """A line for the status: what was dropped and whether the log is written now."""
        if self.failing is not None:
            return (
                f"log not written ({self.failing}); {format_size(self.dropped)} of output "
                "dropped so far, the pipe is still read"
            )
        if self.dropped:
            return f"{format_size(self.dropped)} of output dropped ({self.drop_reason})"
        return ""

    async def _run(self) -> None:
        try:
            while chunk := await self._stream.read(READ_SIZE):
                self.take(chunk)
            self.finish()
        finally:
            self._close()

    def take(self, chunk: bytes) -> None:
        """Handle one read from the pipe: filter, limit the rate, write or drop."""
        data = self._filtered(chunk)
        if not data:
            return
        now = self._clock()
        if now - self._window_start >= 1.0:
            self._window_start, self._window_bytes = now, 0
        if self._window_bytes >= self._settings.log_rate:
            self._drop(
                len(data),
                f"over the [logs] rate of {format_size(self._settings.log_rate)} a second",
            )
            return
        self._window_bytes += len(data)
        self._write(data, now)

    def finish(self) -> None:
        """End of output: write a held-back incomplete line."""
        held, self._held = self._held, b""
        if held:
            self._write(held, self._clock())

    def _filtered(self, chunk: bytes) -> bytes:
        """Without the lines a probe makes the service write (they are not the course's)."""
        if self._filter is None:
            return chunk
        data = self._held + chunk
        end = data.rfind(b"\n") + 1
        if len(data) - end > MAX_HELD_LINE:
            end = len(data)
        # An incomplete line is held back so that a probe's line split between two reads
        # is still recognised; the service's next write (or its end) completes it.
        complete, self._held = data[:end], data[end:]
        if self._settings.log_filter and self._settings.log_filter in complete:
            complete = self._filter.sub(b"", complete)
        return complete

    def _drop(self, count: int, reason: str) -> None:
        if not self._unreported:
            self._unreported_since = time.time()
        self.dropped += count
        self._unreported += count
        self.drop_reason = reason
        if reason not in self._unreported_reasons:
            self._unreported_reasons.append(reason)

    def _write(self, data: bytes, now: float) -> None:
        if not self._ensure_open(now, len(data)):
            self._drop(len(data), self.drop_reason)
            return
        assert self._log is not None
        try:
            if self._unreported:
                self._write_all(self._dropped_line())
                self._unreported, self._unreported_reasons = 0, []
            self._write_all(data)
        except _PartialWrite as partial:
            self._fail(partial.error, now)
            # What the note line took is not the service's output: count the data only.
            self._drop(
                len(data) - (partial.written if not self._unreported else 0), self.drop_reason
            )
            return
        self.failing = None

    def _open_log(self) -> IO[bytes]:
        # Owner-only: a log may quote connection strings with their passwords.
        fd = os.open(
            self._settings.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
        )
        return open(fd, "ab", buffering=0)

    def _ensure_open(self, now: float, coming: int) -> bool:
        """An open log with room for `coming` bytes (rotated first if need be); False if
        the file cannot be opened now (it is tried again after RETRY_SECONDS)."""
        if self._log is None and now < self._retry_at:
            return False
        try:
            if self._log is None:
                self._log = self._open_log()
            size = self._log.tell()
            # Rotated before a write would take it past max_size: it stays below that.
            if size and size + coming > self._settings.log_max_bytes:
                self._close()
                rotate_by_rename(self._settings.log_file, self._settings.log_keep)
                self._log = self._open_log()
        except OSError as error:
            self._fail(error, now)
            return False
        return True

    def _write_all(self, data: bytes) -> int:
        assert self._log is not None
        done = 0
        while done < len(data):
            try:
                count = self._log.write(data[done:])
            except OSError as error:
                raise _PartialWrite(done, error) from None
            if not count:
                raise _PartialWrite(done, OSError("the log file took no bytes"))
            done += count
        if data:
            self._ends_with_newline = data.endswith(b"\n")
        return done

    def _dropped_line(self) -> bytes:
        since = time.strftime("%H:%M:%S", time.localtime(self._unreported_since))
        until = time.strftime("%H:%M:%S")
        start = b"" if self._ends_with_newline else b"\n"
        text = (
            f"[coursestack] {format_size(self._unreported)} of output dropped between "
            f"{since} and {until}: {'; '.join(self._unreported_reasons)}\n"
        )
        return start + text.encode()

    def _fail(self, error: OSError, now: float) -> None:
        self._close()
        self._retry_at = now + RETRY_SECONDS
        self.failing = error.strerror or str(error)
        self.drop_reason = f"log file not writable: {self.failing}"

    def _close(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):  # a close that fails on a full disk
                self._log.close()  # loses nothing more
            self._log = None


class _PartialWrite(Exception):
    def __init__(self, written: int, error: OSError) -> None:
        super().__init__(str(error))
        self.written = written
        self.error = error
