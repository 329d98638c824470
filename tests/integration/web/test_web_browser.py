"""The dashboard in a real browser (Playwright + Debian's chromium, headless)."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

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
DOCS = Path(__file__).resolve().parents[3] / "docs"
NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "c1",
            "metadata": {},
            "outputs": [],
            "source": "print(6 * 7)",
        }
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")
def test_log_in_stop_start_and_run_a_cell(daemon: Any, restore_services: None) -> None:
    from playwright.sync_api import expect, sync_playwright

    from lab_cell import run_first_cell

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 420})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{daemon.url}login?token={daemon.token}")
            assert page.url == daemon.url, "the login link must land on the dashboard"
            postgres = page.locator("#svc-postgres [data-field=state]")
            jupyter = page.locator("#svc-jupyter [data-field=state]")
            expect(postgres).to_have_text("ready")
            expect(jupyter).to_have_text("ready")
            expect(page.locator("#svc-jupyter [data-field=heartbeat]")).to_contain_text("ago")
            page.wait_for_timeout(1200)  # let the live clocks tick once
            DOCS.mkdir(exist_ok=True)
            page.screenshot(path=str(DOCS / "dashboard.png"), full_page=True)

            page.get_by_role("button", name="Stop postgres", exact=True).click()
            expect(postgres).to_have_text("stopped", timeout=30_000)
            expect(page.locator("#announcer")).to_have_text("postgres is now stopped")
            page.get_by_role("button", name="Start postgres", exact=True).click()
            expect(postgres).to_have_text("ready", timeout=60_000)

            # Jupyter through the front door: the dashboard's link logs the browser into
            # Jupyter's own origin; open a notebook there and run its cell.
            name = f"web-test-{uuid.uuid4().hex[:8]}.ipynb"
            with daemon.bearer() as client:
                jupyter = client.get("/api/connections?reveal=true").json()["services"]["jupyter"]
            contents = f"{jupyter['url']}api/contents/{name}"
            token = {"Authorization": f"token {jupyter['password']}"}
            created = httpx.put(
                contents,
                json={"type": "notebook", "content": NOTEBOOK},
                headers=token,
                trust_env=False,
                timeout=30,
            )
            assert created.is_success, created.text
            lab = context.new_page()
            lab.set_viewport_size({"width": 1280, "height": 900})
            lab.goto(f"{daemon.url}s/jupyter/lab/tree/{name}")
            lab.wait_for_url(
                re.compile(
                    r"http://jupyter\.[a-z0-9-]+\.localhost:\d+/s/jupyter/"
                    r"lab/tree/"
                )
            )
            run_first_cell(lab, "print(6 * 7)", "42")
            assert errors == []
            httpx.delete(contents, headers=token, trust_env=False, timeout=30)
        finally:
            browser.close()
