"""`coursestack hub up --tls self-signed`: the Hub's public address speaks HTTPS only."""

from __future__ import annotations

import json
import shutil
import ssl

import httpx
import pytest

from support import cli, open_folder
from support_hub import hub_missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_hub_with_a_self_signed_certificate() -> None:
    from coursestack.ports import ephemeral_port

    reason = hub_missing()
    if reason:
        pytest.skip(reason)
    folder = open_folder("hub-tls-")
    port = ephemeral_port()
    try:
        up = cli(
            "hub",
            "up",
            "--hub-dir",
            str(folder),
            "--port",
            str(port),
            "--tls",
            "self-signed",
            "--password",
            "hub-test-pw",
            "--unix-prefix",
            "cstest-",
        )
        assert f"https://127.0.0.1:{port}/" in up.stdout
        trusted = ssl.create_default_context(cafile=str(folder / "tls" / "cert.pem"))
        page = httpx.get(f"https://127.0.0.1:{port}/hub/login", verify=trusted, trust_env=False)
        assert page.status_code == 200 and "password" in page.text.lower()
        with pytest.raises(httpx.HTTPError):
            httpx.get(
                f"http://127.0.0.1:{port}/hub/login", trust_env=False, timeout=5
            ).raise_for_status()
        status = json.loads(cli("hub", "status", "--json", "--hub-dir", str(folder)).stdout)
        assert status["hub"] == f"https://127.0.0.1:{port}/"
    finally:
        cli("hub", "down", "--hub-dir", str(folder), check=False)
        shutil.rmtree(folder, ignore_errors=True)
