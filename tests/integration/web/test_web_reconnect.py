"""A daemon restart does not leave an open dashboard stuck: it reconnects by itself.

Its own instance (PostgreSQL only), never the shared one: it is stopped and started.
"""

from __future__ import annotations

import json
import shutil
import socket
import textwrap
from pathlib import Path

import pytest

from support import cli, open_folder

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_course(folder: Path, dashboard_port: int) -> Path:
    """A one-service course whose dashboard prefers `dashboard_port` (free now)."""
    spec = folder / "course.toml"
    spec.write_text(
        textwrap.dedent(f"""\
        [course]
        name = "reconnect"
        title = "Reconnect test"

        [dashboard]
        port = {dashboard_port}

        [services.postgres]
        kind = "postgres"
        port = {free_port()}
        database = "teaching"
        user = "student"
    """)
    )
    return spec


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")
def test_the_dashboard_reconnects_after_the_daemon_restarts() -> None:
    from playwright.sync_api import expect, sync_playwright

    state = open_folder("reconnect-")
    spec = write_course(open_folder("reconnect-course-"), free_port())
    cli("up", str(spec), "--state", str(state), "--timeout", "120")
    try:
        record = json.loads((state / "run" / "daemon.json").read_text())
        url, token = record["url"], record["token"]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1100, "height": 500})
                errors: list[str] = []
                page.on("pageerror", lambda error: errors.append(str(error)))
                page.goto(f"{url}login?token={token}")
                assert page.url == url
                postgres = page.locator("#svc-postgres [data-field=state]")
                heartbeat = page.locator("#svc-postgres [data-field=heartbeat]")
                banner = page.locator("#connection")
                expect(postgres).to_have_text("ready")
                expect(heartbeat).to_contain_text("ago")
                expect(banner).to_be_hidden()
                page.evaluate("window.notReloaded = true")

                cli("down", "--state", str(state))
                expect(banner).to_be_visible(timeout=10_000)
                expect(banner).to_contain_text("reconnecting")
                expect(postgres).not_to_have_text("ready")  # it saw the stop

                cli("up", str(spec), "--state", str(state), "--timeout", "120")
                again = json.loads((state / "run" / "daemon.json").read_text())
                assert again["url"] == url, "the daemon must come back on the same port"
                assert again["pid"] != record["pid"]
                # Live again within seconds, without a reload: the banner goes, the state
                # comes from the new daemon, and its heartbeat ticks.
                expect(banner).to_be_hidden(timeout=10_000)
                expect(postgres).to_have_text("ready", timeout=10_000)
                expect(heartbeat).to_contain_text("ago", timeout=10_000)
                assert page.evaluate("window.notReloaded") is True
                # The session survived the restart: an action from the page still works.
                page.get_by_role("button", name="Restart everything that has stopped").click()
                expect(page.locator("#result")).to_contain_text("Done", timeout=10_000)
                assert errors == []
            finally:
                browser.close()
    finally:
        cli("down", "--state", str(state), check=False)
