"""Watch every process's command line while something runs (secrets must never be there).

`ps` shows any process's arguments to every local user, so a password or token on a
command line is a password for everybody. `CommandLineSampler` reads `/proc/*/cmdline`
in a tight loop in a thread, keeping each distinct command line it sees, so even
short-lived children (initdb, psql, pg_dump, a browser opened by `up --open`) are caught.

    with CommandLineSampler() as sampler:
        cli("up", ...)
    sampler.assert_free_of(secrets)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from types import TracebackType


class CommandLineSampler:
    """Collects the distinct command lines of all processes until stopped."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmdline-sampler", daemon=True)

    def _run(self) -> None:
        own = str(os.getpid())
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit() or pid == own:
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        raw = handle.read()
                except OSError:
                    continue
                if raw:
                    self.seen.add(raw.replace(b"\0", b" ").decode("utf-8", "replace"))
            self.rounds += 1

    def __enter__(self) -> CommandLineSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def containing(self, secret: str) -> list[str]:
        """The command lines seen that contain `secret`."""
        return [line for line in self.seen if secret in line]

    def assert_free_of(self, secrets: Iterable[str]) -> None:
        """Fail, quoting the command lines, if any secret appeared on one."""
        leaks = {
            secret[:6] + "…": found
            for secret in secrets
            if secret
            for found in [self.containing(secret)]
            if found
        }
        assert not leaks, f"secrets on command lines (seen by every local user): {leaks}"
        assert self.rounds > 10, "the sampler hardly ran"
