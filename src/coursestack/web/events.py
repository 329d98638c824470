"""Server-sent events: state changes pushed to every open dashboard and API stream.

One `Broker` per daemon listens to the supervisor and fans each change out to a bounded
queue per subscriber; a slow subscriber whose queue overflows is dropped (its browser
reconnects and gets a fresh snapshot). A single ticker refreshes heartbeats, uptime and
memory for everybody at once, so 100 open streams cost one snapshot per tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from coursestack.supervisor import Event, Supervisor

Snapshot = Callable[[], list[dict[str, Any]]]
ServiceView = Callable[[str], dict[str, Any]]

QUEUE_SIZE = 256
KEEPALIVE = 15.0
RETRY_MS = 1000


def sse(event: str, data: Any) -> bytes:
    """One server-sent event (data is JSON, one line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Broker:
    """Fans supervisor events out to subscribers."""

    def __init__(
        self, supervisor: Supervisor, snapshot: Snapshot, view: ServiceView, tick: float = 2.0
    ) -> None:
        self._supervisor = supervisor
        self._snapshot = snapshot
        self._view = view
        self._tick = tick
        #: Each subscriber's queue of encoded events (None: end of stream).
        self._queues: set[asyncio.Queue[bytes | None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        supervisor.add_listener(self._on_event)

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def _on_event(self, event: Event) -> None:
        if not self._queues:
            return
        self._broadcast(
            sse("state", {"event": event.as_dict(), "service": self._view(event.service)})
        )

    def _broadcast(self, message: bytes | None) -> None:
        """Queue one event for every subscriber (encoded once, however many they are)."""
        for queue in list(self._queues):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                # Too slow to keep up: end its stream; the client reconnects.
                self._queues.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)

    async def _tick_loop(self) -> None:
        while self._queues:
            await asyncio.sleep(self._tick)
            if self._queues:
                self._broadcast(sse("tick", self._snapshot()))

    def close(self) -> None:
        """End every stream (the daemon is stopping)."""
        self.closed.set()
        self._broadcast(None)
        self._supervisor.remove_listener(self._on_event)

    async def stream(self, snapshot: bool = True) -> AsyncIterator[bytes]:
        """The event stream of one subscriber."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick_loop())
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            if snapshot:
                yield sse("snapshot", self._snapshot())
            while not self.closed.is_set():
                try:
                    message = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if message is None:
                    return
                yield message
        finally:
            self._queues.discard(queue)


async def follow_log(
    path: Path,
    closed: asyncio.Event,
    start_lines: list[str],
    interval: float = 0.5,
    batch: int = 65536,
) -> AsyncIterator[bytes]:
    """An event stream of a log file: its last lines, then each new line as it comes."""
    yield f"retry: {RETRY_MS}\n\n".encode()
    yield sse("lines", start_lines)
    try:
        position = path.stat().st_size
    except FileNotFoundError:
        position = 0
    pending = b""
    idle = 0.0
    while not closed.is_set():
        await asyncio.sleep(interval)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < position:  # truncated or replaced
            position, pending = 0, b""
        if size == position:
            idle += interval
            if idle >= KEEPALIVE:
                idle = 0.0
                yield b": keepalive\n\n"
            continue
        idle = 0.0
        with open(path, "rb") as handle:
            handle.seek(position)
            chunk = handle.read(min(batch, size - position))
        position += len(chunk)
        pending += chunk
        *complete, pending = pending.split(b"\n")
        if len(pending) > batch:  # a huge line without newline: send it anyway
            complete.append(pending)
            pending = b""
        if complete:
            yield sse("lines", [line.decode("utf-8", errors="replace") for line in complete])
