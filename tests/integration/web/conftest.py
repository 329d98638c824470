"""Fixtures of the web tests: the running sample instance's address, token and sessions."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from coursestack.instances import Instance


@dataclass
class Daemon:
    """Where the sample instance's daemon listens, and its token."""

    url: str
    token: str
    instance: Instance

    @property
    def origin(self) -> str:
        return self.url.rstrip("/")

    def bearer(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            trust_env=False,
            timeout=60,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def wait_state(self, name: str, wanted: str, timeout: float = 90.0) -> None:
        with self.bearer() as client:
            deadline = time.monotonic() + timeout
            state = ""
            while time.monotonic() < deadline:
                state = client.get(f"/api/services/{name}").json()["state"]
                if state == wanted:
                    return
                time.sleep(0.2)
        raise AssertionError(f"{name} is {state}, not {wanted}, after {timeout} s")


@pytest.fixture(scope="session")
def daemon(sample_instance: Instance) -> Daemon:
    record = sample_instance.state.daemon()
    assert record is not None
    found = Daemon(record["url"], record["token"], sample_instance)
    found.wait_state("postgres", "ready")
    found.wait_state("jupyter", "ready")
    return found


@pytest.fixture
def session(daemon: Daemon) -> Iterator[tuple[httpx.Client, str]]:
    """A browser-like client logged in by the token link, and its CSRF token."""
    with httpx.Client(base_url=daemon.url, trust_env=False, timeout=60) as client:
        response = client.get(f"/login?token={daemon.token}")
        assert response.status_code == 303, response.text
        csrf = client.get("/api/session").json()["csrf_token"]
        assert csrf
        yield client, csrf


@pytest.fixture
def restore_services(daemon: Daemon) -> Iterator[None]:
    """Whatever a test stops, start it again: the sample instance is shared."""
    yield
    with daemon.bearer() as client:
        client.post("/api/up")
    daemon.wait_state("postgres", "ready")
    daemon.wait_state("jupyter", "ready")
