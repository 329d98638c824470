"""Login back-off arithmetic (no server)."""

from __future__ import annotations

import pytest

from coursestack.web.auth import (
    Backoff,
)


def test_backoff_doubles_and_forgets_on_success() -> None:
    backoff = Backoff(free=2, longest=8)
    backoff.failed("a", now=0)
    assert backoff.retry_after("a", now=0) == 0
    backoff.failed("a", now=1)
    assert backoff.retry_after("a", now=1) == pytest.approx(1)
    backoff.failed("a", now=2)
    assert backoff.retry_after("a", now=2) == pytest.approx(2)
    for moment in range(3, 10):
        backoff.failed("a", now=moment)
    assert backoff.retry_after("a", now=9) == pytest.approx(8)
    assert backoff.retry_after("b", now=9) == 0
    backoff.succeeded("a")
    assert backoff.retry_after("a", now=9) == 0
