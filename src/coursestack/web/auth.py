"""Who may use the daemon: bearer token, signed session cookies, CSRF, login throttling.

Two ways in:
- the CLI sends `Authorization: Bearer <instance token>`; no cookie, so no CSRF risk;
- a browser logs in once (the token link `coursestack up` prints, the page `up --open`
  opens, or the password set with `coursestack passwd`) and then carries a session
  cookie (HttpOnly, SameSite=Strict, its name unique per instance). Every
  state-changing request of a cookie session must also carry the session's CSRF token
  (`X-CSRF-Token` header, or a `csrf_token` form field).

Each service origin (see origins.py) gets a session of its own, made from the
dashboard's by a one-time code and bound to that one service: it opens nothing else.

Sessions are HMAC-signed with a key derived from the instance token, so they survive a
daemon restart (an open dashboard reconnects) and die when the token changes. Logging
out revokes a session in `run/revoked-sessions.json` (owner-only), so it stays revoked
across restarts; `coursestack passwd` ends every session. The password is stored as an
argon2id hash in `run/dashboard-password.json`, owner-only, and checked in a worker
thread, at most `PASSWORD_CHECKS` at once, so a flood of guesses never stalls the event
loop. Wrong passwords back off per account (see `Backoff`); the instance token is never
throttled, and neither is a browser that logged in before (its device cookie).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from coursestack.errors import UsageError
from coursestack.state import OWNER_ONLY, StateFolder, atomic_write_json, read_json

#: Prefix of every cookie coursestack sets; the front door never forwards such cookies.
COOKIE_PREFIX = "coursestack_"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME = 7 * 24 * 3600.0
#: A browser that logged in once is remembered this long (it is spared the back-off).
DEVICE_LIFETIME = 365 * 24 * 3600.0
MIN_PASSWORD_LENGTH = 8
#: argon2 checks running at once (each takes ~50 ms of CPU and 64 MiB).
PASSWORD_CHECKS = 2
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
DASHBOARD = "dashboard"

if TYPE_CHECKING:
    from argon2 import PasswordHasher


@cache
def _hasher() -> PasswordHasher:
    """argon2, loaded when a password is first set or checked (most daemons never)."""
    from argon2 import PasswordHasher

    return PasswordHasher()


def instance_tag(state: StateFolder) -> str:
    """A short hash of the state folder: cookie names unique per instance (cookies
    ignore ports, so two instances on one host would otherwise overwrite each other's)."""
    return hashlib.sha256(str(Path(state.root).resolve()).encode()).hexdigest()[:10]


def session_cookie_name(state: StateFolder) -> str:
    """The dashboard's session cookie of this instance."""
    return f"{COOKIE_PREFIX}session_{instance_tag(state)}"


# -- passwords ---------------------------------------------------------------------------


def password_file(state: StateFolder) -> Path:
    """Where the dashboard password hash lives."""
    return state.password_file


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (raises UsageError if it is too short)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            f"the password is too short: use at least {MIN_PASSWORD_LENGTH} characters",
            hint="choose a longer password",
        )
    return _hasher().hash(password)


def set_password(state: StateFolder, password: str) -> Path:
    """Store the hash of the dashboard password (owner-only, atomic) and end every
    session; return the file."""
    state.create()
    path = password_file(state)
    atomic_write_json(path, {"hash": hash_password(password), "set": time.time()}, OWNER_ONLY)
    Revocations(state).end_all()
    return path


def clear_password(state: StateFolder) -> bool:
    """Remove the dashboard password and end every session; True if there was one."""
    path = password_file(state)
    existed = path.exists()
    path.unlink(missing_ok=True)
    if existed:
        Revocations(state).end_all()
    return existed


def check_password(state: StateFolder, password: str) -> bool:
    """True if `password` matches the stored hash (False if none is set). Blocking."""
    record = read_json(password_file(state), {})
    stored = record.get("hash") if isinstance(record, dict) else None
    if not isinstance(stored, str) or not password:
        return False
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(stored, password)
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
        hint="listen on 127.0.0.1, or remove `auth = false` from [dashboard]",
    )


