"""HTTPS for the dashboard (`[dashboard] tls`) and for the Hub (`hub up --tls`)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest

from support import cli, open_folder

pytestmark = pytest.mark.slow

SPEC = """
[course]
name = "tls-check"

[dashboard]
port = {port}
tls = "self-signed"

[services.web]
kind = "command"
command = "python -m http.server {{port}} --bind 127.0.0.1"
port = {web}
"""


def test_the_dashboard_serves_https_with_a_self_signed_certificate() -> None:
    from coursestack.ports import ephemeral_port

    folder = open_folder("tls-")
    spec = folder / "course.toml"
    spec.write_text(SPEC.format(port=ephemeral_port(), web=ephemeral_port()))
    state = folder / "state"
    try:
        cli("up", str(spec), "--state", str(state))
        record = json.loads((state / "run" / "daemon.json").read_text())
        assert record["url"].startswith("https://")
        cert = Path(record["tls_cert"])
        assert cert.is_relative_to(state)
        trusted = ssl.create_default_context(cafile=str(cert))
        health = httpx.get(f"{record['url']}api/health", verify=trusted, trust_env=False)
        assert health.status_code == 200
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the same port
            httpx.get(
                record["url"].replace("https://", "http://") + "api/health",
                trust_env=False,
                timeout=5,
            ).raise_for_status()
        with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused
            httpx.get(f"{record['url']}api/health", trust_env=False)
        # The CLI talks to its daemon over HTTPS too.
        status = json.loads(cli("status", "--json", "--state", str(state)).stdout)
        assert status
    finally:
        cli("down", "--state", str(state), check=False)
