"""`coursestack singleuser` on its own: an inherited listening socket (`--fd`, as with
systemd socket activation), the Hub's prefix, and no way in without the Hub's login."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import httpx
import pytest

from support import open_folder, wait_for

pytestmark = pytest.mark.slow

SPEC = """
[course]
name = "singleuser-check"

[services.web]
kind = "command"
command = "python -m http.server {port} --bind 127.0.0.1"
port = 8123
"""


def test_singleuser_serves_an_inherited_socket_under_the_prefix() -> None:
    folder = open_folder("singleuser-")
    (folder / "course.toml").write_text(SPEC)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "JUPYTERHUB_SERVICE_PREFIX": "/user/ann/",
        "JUPYTERHUB_API_TOKEN": "not-a-real-token",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-ann",
        "JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/ann/oauth_callback",
        "JUPYTERHUB_USER": "ann",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:servers!server=ann/"]),
    }
    log = open(folder / "singleuser.log", "wb")  # noqa: SIM115 (closed in finally)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coursestack",
            "singleuser",
            str(folder / "course.toml"),
            "--state",
            str(folder / "state"),
            "--fd",
            str(listener.fileno()),
        ],
        env=env,
        pass_fds=[listener.fileno()],
        stdout=log,
        stderr=log,
    )
    listener.close()  # the daemon holds its own copy now
    base = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            try:
                httpx.get(f"{base}/user/ann/", trust_env=False, timeout=2)
            except httpx.HTTPError:
                return False
            return True

        wait_for(answers, timeout=90, what="singleuser on the inherited socket")
        page = httpx.get(f"{base}/user/ann/", trust_env=False, headers={"Accept": "text/html"})
        assert page.status_code == 302  # to the Hub's OAuth, with state and PKCE
        location = page.headers["location"]
        assert location.startswith("/hub/api/oauth2/authorize?")
        assert "client_id=jupyterhub-user-ann" in location and "code_challenge=" in location
        assert httpx.get(f"{base}/api/health", trust_env=False).status_code == 404
        callback = httpx.get(f"{base}/user/ann/oauth_callback?code=x&state=forged", trust_env=False)
        assert callback.status_code == 403
        record = json.loads((folder / "state" / "run" / "daemon.json").read_text())
        token = {"Authorization": f"Bearer {record['token']}"}
        # The student's own CLI reaches the daemon with the instance token.
        assert httpx.get(f"{base}/api/services", headers=token, trust_env=False).status_code == 200
    finally:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
