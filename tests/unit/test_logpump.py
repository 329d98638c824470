"""The log pump in milliseconds: it reads on whatever happens to the file, drops and
counts what it cannot write, says so once writing works again, and leaves out a
probe's own lines."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from coursestack.logpump import LogPump


@dataclass(frozen=True)
class Settings:
    log_file: Path
    log_max_bytes: int = 10 * 2**20
    log_keep: int = 1
    log_rate: int = 4 * 2**20
    log_filter: bytes | None = None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def pump_for(settings: Settings, clock: Clock) -> tuple[LogPump, asyncio.StreamReader]:
    stream = asyncio.StreamReader()
    pump = LogPump(stream, settings, clock=clock)
    return pump, stream


async def test_output_over_the_rate_is_dropped_and_counted_not_left_in_the_pipe(
    tmp_path: Path,
) -> None:
    clock = Clock()
    log = tmp_path / "svc.log"
    pump, stream = await pump_for(Settings(log, log_rate=1000), clock)
    for _ in range(10):
        pump.take(b"x" * 499 + b"\n")
    assert log.stat().st_size == 1000  # two chunks fill the second's budget
    assert pump.dropped == 8 * 500 and "over the [logs] rate" in pump.note()
    clock.now += 1.0
    pump.take(b"next second\n")
    lines = log.read_text().splitlines()
    assert lines[-2].startswith("[coursestack] 3.9 KB of output dropped between ")
    assert lines[-2].endswith("over the [logs] rate of 1000 bytes a second")
    assert lines[-1] == "next second"
    stream.feed_eof()
    await pump.task


async def test_an_unwritable_log_is_retried_and_the_gap_is_reported(tmp_path: Path) -> None:
    clock = Clock()
    log = tmp_path / "gone" / "svc.log"  # its folder is missing: every write fails
    pump, stream = await pump_for(Settings(log), clock)
    pump.take(b"lost 1\n")
    clock.now += 0.5
    pump.take(b"lost 2\n")
    assert pump.dropped == 14 and pump.failing is not None
    assert pump.note().startswith("log not written (No such file or directory); 14 bytes")
    log.parent.mkdir()
    pump.take(b"too soon: the retry waits a second\n")
    clock.now += 1.0
    pump.take(b"kept\n")
    first, second = log.read_text().splitlines()
    assert first.startswith("[coursestack] 49 bytes of output dropped")
    assert first.endswith("log file not writable: No such file or directory")
    assert second == "kept"
    assert pump.failing is None and pump.note().startswith("49 bytes of output dropped")
    stream.feed_eof()
    await pump.task


async def test_a_probes_lines_are_left_out_even_when_split_between_reads(tmp_path: Path) -> None:
    log = tmp_path / "db.log"
    stream = asyncio.StreamReader()
    pump = LogPump(stream, Settings(log, log_filter=b"health probe"))
    stream.feed_data(b"LOG:  checkpoint\nLOG:  health ")
    stream.feed_data(b"probe\nWARNING:  kept\npartial")
    stream.feed_eof()
    await pump.task
    assert log.read_text() == "LOG:  checkpoint\nWARNING:  kept\npartial"


async def test_the_log_is_rotated_before_it_would_pass_max_size(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    stream = asyncio.StreamReader()
    pump = LogPump(stream, Settings(log, log_max_bytes=1000, log_keep=1), clock=Clock())
    for number in range(10):
        pump.take(f"{number}".encode() * 299 + b"\n")
        assert log.stat().st_size <= 1000
    stream.feed_eof()
    await pump.task
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc.log", "svc.log.1"]
    assert log.read_text().startswith("9" * 299)
