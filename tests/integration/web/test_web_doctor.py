""" "Check my setup" in the dashboard: the doctor's findings and the diagnostics bundle."""

from __future__ import annotations

import io
import re
import shutil
import threading
import time
import zipfile
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_the_doctor_page_lists_every_finding_with_a_text_status(
    daemon: Any, session: tuple[httpx.Client, str]
) -> None:
    client, _csrf = session
    # The doctor blocks (programs, the daemon's own API): it must run off the event loop,
    # so the daemon keeps answering while it works.
    slowest = 0.0
    done = threading.Event()

    def poll() -> None:
        nonlocal slowest
        with httpx.Client(base_url=daemon.url, trust_env=False, timeout=30) as other:
            while not done.is_set():
                started = time.monotonic()
                assert other.get("/api/health").status_code == 200
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        page = client.get("/doctor", headers={"Accept": "text/html"})
    finally:
        done.set()
        poller.join()
    assert page.status_code == 200, page.text
    assert slowest < 0.5, f"the daemon stalled {slowest:.2f} s while the doctor ran"
    html = page.text
    assert '<a href="/doctor" aria-current="page">Check my setup</a>' in html
    findings = re.findall(
        r'<li class="finding finding-(ok|warn|fail)">\s*'
        r'<p class="finding-head"><span class="badge badge-\1">([^<]+)</span>',
        html,
    )
    assert len(findings) >= 8, html
    words = {"ok": "OK", "warn": "Warning", "fail": "Problem"}
    assert all(words[status] == text for status, text in findings), findings
    for check in ("python", "packages", "spec", "daemon", "service:postgres"):
        assert f'<span class="check">{check}</span>' in html, check
    assert "Download diagnostics bundle" in html
    assert daemon.token not in html


def test_the_bundle_downloads_as_a_redacted_zip(
    daemon: Any, session: tuple[httpx.Client, str]
) -> None:
    client, csrf = session
    refused = client.post("/doctor/bundle", data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    assert client.post("/doctor/bundle").status_code == 403
    response = client.post("/doctor/bundle", data={"csrf_token": csrf})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    disposition = response.headers["content-disposition"]
    assert re.fullmatch(
        r'attachment; filename="coursestack-diagnostics-[\w.-]+\.zip"', disposition
    ), disposition
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert any(name.endswith("/doctor.txt") for name in names), names
        assert any(name.endswith("/services.json") for name in names), names
        for name in names:
            assert daemon.token not in archive.read(name).decode("utf-8", "replace"), name
    # The CLI's way works too (a bearer token needs no CSRF token).
    with daemon.bearer() as cli_client:
        assert cli_client.post("/doctor/bundle").status_code == 200


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium")
def test_check_my_setup_in_a_browser(daemon: Any) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{daemon.url}login?token={daemon.token}")
            page.get_by_role("link", name="Check my setup").click()
            expect(page.get_by_role("heading", name="Check my setup", level=1)).to_be_visible()
            findings = page.get_by_role("list", name="Findings").get_by_role("listitem")
            assert findings.count() >= 8
            expect(findings.first.locator(".badge")).to_have_text(
                re.compile("^(OK|Warning|Problem)$")
            )
            with page.expect_download() as download_info:
                page.get_by_role("button", name="Download diagnostics bundle").click()
            download = download_info.value
            assert download.suggested_filename.startswith("coursestack-diagnostics-")
            with zipfile.ZipFile(download.path()) as archive:
                assert any(name.endswith("/doctor.json") for name in archive.namelist())
            assert errors == []
        finally:
            browser.close()