# -- throttling ------------------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential back-off after wrong passwords, per key (a device, or "anyone").

    The first `free` failures cost nothing; after that each one doubles the wait before
    the next password may be tried (up to `longest` seconds). A success clears the key.
    Keys are never client addresses: every local user is 127.0.0.1, and forwarded
    headers are not trusted.
    """

    free: int = 5
    longest: float = 60.0
    _failures: dict[str, tuple[int, float]] = field(default_factory=dict)

    def retry_after(self, key: str, now: float | None = None) -> float:
        """Seconds before `key` may try a password again (0: now)."""
        now = time.monotonic() if now is None else now
        count, last = self._failures.get(key, (0, 0.0))
        if count < self.free:
            return 0.0
        wait = min(self.longest, 2.0 ** (count - self.free))
        return max(0.0, last + wait - now)

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        count, _ = self._failures.get(key, (0, 0.0))
        self._failures[key] = (count + 1, now)
        if len(self._failures) > 10000:  # bound memory under a flood of devices
            self._failures.pop(next(iter(self._failures)))

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


# -- revocations -----------------------------------------------------------------------------


class Revocations:
    """Revoked sessions, kept in `run/revoked-sessions.json` (owner-only).

    `not_before`: sessions issued earlier are all void (a password change). The daemon
    re-reads the file when it changes, so `coursestack passwd` takes effect at once.
    """

    def __init__(self, state: StateFolder) -> None:
        self.path = state.revoked_sessions_file
        self.not_before = 0.0
        self.revoked: dict[str, float] = {}
        self._seen: tuple[int, int] | None = None

    def refresh(self) -> None:
        try:
            info = os.stat(self.path)
        except OSError:
            stamp = None
        else:
            stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._seen:
            return
        self._seen = stamp
        record = read_json(self.path, {}) if stamp is not None else {}
        record = record if isinstance(record, dict) else {}
        self.not_before = float(record.get("not_before", 0.0) or 0.0)
        revoked = record.get("revoked", {})
        self.revoked = (
            {str(k): float(v) for k, v in revoked.items()} if isinstance(revoked, dict) else {}
        )

    def is_revoked(self, sid: str, issued: float, refresh: bool = True) -> bool:
        if refresh:
            self.refresh()
        return issued < self.not_before or sid in self.revoked

    def revoke(self, sid: str, expires: float) -> None:
        self.refresh()
        now = time.time()
        self.revoked = {k: v for k, v in self.revoked.items() if v > now}
        self.revoked[sid] = expires
        self._write()

    def end_all(self) -> None:
        """Void every session issued until now."""
        self.refresh()
        self.not_before = time.time()
        self.revoked = {}
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            self.path, {"not_before": self.not_before, "revoked": self.revoked}, OWNER_ONLY
        )
        self._seen = None


# -- sessions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A logged-in browser, on the dashboard or on one service's origin."""

    sid: str
    expires: float
    csrf: str
    audience: str = DASHBOARD  # or "service:<name>"
    issued: float = 0.0
    parent: str = ""


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

    def __init__(
        self, token: str, state: StateFolder, enabled: bool = True, backoff: Backoff | None = None
    ) -> None:
        self.token = token
        self.state = state
        self.enabled = enabled
        self.backoff = backoff or Backoff()
        self.tag = instance_tag(state)
        self.session_cookie = session_cookie_name(state)
        self.device_cookie = f"{COOKIE_PREFIX}device_{self.tag}"
        self.revocations = Revocations(state)
        self._key = hashlib.sha256(b"coursestack-session\0" + token.encode()).digest()
        self._checks: asyncio.Semaphore | None = None
        #: (cookie value, audience) -> its session, once its signature was checked.
        self._verified: dict[tuple[str, str], Session] = {}

    def service_cookie(self, service: str) -> str:
        """The cookie of `service`'s own origin (host-only, so no other origin gets it)."""
        return f"{COOKIE_PREFIX}{self.tag}_{service}"

    # tokens and passwords

    def token_ok(self, candidate: str) -> bool:
        return bool(candidate) and secrets.compare_digest(candidate.encode(), self.token.encode())

    async def password_ok(self, candidate: str) -> bool:
        """Check a password in a worker thread, at most PASSWORD_CHECKS at a time."""
        if not candidate or len(candidate) > 1024:
            return False
        if self._checks is None:
            self._checks = asyncio.Semaphore(PASSWORD_CHECKS)
        async with self._checks:
            return await asyncio.to_thread(check_password, self.state, candidate)

    def throttle_key(self, connection: HTTPConnection) -> str:
        """Whose failures count: a known device's own, else everyone else's together."""
        value = connection.cookies.get(self.device_cookie)
        payload = self._verify(value) if value else None
        if payload is not None and payload.get("aud") == "device":
            return f"device:{payload.get('sid')}"
        return "anyone"

    def new_device(self) -> str:
        """A device cookie value: this browser logged in once."""
        payload = json.dumps(
            {
                "sid": secrets.token_urlsafe(12),
                "aud": "device",
                "exp": time.time() + DEVICE_LIFETIME,
            }
        ).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    # sessions

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def new_session(
        self, audience: str = DASHBOARD, parent: str = "", lifetime: float = SESSION_LIFETIME
    ) -> tuple[Session, str]:
        """A new session and its cookie value."""
        sid = secrets.token_urlsafe(18)
        now = time.time()
        session = Session(sid, now + lifetime, self._csrf_for(sid), audience, now, parent)
        payload = json.dumps(
            {"sid": sid, "exp": session.expires, "aud": audience, "iat": now, "parent": parent}
        ).encode()
        return session, f"{_b64(payload)}.{self._sign(payload)}"

    def _csrf_for(self, sid: str) -> str:
        return self._sign(b"csrf\0" + sid.encode())

    def _verify(self, value: str | None) -> dict[str, Any] | None:
        """The payload of a signed, unexpired cookie value (None if forged or old)."""
        if not value or len(value) > 1024 or "." not in value:
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
            if not isinstance(data, dict) or float(data["exp"]) < time.time():
                return None
        except (ValueError, KeyError, TypeError):
            return None
        return data

    def session_from_cookie(self, value: str | None, audience: str = DASHBOARD) -> Session | None:
        """The live session a cookie value names (None if forged, expired or revoked).

        A value seen before is not verified again (its signature cannot change); its
        expiry and the revocations (re-read when the file changes) are checked every time.
        """
        if not value:
            return None
        session = self._verified.get((value, audience))
        if session is None:
            session = self._session_of(value, audience)
            if session is None:
                return None
            if len(self._verified) >= 1024:
                self._verified.clear()
            self._verified[(value, audience)] = session
        if session.expires < time.time():
            return None
        self.revocations.refresh()
        if self.revocations.is_revoked(session.sid, session.issued, refresh=False) or (
            session.parent
            and self.revocations.is_revoked(session.parent, session.issued, refresh=False)
        ):
            return None
        return session

    def _session_of(self, value: str, audience: str) -> Session | None:
        data = self._verify(value)
        if data is None or data.get("aud") != audience:
            return None
        try:
            sid, expires = str(data["sid"]), float(data["exp"])
            issued, parent = float(data.get("iat", 0.0)), str(data.get("parent", ""))
        except (ValueError, KeyError, TypeError):
            return None
        return Session(sid, expires, self._csrf_for(sid), audience, issued, parent)

    def revoke(self, session: Session) -> None:
        """Revoke a session for good (and the service sessions made from it)."""
        self.revocations.revoke(session.sid, session.expires)

    # requests

    def bearer_ok(self, connection: HTTPConnection) -> bool:
        header = connection.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(credential.strip())

    def identify(self, connection: HTTPConnection) -> Principal | None:
        """Who sent this request or WebSocket to the dashboard (None: nobody we know)."""
        if self.bearer_ok(connection):
            return Principal("bearer")
        session = self.session_from_cookie(connection.cookies.get(self.session_cookie))
        if session is not None:
            return Principal("session", session)
        if not self.enabled:
            return Principal("open")
        return None

    def identify_for_service(self, connection: HTTPConnection, service: str) -> Principal | None:
        """Who sent this request to `service`'s own origin: its own session cookie or
        the bearer token; the dashboard's cookie never counts there."""
        if self.bearer_ok(connection):
            return Principal("bearer")
        session = self.session_from_cookie(
            connection.cookies.get(self.service_cookie(service)), f"service:{service}"
        )
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
            str(supplied).encode(), principal.session.csrf.encode()
        )


def client_address(connection: HTTPConnection) -> str:
    """The peer's address (forwarded headers are not trusted: see daemon.py)."""
    return connection.client.host if connection.client else "unknown"


def foreign_request(connection: HTTPConnection, own_origin: str) -> bool:
    """True if a browser sent this request from a page of another origin.

    `Origin` (sent on every cross-origin fetch, every POST and every WebSocket) must be
    our own when present; `Sec-Fetch-Site` (Chromium, Firefox, Safari) must be same-origin
    or none, except for a plain navigation (a link followed, which has no credential of
    the page that linked).
    """
    origin = connection.headers.get("origin")
    if origin is not None and origin.lower().rstrip("/") != own_origin.lower():
        return True
    site = connection.headers.get("sec-fetch-site", "same-origin")
    if site in ("same-origin", "none"):
        return False
    navigation = connection.headers.get("sec-fetch-mode") == "navigate"
    method = connection.scope.get("method", "GET")
    return not (navigation and method in ("GET", "HEAD"))
