"""The front door parses, never pastes (a real daemon and a header-echoing service).

The service sees a rebuilt Host and X-Forwarded-*, never the browser's claims
(X-Real-Ip, Forwarded, X-Forwarded-*), never a coursestack cookie or our bearer token;
crafted paths and Host headers, on plain requests and WebSocket upgrades, give a clear
4xx and no 500, and the daemon logs no traceback.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import cli, open_folder

pytestmark = pytest.mark.slow

ECHO = """
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": self.headers.items()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "coursestack_forged=1; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""


@pytest.fixture(scope="module")
def echo_course() -> Iterator[dict[str, Any]]:
    folder = open_folder("parse-")
    (folder / "echo.py").write_text(ECHO)
    (folder / "echo.py").chmod(0o644)
    spec = folder / "course.toml"
    spec.write_text(f"""[course]
name = "parse"

[services.web]
kind = "command"
command = ["python3", "{folder / "echo.py"}", "{{port}}"]
web = true
port = 18471
probe = {{ type = "http", path = "/" }}
""")
    state = folder / "state"
    cli("up", str(spec), "--state", str(state))
    record = json.loads((state / "run" / "daemon.json").read_text())
    yield {"state": state, "url": record["url"], "token": record["token"], "port": record["port"]}
    cli("down", "--state", str(state), check=False)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = connection.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_headers_are_rebuilt_and_claims_dropped(echo_course: dict[str, Any]) -> None:
    course = echo_course
    host = f"web.parse.localhost:{course['port']}"
    with httpx.Client(
        base_url=course["url"],
        trust_env=False,
        timeout=30,
        headers={
            "Host": host,
            "Authorization": f"Bearer {course['token']}",
            "X-Real-Ip": "6.6.6.6",
            "Forwarded": "for=6.6.6.6",
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "https",
            "Cookie": "coursestack_session_x=1; theirs=kept",
        },
    ) as client:
        answer = client.get("/some/path?q=1")
    assert answer.status_code == 200, answer.text
    seen = {key.lower(): value for key, value in answer.json()["headers"]}
    assert answer.json()["path"] == "/some/path?q=1"
    assert seen["host"] == f"127.0.0.1:{18471}" or seen["host"].startswith("127.0.0.1:")
    assert seen["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-host"] == host
    assert seen["x-forwarded-proto"] == "http"
    assert "x-real-ip" not in seen and "forwarded" not in seen
    assert "authorization" not in seen
    assert seen.get("cookie") == "theirs=kept"
    assert "coursestack_forged" not in answer.headers.get("set-cookie", "")


def test_no_input_gives_a_500(echo_course: dict[str, Any]) -> None:
    course = echo_course
    port = course["port"]
    log = Path(course["state"]) / "logs" / "daemon.log"
    size = log.stat().st_size
    with httpx.Client(base_url=course["url"], trust_env=False, timeout=30) as client:
        assert client.get(f"/login?token={course['token']}").status_code == 303
        for path in (
            "/s/w%65b/x",
            "/s/web%2Findex.html",
            "/s/web/%2e%2e/x",
            "/s/%00/x",
            "/s/WEB/",
            "/s/web/" + "a" * 5000,
            "/s/nope/",
            "/s//x",
        ):
            answer = client.get(path)
            assert answer.status_code < 500, (path, answer.status_code)
        redirected = client.get("/s/w%65b/x")
        assert redirected.status_code == 303
        assert redirected.headers["location"].startswith(f"http://web.parse.localhost:{port}/")
    hosts = [
        f"web.parse.localhost:{port}",
        "web.parse.localhost:99999",
        "web.parse.localhost:abc",
        "web.other.localhost",
        "a b",
        "[::1",
        "x:y:z",
        "@evil.example",
        "web.parse.localhost:8700/../",
        "",
        "..localhost",
        "WEB.PARSE.LOCALHOST",
        "127.0.0.1:" + "9" * 50,
    ]
    for host in hosts:
        for path in ("/", "/s/web/x"):
            upgrade = (
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                f"Origin: http://{host}\r\n\r\n"
            ).encode("latin-1")
            status = _status(_raw(port, upgrade))
            assert status != 500 and status != 101, (host, path, status)
            plain = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            status = _status(_raw(port, plain.encode("latin-1")))
            assert status < 500, (host, path, status)
    time.sleep(0.3)
    with open(log, "rb") as handle:
        handle.seek(size)
        written = handle.read().decode("utf-8", "replace")
    assert "Traceback" not in written and "ERROR" not in written, written
