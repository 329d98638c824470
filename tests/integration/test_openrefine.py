"""OpenRefine on demand through the front door: the first request starts it (a
"starting…" page meanwhile), it serves its real pages, and it stops after its idle time.
Without OpenRefine installed, the course still runs and says how to install it."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from coursestack.instances import sample_course_source
from coursestack.web.origins import dns_label
from support import cli, open_folder

pytestmark = pytest.mark.slow


def services(state: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(cli("status", "--json", "--state", str(state), check=False).stdout)
    return {s["name"]: s for s in data["services"]}


def front_door(state: Path, service: str) -> httpx.Client:
    """A client of `service`'s own origin at the front door (the instance token as bearer)."""
    record = json.loads((state / "run" / "daemon.json").read_text())
    instance = dns_label(json.loads((state / "instance.json").read_text())["name"])
    return httpx.Client(
        base_url=record["url"],
        trust_env=False,
        timeout=30,
        headers={
            "Authorization": f"Bearer {record['token']}",
            "Accept": "text/html",
            "Host": f"{service}.{instance}.localhost:{record['port']}",
        },
    )


@pytest.fixture
def refine_course() -> Iterator[Path]:
    if shutil.which("openrefine") is None:
        pytest.skip("OpenRefine is not installed (apt-get install openrefine)")
    folder = open_folder("refine-")
    shutil.copytree(sample_course_source(), folder / "course")
    spec = folder / "course" / "course.toml"
    spec.write_text(spec.read_text().replace("idle_stop = 900", "idle_stop = 6"))
    cli("up", str(spec), "--state", str(folder / "state"), "--only", "postgres")
    yield folder / "state"
    cli("down", "--state", str(folder / "state"), check=False)


def test_first_request_starts_openrefine_and_idle_stops_it(refine_course: Path) -> None:
    found = services(refine_course)
    assert found["postgres"]["state"] == "ready"  # `up --only postgres` started it alone
    assert {found[n]["state"] for n in ("openrefine", "jupyter", "mongo")} == {"stopped"}
    with front_door(refine_course, "openrefine") as client:
        first = client.get("/")
        assert first.status_code == 503
        assert "Starting openrefine" in first.text and 'http-equiv="refresh"' in first.text
        deadline = time.monotonic() + 120
        page = first
        while page.status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
            page = client.get("/")
        assert page.status_code == 200, page.text[:500]
        assert "<title>OpenRefine</title>" in page.text
        version = client.get("/command/core/get-version").json()
        assert version["version"].startswith("3.")
    assert services(refine_course)["openrefine"]["state"] == "ready"
    deadline = time.monotonic() + 60
    while services(refine_course)["openrefine"]["state"] != "stopped":
        assert time.monotonic() < deadline, "OpenRefine was not stopped when idle"
        time.sleep(1)
    assert "idle" in services(refine_course)["openrefine"]["detail"]


def test_missing_openrefine_leaves_the_course_running(workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "norefine"\n'
        '[services.web]\nkind = "command"\ncommand = ["python3", "-m", '
        '"http.server", "{port}", "--bind", "127.0.0.1"]\nport = 18080\n'
        '[services.refine]\nkind = "openrefine"\nbinary = "no-such-openrefine"\n'
        'start = "on-demand"\n'
    )
    state = workdir / "state"
    try:
        cli("up", str(spec), "--state", str(state))  # refine is on demand: up succeeds
        with front_door(state, "refine") as client:
            page = client.get("/")
            deadline = time.monotonic() + 20
            while "could not start" not in page.text and time.monotonic() < deadline:
                time.sleep(0.5)
                page = client.get("/")
        assert "could not start" in page.text
        assert "apt-get install openrefine" in page.text
        found = services(state)
        assert found["refine"]["state"] == "failed"
        assert "apt-get install openrefine" in found["refine"]["reason"]
        assert found["web"]["state"] == "ready"
    finally:
        cli("down", "--state", str(state), check=False)
