"""When a crashed service is started again, and when it is a crash loop: the policy of
systemd and supervisord, in one small object the supervisor asks after every crash.

- A crash after the service has been ready for `stable_after` seconds is a new incident:
  it is restarted at once, and the backoff starts over.
- A start that fails (the process exits or times out before it is ready, or crashes
  sooner than `stable_after` after it) waits 1, 2, 4… s (up to a cap) before the next,
  and `max_restarts` of those in a row make a crash loop.
- So does a start beyond `burst` starts within `interval` seconds, however each ended
  (systemd's StartLimitBurst / StartLimitIntervalSec).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from coursestack.spec import ServiceSpec


@dataclass(frozen=True)
class Verdict:
    """After a crash: wait `wait` seconds and start again, or (wait None) give up."""

    wait: float | None
    why: str = ""


class RestartBudget:
    """The restart history of one service's run (a fresh one per `start`)."""

    def __init__(
        self, spec: ServiceSpec, backoff_initial: float, backoff_factor: float, backoff_cap: float
    ) -> None:
        self._spec = spec
        self._initial = backoff_initial
        self._factor = backoff_factor
        self._cap = backoff_cap
        self._delay = backoff_initial
        self._failed_starts = 0
        self._starts: deque[float] = deque()

    def started(self, now: float) -> None:
        """A start happened at `now`."""
        self._starts.append(now)

    def after_crash(self, now: float, ready_since: float | None, reason: str) -> Verdict:
        """What to do about a crash at `now` of a start that was ready since
        `ready_since` (None: never ready); `reason` says how it ended."""
        spec = self._spec
        if ready_since is not None and now - ready_since >= spec.stable_after:
            self._failed_starts, self._delay, wait = 0, self._initial, 0.0
        else:
            self._failed_starts += 1
            wait = self._delay
            self._delay = min(self._delay * self._factor, self._cap)
        if self._failed_starts > spec.max_restarts:
            return Verdict(
                None,
                reason
                if self._failed_starts == 1
                else f"failed to start {self._failed_starts} times in a row; last: {reason}",
            )
        while self._starts and self._starts[0] <= now + wait - spec.interval:
            self._starts.popleft()
        if len(self._starts) >= spec.burst:
            return Verdict(
                None,
                f"started {len(self._starts)} times within "
                f"{spec.interval:g} s (burst = {spec.burst}), a crash loop; "
                f"last: {reason}",
            )
        return Verdict(wait)
