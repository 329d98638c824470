"""One-time login codes: short-lived, single use, kept only in the daemon's memory.

Two hand-offs use them:
- the dashboard logs the browser into a service's own origin: it redirects to
  `http://<service>.<instance>.localhost:<port>/__coursestack/login?code=...`, and the
  code says which service and which page it is for (the page is never taken from the URL);
- `coursestack up --open` asks the daemon (with the instance token) for a code and opens
  an owner-only local page that posts it, so no secret is on any command line.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

#: Codes for `up --open` must be used within this many seconds.
OPEN_LIFETIME = 60.0
#: Codes of the dashboard -> service hand-off (a redirect the browser follows at once).
SERVICE_LIFETIME = 30.0
#: Unused codes kept at most (a flood of requests cannot grow memory without bound).
MAX_PENDING = 1000


@dataclass(frozen=True)
class Grant:
    """What a code is good for."""

    purpose: str  # "dashboard" or "service:<name>"
    expires: float
    #: Local path to go to after the hand-off (chosen by the daemon, not the URL).
    next_path: str = "/"
    #: The dashboard session that asked for it ("" for `up --open`); its revocation
    #: ends the service session made from it.
    parent: str = ""


class OneTimeCodes:
    """Issue and redeem one-time codes."""

    def __init__(self) -> None:
        self._pending: dict[str, Grant] = {}

    def issue(
        self,
        purpose: str,
        lifetime: float,
        next_path: str = "/",
        parent: str = "",
        now: float | None = None,
    ) -> str:
        now = time.monotonic() if now is None else now
        self._forget_expired(now)
        while len(self._pending) >= MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        code = secrets.token_urlsafe(24)
        self._pending[code] = Grant(purpose, now + lifetime, next_path, parent)
        return code

    def redeem(self, code: str | None, purpose: str, now: float | None = None) -> Grant | None:
        """The grant of `code` if it is for `purpose` and still valid; it is used up."""
        if not code or len(code) > 64:
            return None
        now = time.monotonic() if now is None else now
        grant = self._pending.pop(code, None)  # used up even when shown in the wrong place
        if grant is None or grant.purpose != purpose or grant.expires <= now:
            return None
        return grant

    def _forget_expired(self, now: float) -> None:
        for code in [c for c, g in self._pending.items() if g.expires <= now]:
            del self._pending[code]
