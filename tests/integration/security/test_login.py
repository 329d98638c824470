"""Logging in cannot be turned against the student (real daemons, real HTTP).

- the right token works at once after 50 wrong logins, and rotating X-Forwarded-For
  changes nothing (no forwarded header is trusted);
- 8 threads of wrong passwords leave /api/health answering (argon2 runs off the loop);
- a revoked session stays revoked after down/up; `coursestack passwd` ends sessions;
- two instances on one host keep their cookies apart;
- `up --open` logs in by a one-time code from an owner-only page: no secret on any
  command line, the code works once.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coursestack.state import StateFolder
from coursestack.web.auth import session_cookie_name
from coursestack.web.handoff import OPEN_LIFETIME, OneTimeCodes
from support import cli, open_folder

pytestmark = pytest.mark.slow

COURSE = """[course]
name = "{name}"

[services.web]
kind = "command"
command = ["python3", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1"]
web = true
port = 18390
probe = {{ type = "http", path = "/" }}
"""


def _up(
    name: str,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> tuple[Path, Any]:
    folder = open_folder(f"login-{name}-")
    spec = folder / "course.toml"
    spec.write_text(COURSE.format(name=name))
    state = folder / "state"
    result = cli("up", str(spec), "--state", str(state), *extra, env=env)
    return state, result


def _record(state: Path) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((state / "run" / "daemon.json").read_text())
    return record


@pytest.fixture(scope="module")
def instance() -> Iterator[Path]:
    state, _ = _up("logins")
    yield state
    cli("down", "--state", str(state), check=False)


def _form(client: httpx.Client) -> dict[str, str]:
    page = client.get("/login")
    found = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert found, page.text
    return {"login_csrf": found.group(1), "next": "/"}


def _client(state: Path, **headers: str) -> httpx.Client:
    return httpx.Client(
        base_url=_record(state)["url"], trust_env=False, timeout=60, headers=headers
    )


def test_fifty_wrong_logins_then_the_right_token_works_at_once(instance: Path) -> None:
    token = _record(instance)["token"]
    with _client(instance) as client:
        form = _form(client)
        answers = set()
        for attempt in range(50):
            # Each from a "different" address: forwarded headers are not trusted.
            response = client.post(
                "/login",
                data={**form, "secret": f"wrong-{attempt}"},
                headers={
                    "X-Forwarded-For": f"10.0.{attempt}.1",
                    "X-Real-Ip": f"10.1.{attempt}.1",
                    "Forwarded": f"for=10.2.{attempt}.1",
                },
            )
            answers.add(response.status_code)
        assert answers == {401, 429}, answers  # backed off, whatever the claimed address
        right = client.post("/login", data={**form, "secret": token})
        assert right.status_code == 303
        assert client.get("/api/services").status_code == 200
    with _client(instance) as link:
        assert link.get(f"/login?token={token}").status_code == 303
        assert link.get("/api/services").status_code == 200


def test_wrong_passwords_from_elsewhere_do_not_lock_out_a_known_browser(instance: Path) -> None:
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "coursestack", "passwd", "--state", str(instance), "--stdin"],
        input="the student's password\n",
        text=True,
        check=True,
        capture_output=True,
    )
    try:
        with _client(instance) as student:
            # The student logged in on this browser before (its device cookie).
            assert student.get(f"/login?token={_record(instance)['token']}").status_code == 303
            student.post(
                "/logout", data={"csrf_token": student.get("/api/session").json()["csrf_token"]}
            )
            with _client(instance) as attacker:
                form = _form(attacker)
                for attempt in range(30):
                    attacker.post("/login", data={**form, "secret": f"guess-{attempt}"})
                refused = attacker.post("/login", data={**form, "secret": "guess"})
                assert refused.status_code == 429
            back = student.post(
                "/login", data={**_form(student), "secret": "the student's password"}
            )
            assert back.status_code == 303
            assert student.get("/api/services").status_code == 200
    finally:
        cli("passwd", "--state", str(instance), "--clear")


def test_eight_threads_of_wrong_passwords_leave_health_answering(instance: Path) -> None:
    import subprocess

    subprocess.run(
        [sys.executable, "-m", "coursestack", "passwd", "--state", str(instance), "--stdin"],
        input="a long enough secret\n",
        text=True,
        check=True,
        capture_output=True,
    )
    stop = threading.Event()
    sent = [0] * 8

    def guess(index: int) -> None:
        with _client(instance) as client:
            form = _form(client)
            while not stop.is_set():
                client.post("/login", data={**form, "secret": f"wrong {sent[index]}"})
                sent[index] += 1

    threads = [threading.Thread(target=guess, args=(index,)) for index in range(8)]
    probes = 0
    try:
        for thread in threads:
            thread.start()
        with _client(instance) as probe:
            # Health answers all the while every thread keeps guessing (no timing asserted:
            # bench/ measures how fast).
            deadline = time.monotonic() + 120
            while min(sent) < 5 and time.monotonic() < deadline:
                assert probe.get("/api/health", timeout=30).status_code == 200
                probes += 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        cli("passwd", "--state", str(instance), "--clear")
    assert min(sent) >= 5 and probes >= 1, (sent, probes)


def test_a_revoked_session_stays_revoked_after_down_and_up() -> None:
    state, _ = _up("revoke")
    try:
        with _client(state) as client:
            assert client.get(f"/login?token={_record(state)['token']}").status_code == 303
            kept = dict(client.cookies)
            csrf = client.get("/api/session").json()["csrf_token"]
            assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
        revoked = state / "run" / "revoked-sessions.json"
        assert stat.S_IMODE(revoked.stat().st_mode) == 0o600
        cli("down", "--state", str(state))
        cli("up", "--state", str(state))
        with _client(state) as replay:
            replay.cookies.update(kept)
            assert replay.get("/api/services").status_code == 401
    finally:
        cli("down", "--state", str(state), check=False)


def test_passwd_ends_every_session(instance: Path) -> None:
    import subprocess

    with _client(instance) as client:
        assert client.get(f"/login?token={_record(instance)['token']}").status_code == 303
        assert client.get("/api/services").status_code == 200
        try:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "coursestack",
                    "passwd",
                    "--state",
                    str(instance),
                    "--stdin",
                ],
                input="a brand new password\n",
                text=True,
                check=True,
                capture_output=True,
            )
            assert client.get("/api/services").status_code == 401
        finally:
            cli("passwd", "--state", str(instance), "--clear")
    with _client(instance, Authorization=f"Bearer {_record(instance)['token']}") as cli_client:
        assert cli_client.get("/api/services").status_code == 200


def test_two_instances_keep_their_cookies_apart(instance: Path) -> None:
    other, _ = _up("logins")  # the same course name, another state folder
    try:
        assert session_cookie_name(StateFolder(instance)) != session_cookie_name(StateFolder(other))
        jar = httpx.Cookies()
        for state in (instance, other):
            with _client(state) as client:
                client.cookies = jar
                assert client.get(f"/login?token={_record(state)['token']}").status_code == 303
                jar = client.cookies
        assert len([c for c in jar.jar if c.name.startswith("coursestack_session_")]) == 2
        for state in (instance, other):
            with _client(state) as client:
                client.cookies = jar
                assert client.get("/api/services").status_code == 200
    finally:
        cli("down", "--state", str(other), check=False)


def test_one_time_codes_expire_within_a_minute_and_work_once() -> None:
    codes = OneTimeCodes()
    code = codes.issue("dashboard", OPEN_LIFETIME, now=0)
    assert OPEN_LIFETIME <= 60
    assert codes.redeem(code, "dashboard", now=OPEN_LIFETIME + 0.1) is None
    code = codes.issue("dashboard", OPEN_LIFETIME, now=0)
    assert codes.redeem(code, "service:web", now=1) is None  # wrong place: used up
    assert codes.redeem(code, "dashboard", now=1) is None
    code = codes.issue("dashboard", OPEN_LIFETIME, now=0)
    assert codes.redeem(code, "dashboard", now=1) is not None
    assert codes.redeem(code, "dashboard", now=2) is None


def _sample_cmdlines(stop: threading.Event, seen: set[str]) -> None:
    """Every command line on the machine, sampled until `stop`."""
    while not stop.is_set():
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                        seen.add(handle.read().replace(b"\0", b" ").decode("latin-1"))
                except OSError:
                    continue
        time.sleep(0.005)


def test_up_open_puts_no_secret_on_a_command_line() -> None:
    folder = open_folder("open-")
    opened = folder / "opened.txt"
    browser = folder / "browser"
    # A stand-in browser: records what it was asked to open.
    browser.write_text(f'#!/bin/sh\necho "$@" >> {opened}\n')
    browser.chmod(0o755)
    stop, seen = threading.Event(), set()
    sampler = threading.Thread(target=_sample_cmdlines, args=(stop, seen))
    sampler.start()
    try:
        state, _ = _up("opener", ("--open",), env={"BROWSER": str(browser)})
    finally:
        stop.set()
        sampler.join()
    try:
        record = _record(state)
        target = opened.read_text().strip()
        page = Path(target.removeprefix("file://"))
        assert page.parent == state / "run"
        assert stat.S_IMODE(page.stat().st_mode) == 0o600
        text = page.read_text()
        assert record["token"] not in text
        code = re.search(r'name="code" value="([^"]+)"', text)
        assert code
        secrets = [record["token"], code.group(1)]
        secrets += [
            str(v) for v in json.loads((state / "run" / "secrets.json").read_text()).values()
        ]
        lines = [line for line in seen if line]
        assert any("coursestack" in line for line in lines)  # the sampler did see us
        for line in lines:
            for secret in secrets:
                assert secret not in line, f"a secret on a command line: {line[:200]}"
        with _client(state) as client:
            logged = client.post(
                "/login/code", data={"code": code.group(1)}, headers={"Origin": "null"}
            )
            assert logged.status_code == 200 and "refresh" in logged.text
            assert client.get("/api/services").status_code == 200
        with _client(state) as again:
            assert again.post("/login/code", data={"code": code.group(1)}).status_code == 401
            assert again.get("/api/services").status_code == 401
    finally:
        cli("down", "--state", str(state), check=False)
