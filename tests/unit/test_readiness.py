"""The one wait (readiness.py): its rule, and the readiness pipe between daemon and `up`."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from coursestack.readiness import (
    Notifier,
    PipeLost,
    Verdict,
    judge,
    notifications,
    polled_services,
    wait_until_ready,
)


def view(name: str, state: str, since: float = 1.0, **more: Any) -> dict[str, Any]:
    return {"name": name, "state": state, "since": since, "detail": "", "reason": "", **more}


def test_ready_when_every_named_service_is_ready() -> None:
    views = [view("a", "ready"), view("b", "ready"), view("c", "starting")]
    assert judge(views, ["a", "b"]) is Verdict.READY
    assert judge(views, ["a", "c"]) is Verdict.WAITING
    assert judge(views, ["a", "missing"]) is Verdict.WAITING


def test_one_failed_service_ends_the_wait() -> None:
    assert judge([view("a", "ready"), view("b", "failed")], ["a", "b"]) is Verdict.FAILED
    assert judge([view("a", "backoff")], ["a"]) is Verdict.WAITING


def test_with_since_only_a_new_failure_or_stop_counts() -> None:
    stale = [view("a", "failed", since=5.0)]
    assert judge(stale, ["a"], since={"a": 5.0}) is Verdict.WAITING
    assert judge([view("a", "stopped", since=6.0)], ["a"], since={"a": 5.0}) is Verdict.FAILED
    assert judge([view("a", "stopped", since=6.0)], ["a"]) is Verdict.WAITING


def test_a_start_after_a_crash_is_ready_once_settled() -> None:
    assert judge([view("a", "ready", settles_in=0.7)], ["a"]) is Verdict.WAITING
    assert judge([view("a", "ready", settles_in=0.0)], ["a"]) is Verdict.READY


def test_wait_follows_the_snapshots_and_shows_each() -> None:
    shown: list[list[str]] = []
    snapshots = [
        [view("a", "starting"), view("x", "failed")],
        [view("a", "ready")],
        [view("a", "failed")],
    ]
    outcome = wait_until_ready(
        iter(snapshots), ["a"], lambda views: shown.append([v["state"] for v in views])
    )
    assert outcome.ready and shown == [["starting"], ["ready"]]  # "x" is not ours


def test_a_source_that_ends_first_is_a_timeout() -> None:
    outcome = wait_until_ready(iter([[view("a", "starting")]]), ["a"])
    assert outcome.verdict is Verdict.WAITING and outcome.views[0]["state"] == "starting"


class Model:
    """A service view as the API client gives it."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def model_dump(self) -> dict[str, Any]:
        return dict(self.fields)


class ScriptedAPI:
    """A daemon client whose services() answers from a script."""

    def __init__(self, answers: list[list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.asked = 0

    def services(self) -> list[Model]:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        return [Model(fields) for fields in answer]


def test_polling_asks_until_the_verdict() -> None:
    api = ScriptedAPI([[view("a", "starting")]] * 3 + [[view("a", "ready")]])
    outcome = wait_until_ready(polled_services(api, timeout=60, interval=0), ["a"])
    assert outcome.ready and api.asked == 4


def test_polling_stops_at_its_timeout() -> None:
    api = ScriptedAPI([[view("a", "starting")]])
    outcome = wait_until_ready(polled_services(api, timeout=0, interval=0), ["a"])
    assert outcome.verdict is Verdict.WAITING and api.asked == 1


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_fd, write_fd = os.pipe()
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):  # the test may have closed it
            os.close(fd)


def _never_later(delay: float, callback: Callable[[], None]) -> None:
    raise AssertionError("nothing is settling here")


def test_the_notifier_writes_each_change_then_done_and_closes(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    states = iter(["starting", "ready"])
    current: list[dict[str, Any]] = []

    def snapshot() -> list[dict[str, Any]]:
        return current

    notifier = Notifier(os.dup(write_fd), ["a"], snapshot, _never_later)
    os.close(write_fd)
    for state in states:
        current[:] = [view("a", state)]
        notifier.changed()
    assert not notifier.open
    notifier.changed()  # after done: nothing more, no error
    outcome = wait_until_ready(notifications(read_fd, timeout=10), ["a"])
    assert outcome.ready
    assert os.read(read_fd, 100) == b""  # closed by the notifier


def test_the_notifier_says_when_one_failed(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    notifier = Notifier(
        write_fd,
        ["a", "b"],
        lambda: [view("a", "ready"), view("b", "failed", reason="boom")],
        _never_later,
    )
    notifier.changed()
    lines = os.read(read_fd, 65536).decode().splitlines()
    assert [json.loads(line)["done"] for line in lines] == [True]
    assert not notifier.open


def test_the_notifier_looks_again_when_a_restarted_service_settles(pipe: tuple[int, int]) -> None:
    _read_fd, write_fd = pipe
    later: list[float] = []
    settles = [0.8]
    notifier = Notifier(
        write_fd,
        ["a"],
        lambda: [view("a", "ready", settles_in=settles[0])],
        lambda delay, callback: later.append(delay),
    )
    notifier.changed()
    assert later == [0.8] and notifier.open
    settles[0] = 0.0
    notifier.changed()  # what the loop's call_later does
    assert not notifier.open


def test_a_pipe_closed_without_done_is_lost(pipe: tuple[int, int]) -> None:
    read_fd, write_fd = pipe
    os.write(
        write_fd, json.dumps({"services": [view("a", "starting")], "done": False}).encode() + b"\n"
    )
    os.close(write_fd)
    with pytest.raises(PipeLost):
        wait_until_ready(notifications(read_fd, timeout=10), ["a"])


def test_a_reader_that_does_not_keep_up_loses_the_pipe_not_the_daemon(
    pipe: tuple[int, int],
) -> None:
    read_fd, write_fd = pipe
    big = [view("a", "starting", last_log=["x" * 1000] * 30)]
    notifier = Notifier(write_fd, ["a"], lambda: big, _never_later)
    done = threading.Event()

    def fill() -> None:
        for _ in range(200):  # far more than a pipe holds: never blocks
            notifier.changed()
        done.set()

    worker = threading.Thread(target=fill)
    worker.start()
    worker.join(30)
    assert done.is_set() and not notifier.open
    with pytest.raises(PipeLost):
        for _ in notifications(read_fd, timeout=10):
            pass
