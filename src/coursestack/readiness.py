"""Waiting until services are ready: said once, for `up`, `start`, backup and restore.

A wait is a stream of snapshots (each a list of service views, as GET /api/services
gives them, as dicts) judged by one rule (`judge`). Snapshots come from one of two sources:

- `polled_services`: the daemon's API, asked every so often (`start`, backup, restore,
  and `up` where no readiness pipe exists);
- `notifications`: the readiness pipe a daemon started by `up` writes to (the idea of
  systemd's sd_notify READY=1): one JSON line per change, so `up` returns the moment the
  last service is ready instead of at its next poll. `Notifier` is the daemon's end.

Nothing here imports the rest of coursestack: the CLI, backup and the daemon all use it.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import select
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

View = dict[str, Any]


class Verdict(enum.Enum):
    """Where a wait stands."""

    WAITING = "waiting"
    READY = "ready"
    FAILED = "failed"


def given_up(view: View, since: Mapping[str, float] | None = None) -> bool:
    """True if the service will not become ready by itself.

    Without `since`, `failed` has given up. With `since` (each service's `since` before
    the caller asked it to start), only a `failed` or `stopped` reached *after* that
    counts: the old state may still show for a moment after the request.
    """
    if since is None:
        return bool(view["state"] == "failed")
    return view["state"] in ("failed", "stopped") and view["since"] != since.get(view["name"])


def is_ready(view: View) -> bool:
    """Ready, and settled: a start that proves nothing yet (after a crash, or ready at once
    as with probe "none") counts once it has lasted `stable_after` (the daemon's views
    say when, in `settles_in`), so a crash loop is not mistaken for ready."""
    return view["state"] == "ready" and float(view.get("settles_in") or 0.0) <= 0.0


def judge(
    views: Iterable[View], names: Iterable[str], since: Mapping[str, float] | None = None
) -> Verdict:
    """READY if every named service is ready, FAILED if one gave up, else WAITING."""
    wanted = set(names)
    chosen = [view for view in views if view["name"] in wanted]
    if len(chosen) == len(wanted) and all(is_ready(view) for view in chosen):
        return Verdict.READY
    if any(given_up(view, since) for view in chosen):
        return Verdict.FAILED
    return Verdict.WAITING


@dataclass(frozen=True)
class Outcome:
    """How a wait ended: the verdict (WAITING = timed out, or the source ended) and the
    last views of the named services."""

    verdict: Verdict
    views: list[View]

    @property
    def ready(self) -> bool:
        return self.verdict is Verdict.READY


def wait_until_ready(
    snapshots: Iterable[list[View]],
    names: Iterable[str],
    on_progress: Callable[[list[View]], None] | None = None,
    since: Mapping[str, float] | None = None,
) -> Outcome:
    """Follow `snapshots` until the named services are ready or one gave up (the one
    wait of coursestack: the snapshot source decides how long and how often)."""
    wanted = list(names)
    chosen: list[View] = []
    for views in snapshots:
        chosen = [view for view in views if view["name"] in wanted]
        if on_progress is not None:
            on_progress(chosen)
        verdict = judge(chosen, wanted, since)
        if verdict is not Verdict.WAITING:
            return Outcome(verdict, chosen)
    return Outcome(Verdict.WAITING, chosen)


class ServiceModel(Protocol):
    """A service view as the API client gives it (api_types.ServiceView)."""

    def model_dump(self) -> View: ...


class ServicesAPI(Protocol):
    """What `polled_services` needs of a daemon client (instances.DaemonClient)."""

    def services(self) -> Sequence[ServiceModel]: ...


def polled_services(
    client: ServicesAPI, timeout: float, interval: float = 0.05
) -> Iterator[list[View]]:
    """Every service, from the API every `interval` seconds, for `timeout` seconds at most."""
    deadline = time.monotonic() + timeout
    while True:
        yield [view.model_dump() for view in client.services()]
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


# -- the readiness pipe ----------------------------------------------------------------------


class PipeLost(Exception):
    """The daemon stopped writing to the readiness pipe before a verdict (it exited, or
    its reader was too slow); the caller falls back to asking the API."""


def notifications(fd: int, timeout: float) -> Iterator[list[View]]:
    """The snapshots a daemon writes to the readiness pipe `fd`, for `timeout` seconds.

    Ends quietly at the timeout; raises PipeLost when the pipe closes before the daemon
    said it was done (a verdict line), so the caller can find out why.
    """
    deadline = time.monotonic() + timeout
    pending = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            raise PipeLost("the readiness pipe closed")
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            message = json.loads(line)
            yield message["services"]
            if message.get("done"):
                return


class Notifier:
    """The daemon's end of the readiness pipe: a snapshot per change, until `names` are
    all ready or one failed (the last line says `done`), then the pipe is closed.

    Writes never block the daemon: if the reader does not keep up (a stopped terminal),
    the pipe is closed and the reader asks the API instead (see PipeLost).
    """

    def __init__(
        self,
        fd: int,
        names: Iterable[str],
        snapshot: Callable[[], list[View]],
        call_later: Callable[[float, Callable[[], None]], object],
    ) -> None:
        self._fd: int | None = fd
        self._names = list(names)
        self._snapshot = snapshot
        self._call_later = call_later
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)  # services must not hold the CLI waiting

    @property
    def open(self) -> bool:
        return self._fd is not None

    def changed(self, _event: object = None) -> None:
        """Send the current snapshot (a supervisor listener: called on every change)."""
        if self._fd is None:
            return
        views = self._snapshot()
        done = judge(views, self._names) is not Verdict.WAITING
        settling = [
            float(view.get("settles_in") or 0.0)
            for view in views
            if view["name"] in self._names and view["state"] == "ready"
        ]
        if not done and any(settling):  # no event comes when it settles: look again then
            self._call_later(max(settling), self.changed)
        line = json.dumps({"services": views, "done": done}).encode() + b"\n"
        try:
            written = os.write(self._fd, line)
        except OSError:  # the reader left (EPIPE) or is not reading (EAGAIN)
            written = -1
        if written != len(line) or done:
            self.close()

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
