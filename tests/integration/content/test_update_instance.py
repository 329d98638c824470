"""Updates of a real instance: `up` with update = "on-up", the dashboard's button (the
API route), files written as the notebooks folder's owner, an offline `up`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from content_helpers import notebook, sources_of
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


def _course(root: Path) -> Path:
    (root / "upstream").mkdir()
    (root / "upstream" / "lab.ipynb").write_text(notebook("x = 1", "y = 2"))
    folder = root / "course"
    folder.mkdir()
    (folder / "course.toml").write_text(
        '[course]\nname = "updates"\n\n[content]\nsource = "../upstream"\nupdate = "on-up"\n\n'
        '[services.jupyter]\nkind = "jupyter"\napp = "server"\n',
        encoding="utf-8",
    )
    return folder


def test_up_updates_then_the_dashboard_button_updates_a_running_instance() -> None:
    root = open_folder("content-")
    folder = _course(root)
    state = root / "state"
    notebooks = folder / "notebooks"
    started = cli("up", str(folder), "--state", str(state))
    try:
        assert "lab.ipynb: new from the course, added" in started.stdout
        assert sources_of((notebooks / "lab.ipynb").read_text()) == ["x = 1", "y = 2"]

        # The student edits cell 1; the course edits cell 2 and adds a cell.
        (notebooks / "lab.ipynb").write_text(notebook("x = 'mine'", "y = 2"))
        (root / "upstream" / "lab.ipynb").write_text(notebook("x = 1", "y = 3", "z = 4"))
        (root / "upstream" / "new.txt").write_text("new")
        record = state / "run" / "daemon.json"
        daemon = json.loads(record.read_text())
        with httpx.Client(base_url=daemon["url"], trust_env=False, timeout=120) as browser:
            assert browser.get(f"/login?token={daemon['token']}").status_code == 303
            page = browser.get("/").text
            assert 'id="update-content"' in page
            refused = browser.post("/api/content/update")  # no CSRF token
            assert refused.status_code == 403
            csrf = browser.get("/api/session").json()["csrf_token"]
            answer = browser.post("/api/content/update", headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 200, answer.text
        report = answer.json()
        actions = {entry["path"]: entry["action"] for entry in report["entries"]}
        assert actions == {"lab.ipynb": "merged", "new.txt": "added"}
        assert report["reload_notebooks"] is True
        assert any("Reload Notebook from Disk" in line for line in report["lines"])
        assert sources_of((notebooks / "lab.ipynb").read_text()) == ["x = 'mine'", "y = 3", "z = 4"]
        # Written as the account that owns the notebooks folder; when root runs the
        # instance, that folder stays its owner's and the service account reaches it by an
        # ACL entry, which must still let Jupyter save the delivered files.
        owner = notebooks.stat().st_uid
        assert (notebooks / "new.txt").stat().st_uid == owner
        assert (notebooks / "lab.ipynb").stat().st_uid == owner
        if os.geteuid() == 0:
            account = json.loads((state / "run" / "account.json").read_text())
            for name in ("new.txt", "lab.ipynb"):
                writable = subprocess.run(
                    ["test", "-w", str(notebooks / name)], user=int(account["uid"]), check=False
                )
                assert writable.returncode == 0, f"the service account cannot save {name}"
        _press_the_dashboard_button(daemon["url"], daemon["token"], root)
    finally:
        cli("down", "--state", str(state), check=False)

    # Offline at the next start: a warning, never a failed start.
    (root / "upstream").rename(root / "away")
    offline = cli("up", str(folder), "--state", str(state))
    try:
        assert "the course material was not updated" in offline.stdout
        assert "Dashboard:" in offline.stdout
        # And the update works with the instance running or not.
        (root / "away").rename(root / "upstream")
    finally:
        cli("down", "--state", str(state), check=False)
    (root / "upstream" / "later.txt").write_text("later")
    stopped = cli("update", str(folder), "--state", str(state))
    assert "later.txt: new from the course, added" in stopped.stdout


def _press_the_dashboard_button(url: str, token: str, root: Path) -> None:
    """In a real browser: the button shows the same report, file by file."""
    if shutil.which(CHROMIUM) is None:
        print("browser step skipped: needs Debian's chromium at", CHROMIUM)
        return
    from playwright.sync_api import expect, sync_playwright

    (root / "upstream" / "week2.txt").write_text("week 2")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}login?token={token}")
            page.get_by_role("button", name="Update course material").click()
            report = page.locator("#update-report")
            expect(report).to_contain_text("week2.txt: new from the course, added", timeout=60_000)
            expect(report).to_contain_text("1 file changed; none of your work was lost.")
            assert not errors, errors
        finally:
            browser.close()
