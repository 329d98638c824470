"""The HTML progress page in a real browser (Debian chromium via Playwright).

Also writes `docs/progress-screenshot.png`, the picture the docs show.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime
from pathlib import Path

import pytest
from docx import Document as new_docx

from coursestack.authoring.progress import progress_report
from coursestack.authoring.progress_html import render_html

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[3] / "docs"


def _words(n: int) -> str:
    return " ".join(("data", "model", "query", "table", "index")[i % 5] for i in range(n))


def _course(tmp_path: Path) -> Path:
    folder = tmp_path / "TM351"
    folder.mkdir()
    (folder / "metadata").write_text(
        "courseCode :: TM351;;\ncourseTitle :: Data management and analysis;;\n"
        "target_words :: 1500;;\ntolerance :: 10;;\ndeadline :: 2030-06-30;;\n"
        "alert_at :: 50, 90;;\n"
    )
    for n, words in ((1, 1600), (2, 1420), (3, 780), (4, 120), (5, 2100)):
        (folder / f"week{n}.md").write_text(
            f"---\ntitle: Week {n}\n---\n# Week {n}\n\n{_words(words - 2)}\n"
        )
    doc = new_docx()
    doc.add_paragraph("Week 6: Review", style="Title")
    doc.add_heading("Review", level=1)
    doc.add_paragraph(_words(299))
    doc.save(str(folder / "week6.docx"))
    (folder / "assessment-plan.md").write_text(
        "---\ntitle: Assessment plan\ntask: yes\npercent_complete: 40\n---\n# Plan\n\nTBD\n"
    )
    return folder


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("chromium") is None,
    reason="Debian chromium is not installed at /usr/bin/chromium",
)
def test_progress_page_in_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder = _course(tmp_path)
    report = progress_report(folder, today=date(2030, 6, 1))
    page_file = tmp_path / "progress.html"
    page_file.write_text(render_html(report, now=datetime(2030, 6, 1, 9, 0)), encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 720})
            page.goto(page_file.as_uri())
            assert page.title() == "Draft progress \u2013 TM351 Data management and analysis"
            assert page.locator("tbody tr").count() == 7

            def colour(path: str, cls: str) -> str:
                return str(
                    page.locator(f'tr[data-path="{path}"] .fill.{cls}').evaluate(
                        "e => getComputedStyle(e).backgroundColor"
                    )
                )

            def share(path: str, cls: str) -> float:
                bar = page.locator(f'tr[data-path="{path}"] .fill.{cls}').bounding_box()
                track = page.locator(f'tr[data-path="{path}"] .track').bounding_box()
                assert bar is not None and track is not None
                return bar["width"] / track["width"]

            # week3: 780 of 1500 = 52%: blue, about a third of the track (track = 150%).
            assert colour("week3.md", "base") == "rgb(47, 111, 214)"
            assert abs(share("week3.md", "base") - 0.52 / 1.5) < 0.01
            # week1: 1600 = 106.7%, past target within tolerance: green then amber.
            assert colour("week1.md", "base") == "rgb(31, 157, 85)"
            assert colour("week1.md", "extra") == "rgb(227, 160, 8)"
            # week5: 2100 = 140%: the part past the target is red (overrun).
            assert colour("week5.md", "extra.overrun") == "rgb(214, 69, 69)"
            assert abs(share("week5.md", "extra") - 0.40 / 1.5) < 0.01
            # Alerts raised on this first run are listed on the page.
            assert "week3.md crossed 50%" in page.locator(".alerts").inner_text()
            assert (
                "task (manual)" in page.locator('tr[data-path="assessment-plan.md"]').inner_text()
            )
            DOCS.mkdir(exist_ok=True)
            shot = DOCS / "progress-screenshot.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            browser.close()
