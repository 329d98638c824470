"""Who may use the daemon: bearer token, signed session cookies, CSRF, login rate limit.

Two ways in:
- the CLI sends `Authorization: Bearer <instance token>`; no cookie, so no CSRF risk;
- a browser logs in once (the token link `coursestack up` prints, or the password set
  with `coursestack passwd`) and then carries a session cookie (HttpOnly, SameSite=Strict).
  Every state-changing request of a cookie session must also carry the session's CSRF
  token (`X-CSRF-Token` header, or a `csrf_token` form field).

Sessions are HMAC-signed with a key derived from the instance token, so they survive a
daemon restart (an open dashboard reconnects) and die when the token changes. The
password is stored as an argon2id hash in `run/dashboard-password.json`, owner-only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import HTTPConnection

from coursestack.errors import UsageError
from coursestack.state import OWNER_ONLY, StateFolder, atomic_write_json, read_json

SESSION_COOKIE = "coursestack_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME = 7 * 24 * 3600.0
PASSWORD_FILE = "dashboard-password.json"
MIN_PASSWORD_LENGTH = 8
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

_hasher = PasswordHasher()


# -- passwords ---------------------------------------------------------------------------


def password_file(state: StateFolder) -> Path:
    """Where the dashboard password hash lives."""
    return state.run / PASSWORD_FILE


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (raises UsageError if it is too short)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password is too short: use at least {MIN_PASSWORD_LENGTH} "
                         "characters", hint="choose a longer password")
    return _hasher.hash(password)


def set_password(state: StateFolder, password: str) -> Path:
    """Store the hash of the dashboard password (owner-only, atomic); return the file."""
    state.create()
    path = password_file(state)
    atomic_write_json(path, {"hash": hash_password(password), "set": time.time()}, OWNER_ONLY)
    return path


def clear_password(state: StateFolder) -> bool:
    """Remove the dashboard password; True if there was one."""
    path = password_file(state)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def check_password(state: StateFolder, password: str) -> bool:
    """True if `password` matches the stored hash (False if none is set)."""
    record = read_json(password_file(state), {})
    stored = record.get("hash") if isinstance(record, dict) else None
    if not isinstance(stored, str) or not password:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def has_password(state: StateFolder) -> bool:
    record = read_json(password_file(state), {})
    return isinstance(record, dict) and isinstance(record.get("hash"), str)


# -- listening address ---------------------------------------------------------------------


class UnsafeListenAddress(UsageError):
    """The dashboard would listen beyond loopback with authentication disabled."""


def check_listen_address(host: str, auth_enabled: bool) -> None:
    """Refuse to listen on a non-loopback address without authentication."""
    if auth_enabled or host in LOOPBACK_HOSTS or host.startswith("127."):
        return
    raise UnsafeListenAddress(
        f"refusing to listen on {host} with dashboard authentication disabled: anyone who "
        "can reach that address could control every service",
        where="[dashboard] in course.toml",
        hint='listen on 127.0.0.1, or remove `auth = false` from [dashboard]')


# -- rate limit ------------------------------------------------------------------------------


@dataclass
class RateLimiter:
    """At most `limit` failed attempts per client within `window` seconds."""

    limit: int = 10
    window: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds the client must wait before trying again (0: it may try now)."""
        now = time.monotonic() if now is None else now
        attempts = self._failures.get(client)
        if not attempts:
            return 0.0
        while attempts and now - attempts[0] >= self.window:
            attempts.popleft()
        if not attempts:
            del self._failures[client]
            return 0.0
        if len(attempts) < self.limit:
            return 0.0
        return max(0.0, self.window - (now - attempts[0]))

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._failures.setdefault(client, deque()).append(now)
        if len(self._failures) > 10000:  # bound memory under a flood of addresses
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


# -- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A logged-in browser."""

    sid: str
    expires: float
    csrf: str


@dataclass(frozen=True)
class Principal:
    """Who made a request, and how."""

    via: str  # "bearer", "session" or "open" (auth disabled)
    session: Session | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Checks tokens, passwords and session cookies of one daemon."""

    def __init__(self, token: str, state: StateFolder, enabled: bool = True,
                 limiter: RateLimiter | None = None) -> None:
        self.token = token
        self.state = state
        self.enabled = enabled
        self.limiter = limiter or RateLimiter()
        self._key = hashlib.sha256(b"coursestack-session\0" + token.encode()).digest()
        self._revoked: set[str] = set()

    # tokens and passwords

    def token_ok(self, candidate: str) -> bool:
        return bool(candidate) and secrets.compare_digest(candidate.encode(),
                                                          self.token.encode())

    def password_ok(self, candidate: str) -> bool:
        return check_password(self.state, candidate)

    # sessions

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def new_session(self) -> tuple[Session, str]:
        """A new session and its cookie value."""
        sid = secrets.token_urlsafe(18)
        session = Session(sid, time.time() + SESSION_LIFETIME, self._csrf_for(sid))
        payload = json.dumps({"sid": sid, "exp": session.expires}).encode()
        return session, f"{_b64(payload)}.{self._sign(payload)}"

    def _csrf_for(self, sid: str) -> str:
        return self._sign(b"csrf\0" + sid.encode())

    def session_from_cookie(self, value: str | None) -> Session | None:
        if not value or len(value) > 512 or "." not in value:
            return None
        body, _, signature = value.partition(".")
        try:
            payload = _unb64(body)
        except (ValueError, TypeError):
            return None
        if not secrets.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            data: Any = json.loads(payload)
            sid, expires = str(data["sid"]), float(data["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < time.time() or sid in self._revoked:
            return None
        return Session(sid, expires, self._csrf_for(sid))

    def revoke(self, session: Session) -> None:
        self._revoked.add(session.sid)

    # requests

    def identify(self, connection: HTTPConnection) -> Principal | None:
        """Who sent this request or WebSocket (None: nobody we know)."""
        header = connection.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(credential.strip()):
            return Principal("bearer")
        session = self.session_from_cookie(connection.cookies.get(SESSION_COOKIE))
        if session is not None:
            return Principal("session", session)
        if not self.enabled:
            return Principal("open")
        return None

    @staticmethod
    def csrf_ok(principal: Principal, supplied: str | None) -> bool:
        """True if a state-changing request of `principal` may proceed."""
        if principal.via != "session":
            return True  # bearer requests carry no ambient credential
        assert principal.session is not None
        return bool(supplied) and secrets.compare_digest(
            str(supplied).encode(), principal.session.csrf.encode())


def client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


def same_origin(connection: HTTPConnection) -> bool:
    """True if the request's Origin (or, lacking it, Referer) is this very host."""
    host = connection.headers.get("host", "")
    origin = connection.headers.get("origin") or connection.headers.get("referer")
    if not origin or not host:
        return False
    scheme, _, rest = origin.partition("://")
    return scheme in ("http", "https") and rest.split("/", 1)[0] == host
