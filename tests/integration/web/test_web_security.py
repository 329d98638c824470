"""Auth, CSRF and bad input, against the running sample instance and an in-process app."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from coursestack.daemon import Daemon as RealDaemon
from coursestack.procs import OSLauncher
from coursestack.state import StateFolder
from coursestack.supervisor import Supervisor
from coursestack.web.app import PUBLIC_PATHS, create_app, routes_of
from coursestack.web.auth import (
    Backoff,
    check_password,
    password_file,
    session_cookie_name,
    set_password,
)

SAMPLE_VALUES = {"name": "postgres", "path": "lab"}


def build_app(state_root: Path) -> Starlette:
    """The same app the daemon serves, around an idle supervisor (nothing is started)."""
    daemon = RealDaemon(StateFolder(state_root))
    daemon.supervisor = Supervisor([], OSLauncher())
    return create_app(daemon)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE_VALUES[m.group(1)], path)


def daemon_log(daemon: Any) -> Path:
    return Path(daemon.instance.state.logs / "daemon.log")


def test_every_route_but_the_public_ones_refuses_strangers(daemon: Any) -> None:
    app = build_app(daemon.instance.state.root)
    checked = 0
    public_seen: set[str] = set()
    with httpx.Client(base_url=daemon.url, trust_env=False, timeout=30) as client:
        for route in routes_of(app):
            if isinstance(route, Mount):
                assert route.path in PUBLIC_PATHS, f"{route.path} is mounted without a login"
                public_seen.add(route.path)
                continue
            if isinstance(route, WebSocketRoute):
                url = daemon.url.replace("http", "ws", 1) + concrete(route.path)[1:]
                with pytest.raises(websockets.InvalidStatus) as refused:
                    asyncio.run(_ws_connect(url, daemon.origin))
                assert refused.value.response.status_code == 403
                checked += 1
                continue
            assert isinstance(route, Route), route
            if route.path in PUBLIC_PATHS:
                public_seen.add(route.path)
                continue
            for method in sorted(route.methods):
                for accept in ("application/json", "text/html"):
                    response = client.request(
                        method,
                        concrete(route.path),
                        headers={"Accept": accept, "Origin": daemon.origin},
                    )
                    refused_ok = response.status_code == 401 or (
                        response.status_code == 303
                        and response.headers["location"].startswith("/login")
                    )
                    assert refused_ok, (method, route.path, response.status_code)
                    checked += 1
    assert public_seen == PUBLIC_PATHS
    assert checked > 30
    with httpx.Client(base_url=daemon.url, trust_env=False) as client:
        assert client.get("/api/health").status_code == 200
        client.cookies.set(session_cookie_name(daemon.instance.state), "e30.forged")
        forged = client.get("/api/services")
        assert forged.status_code == 401


async def _ws_connect(url: str, origin: str) -> None:
    async with websockets.connect(url, origin=websockets.Origin(origin), open_timeout=10):
        pass


def test_cookie_sessions_need_the_csrf_token(
    daemon: Any, session: tuple[httpx.Client, str]
) -> None:
    client, csrf = session
    before = client.get("/api/services/postgres").json()
    assert before["state"] == "ready"
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        response = client.post("/api/services/postgres/stop", headers=headers)
        assert response.status_code == 403, response.text
    assert client.post("/logout", data={"csrf_token": "nope"}).status_code == 403
    # On the dashboard's origin the front door only redirects (GET): nothing to post to.
    assert client.post("/s/jupyter/api/kernels", json={}).status_code == 405
    after = client.get("/api/services/postgres").json()
    assert (after["state"], after["pid"]) == ("ready", before["pid"])
    # With the token it works; bearer clients (the CLI) need none.
    assert client.get("/api/events/history", headers={"X-CSRF-Token": csrf}).status_code == 200
    with daemon.bearer() as cli_client:
        assert cli_client.post("/api/up").status_code == 200


def test_bad_input_is_a_clear_4xx_and_no_crash(
    daemon: Any, session: tuple[httpx.Client, str]
) -> None:
    client, csrf = session
    log = daemon_log(daemon)
    size = log.stat().st_size
    unsafe = {"X-CSRF-Token": csrf}
    cases = [
        ("GET", "/api/services/nope", 404, {}),
        ("POST", "/api/services/nope/stop", 404, unsafe),
        ("GET", "/api/services/..%2F..%2Fetc%2Fpasswd/logs", 404, {}),
        ("GET", "/api/services/%2e%2e/logs", 404, {}),
        ("GET", "/api/services/postgres/logs?lines=999999", 422, {}),
        ("GET", "/services/..%2Fdaemon/logs", 404, {}),
        ("GET", "/s/jupyter/%2e%2e/%2e%2e/etc/passwd", 400, {}),
        ("GET", "/s/jupyter/files/..%252F..%252Fsecrets.json", 400, {}),
        ("GET", "/s/postgres/", 404, {}),
        ("GET", "/s/nope/x", 404, {}),
    ]
    for method, path, expected, headers in cases:
        response = client.request(method, path, headers=headers)
        assert response.status_code == expected, (path, response.status_code, response.text)
        assert "detail" in response.json()
    big = client.post("/api/services/postgres/start", content=b"x" * (1024 * 1024), headers=unsafe)
    assert big.status_code == 413
    chunked = client.post(
        "/api/services/postgres/start", headers=unsafe, content=iter([b"x" * 1000])
    )
    assert chunked.status_code == 411
    assert (
        client.post(
            "/login",
            content=b"secret=" + b"x" * 100_000,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ).status_code
        == 413
    )
    assert client.get("/api/services/postgres").json()["state"] == "ready"
    time.sleep(0.2)
    with open(log, "rb") as handle:
        handle.seek(size)
        written = handle.read().decode("utf-8", "replace")
    assert "Traceback" not in written and "ERROR" not in written, written


def test_a_crash_shows_in_the_event_stream_within_a_second(
    daemon: Any, restore_services: None
) -> None:
    with daemon.bearer() as client:
        pid = client.get("/api/services/postgres").json()["pid"]
    with (
        daemon.bearer() as client,
        client.stream("GET", "/api/events", timeout=httpx.Timeout(30, read=30)) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")
        for line in lines:  # the snapshot first
            if line.startswith("data:"):
                break
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        event = ""
        for line in lines:
            if line.startswith("data:") and '"postgres"' in line and '"previous":"ready"' in line:
                event = line
                break
        elapsed = time.monotonic() - killed
    assert event and '"state":"ready"' not in event.split('"service"')[1][:40]
    assert elapsed < 1.0, f"the stream showed the crash after {elapsed:.2f} s"


def test_wrong_passwords_back_off_and_passwords_are_hashed(daemon: Any, tmp_path: Path) -> None:
    app = build_app(daemon.instance.state.root)
    auth = app.state.web.auth
    auth.backoff = Backoff(free=5, longest=60)
    state = StateFolder(tmp_path / "state")
    auth.state = state
    set_password(state, "correct horse battery")
    record = password_file(state)
    assert stat.S_IMODE(record.stat().st_mode) == 0o600
    assert "correct horse" not in record.read_text()
    assert check_password(state, "correct horse battery")
    assert not check_password(state, "wrong")

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            page = await client.get("/login")
            login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
            assert login_csrf
            form = {"login_csrf": login_csrf.group(1), "next": "/"}
            ok = await client.post("/login", data={**form, "secret": "correct horse battery"})
            assert ok.status_code == 303 and auth.session_cookie in ok.headers["set-cookie"]
            cookie = ok.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            client.cookies.clear()
            page = await client.get("/login")
            form["login_csrf"] = re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
            no_form_token = await client.post("/login", data={"secret": "x"})
            assert no_form_token.status_code == 403
            for _ in range(5):
                bad = await client.post("/login", data={**form, "secret": "guess"})
                assert bad.status_code == 401
            limited = await client.post("/login", data={**form, "secret": "guess again"})
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
            assert auth.session_cookie not in limited.headers.get("set-cookie", "")
            # The instance token always works, back-off or not.
            token = await client.post("/login", data={**form, "secret": daemon.token})
            assert token.status_code == 303

    asyncio.run(scenario())


def test_passwd_stores_a_hash_the_dashboard_accepts(daemon: Any) -> None:
    state = daemon.instance.state
    root = str(state.root)
    try:
        short = subprocess.run(
            [sys.executable, "-m", "coursestack", "passwd", "--state", root, "--stdin"],
            input="short\n",
            capture_output=True,
            text=True,
        )
        assert short.returncode == 2 and "too short" in short.stderr
        done = subprocess.run(
            [sys.executable, "-m", "coursestack", "passwd", "--state", root, "--stdin"],
            input="a long enough secret\n",
            capture_output=True,
            text=True,
            check=True,
        )
        assert "password set" in done.stdout
        assert stat.S_IMODE(password_file(state).stat().st_mode) == 0o600
        with httpx.Client(base_url=daemon.url, trust_env=False) as client:
            page = client.get("/login")
            token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
            assert token
            response = client.post(
                "/login",
                data={"login_csrf": token.group(1), "next": "/", "secret": "a long enough secret"},
            )
            assert response.status_code == 303
            assert client.get("/api/services").status_code == 200
    finally:
        subprocess.run(
            [sys.executable, "-m", "coursestack", "passwd", "--state", root, "--clear"],
            capture_output=True,
            check=True,
        )
    assert not password_file(state).exists()
