"""A small course of `command` services, up for one test: the composer edits its spec."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from coursestack.state import StateFolder
from support import cli, open_folder

#: A hand-written spec: comments and layout the composer must keep.
TINY_SPEC = """\
# A small course for the composer's tests.
[course]
name = "tiny"
title = "Tiny course"

[services.hello]
# A web server anyone can run.
kind = "command"
command = ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]
port = 8000   # a preference: another free port is used if it is taken
web = true    # served by the dashboard's front door at /s/hello/
"""


@dataclass
class Course:
    """A running course: its spec file, state folder, dashboard address and token."""

    spec: Path
    state: Path
    url: str
    token: str

    def bearer(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            trust_env=False,
            timeout=60,
            headers={"Authorization": f"Bearer {self.token}"},
        )

    def states(self) -> dict[str, str]:
        with self.bearer() as client:
            return {s["name"]: s["state"] for s in client.get("/api/services").json()}

    def wait_state(self, name: str, wanted: str, timeout: float = 60.0) -> dict[str, object]:
        with self.bearer() as client:
            deadline = time.monotonic() + timeout
            view: dict[str, object] = {}
            while time.monotonic() < deadline:
                response = client.get(f"/api/services/{name}")
                if response.status_code == 200:
                    view = response.json()
                    if view["state"] == wanted:
                        return view
                time.sleep(0.1)
        raise AssertionError(f"{name} is {view.get('state')}, not {wanted}, after {timeout} s")


@contextmanager
def running_course(spec_text: str = TINY_SPEC) -> Iterator[Course]:
    """`coursestack up` of `spec_text` in fresh folders; `down` afterwards."""
    folder = open_folder("composer-")
    spec = folder / "course" / "course.toml"
    spec.parent.mkdir()
    spec.parent.chmod(0o755)
    spec.write_text(spec_text, encoding="utf-8")
    state = folder / "state"
    cli("up", str(spec), "--state", str(state))
    try:
        record = StateFolder(state).daemon()
        assert record is not None
        yield Course(spec, state, record["url"], record["token"])
    finally:
        cli("down", "--state", str(state), check=False)
