"""A session cookie's signature is checked once per value, but its expiry, a logout, the
end of its parent session and `coursestack passwd` (another process writing the
revocations file) still count on the very next request."""

from __future__ import annotations

import time
from pathlib import Path

from coursestack.state import StateFolder
from coursestack.web.auth import Authenticator, Revocations, set_password


def _authenticator(tmp_path: Path) -> Authenticator:
    state = StateFolder(tmp_path / "state")
    state.create()
    return Authenticator("t" * 32, state)


def test_a_known_cookie_is_not_verified_again_but_still_checked(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    session, cookie = auth.new_session("service:jupyter", "", 3600)
    assert auth.session_from_cookie(cookie, "service:jupyter") == session
    assert auth.session_from_cookie(cookie, "dashboard") is None  # another audience
    forged = cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")
    assert auth.session_from_cookie(forged, "service:jupyter") is None
    assert auth.session_from_cookie(cookie, "service:jupyter") == session
    auth.revoke(session)
    assert auth.session_from_cookie(cookie, "service:jupyter") is None


def test_the_parent_session_ending_ends_the_service_session(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    parent, _ = auth.new_session()
    child, cookie = auth.new_session("service:web", parent.sid, 3600)
    assert auth.session_from_cookie(cookie, "service:web") == child
    auth.revoke(parent)
    assert auth.session_from_cookie(cookie, "service:web") is None


def test_passwd_in_another_process_counts_on_the_next_request(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    session, cookie = auth.new_session()
    assert auth.session_from_cookie(cookie) == session
    time.sleep(0.01)  # a later not_before than the session's issue time
    set_password(auth.state, "a long password")  # as `coursestack passwd` does, own objects
    assert auth.session_from_cookie(cookie) is None
    written = Revocations(auth.state)
    written.refresh()
    assert written.not_before > session.issued


def test_an_expired_session_is_refused_though_its_value_was_seen(tmp_path: Path) -> None:
    auth = _authenticator(tmp_path)
    _, cookie = auth.new_session(lifetime=0.05)
    assert auth.session_from_cookie(cookie) is not None
    time.sleep(0.1)
    assert auth.session_from_cookie(cookie) is None
