"""Draft progress: measures, targets, overrun, tasks, alerts, deadlines, JSON and watch."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

from docx import Document as new_docx
from typer.testing import CliRunner

from coursestack.authoring.cli import author_app
from coursestack.authoring.progress import STATE_FILE, DraftProgress, progress_report
from coursestack.authoring.progress_html import render_html


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def _folder(tmp_path: Path, meta: str = "") -> Path:
    folder = tmp_path / "drafts"
    folder.mkdir()
    (folder / "metadata").write_text("courseCode :: TM351;;\ntarget_words :: 100;;\n" + meta)
    (folder / "half.md").write_text(f"# Half\n\n{_words(49)}\n")  # 50 words with heading
    (folder / "over.md").write_text(f"# Over\n\n{_words(129)}\n")  # 130 words
    doc = new_docx()
    doc.add_heading("Near", level=1)
    doc.add_paragraph(_words(104))  # 105 words: past target but within 10% tolerance
    doc.save(str(folder / "near.docx"))
    (folder / "notes.txt").write_text("not a draft")
    (folder / "~$near.docx").write_text("Word lock file")
    return folder


def _by_path(folder: Path, **kw: Any) -> dict[str, DraftProgress]:
    report = progress_report(folder, **kw)
    return {i.path: i for i in report.items}


def test_words_target_tolerance_and_status(tmp_path: Path) -> None:
    items = _by_path(_folder(tmp_path), alerts=False)
    assert sorted(items) == ["half.md", "near.docx", "over.md"]
    half, near, over = items["half.md"], items["near.docx"], items["over.md"]
    assert (half.words, half.percent, half.status) == (50, 50.0, "in progress")
    assert (near.percent, near.status, near.overrun) == (105.0, "done", False)
    assert (over.percent, over.status, over.overrun) == (130.0, "overrun", True)


def test_pages_and_lines_measures(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "words_per_page :: 50;;\n")
    pages = _by_path(folder, overrides={"measure": "pages"}, alerts=False)
    assert pages["over.md"].value == 2.6
    assert pages["over.md"].target == 2.0  # converted from target_words
    (folder / "code.md").write_text("---\ntarget_lines: 4\n---\n# Code\n\n```\na\nb\nc\n```\n")
    lines = _by_path(folder, overrides={"measure": "lines"}, alerts=False)
    assert lines["code.md"].value == 4 and lines["code.md"].percent == 100.0
    assert lines["half.md"].target is None and lines["half.md"].status == "no target"


def test_task_uses_manual_percent(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "plan.md").write_text(
        "---\ntags: [planning, task]\npercent_complete: 75%\n---\n# Plan\n\nshort\n"
    )
    item = _by_path(folder, alerts=False)["plan.md"]
    assert item.task and item.percent == 75.0 and item.status == "in progress"


def test_alerts_once_per_crossing_with_state_and_command(tmp_path: Path) -> None:
    log = tmp_path / "alerts.log"
    script = tmp_path / "notify.py"
    script.write_text(
        "import os, sys\nwith open(sys.argv[1], 'a') as f:\n"
        "    f.write(os.environ['COURSESTACK_ALERT_THRESHOLD'] + ' ' "
        "+ sys.stdin.read())\n"
    )
    folder = _folder(
        tmp_path, f"alert_at :: 50, 90;;\nalert_command :: {sys.executable} {script} {log};;\n"
    )
    first = progress_report(folder)
    assert sorted(first.alerts) == [
        "half.md crossed 50%: now 50% (50 of 100 words)",
        "near.docx crossed 50%: now 105% (105 of 100 words)",
        "near.docx crossed 90%: now 105% (105 of 100 words)",
        "over.md crossed 50%: now 130% (130 of 100 words)",
        "over.md crossed 90%: now 130% (130 of 100 words)",
    ]
    assert len(log.read_text().splitlines()) == 5 and first.problems == []
    state = json.loads((folder / STATE_FILE).read_text())
    assert state["crossed"]["half.md"] == [50.0]
    assert progress_report(folder).alerts == []  # no second alert without a new crossing
    (folder / "half.md").write_text(f"# Half\n\n{_words(10)}\n")  # drops below 50
    assert progress_report(folder).alerts == []
    (folder / "half.md").write_text(f"# Half\n\n{_words(95)}\n")  # crosses 50 and 90 again
    assert sorted(progress_report(folder).alerts) == [
        "half.md crossed 50%: now 96% (96 of 100 words)",
        "half.md crossed 90%: now 96% (96 of 100 words)",
    ]


def test_failing_alert_command_is_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "alert_at :: 50;;\nalert_command :: false;;\n")
    report = progress_report(folder)
    assert report.failed and any("exited 1" in p.message for p in report.problems)


def test_deadline_words_per_day(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "deadline :: 2030-03-11;;\n")
    items = _by_path(folder, today=date(2030, 3, 1), alerts=False)
    half = items["half.md"]
    assert (half.days_left, half.per_day) == (10, 5.0)  # 50 words left over 10 days
    assert items["over.md"].per_day == 0.0
    late = _by_path(folder, today=date(2030, 3, 20), alerts=False)["half.md"]
    assert late.days_left == -9 and late.per_day == 50.0


def test_bad_numbers_and_dates_are_reported(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "deadline :: next week;;\n")
    (folder / "metadata").write_text("target_words :: lots;;\ndeadline :: next week;;\n")
    report = progress_report(folder, alerts=False)
    messages = [p.render() for p in report.problems]
    assert any("target_words 'lots' is not a number" in m for m in messages)
    assert any("metadata:2" in m and "is not a date" in m for m in messages)
    assert report.failed


def test_cli_table_json_and_exit_status(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    runner = CliRunner()
    table = runner.invoke(author_app, ["progress", str(folder), "--no-alerts"])
    assert table.exit_code == 0, table.output
    assert "over.md" in table.output and "overrun" in table.output and "130%" in table.output
    as_json = runner.invoke(
        author_app,
        [
            "progress",
            str(folder),
            "--json",
            "--no-alerts",
            "--by",
            "pages",
            "--words-per-page",
            "25",
        ],
    )
    data = json.loads(as_json.output)
    assert {d["path"]: d["value"] for d in data["documents"]} == {
        "half.md": 2.0,
        "near.docx": 4.2,
        "over.md": 5.2,
    }
    (folder / "broken.docx").write_bytes(b"garbage")
    failed = runner.invoke(author_app, ["progress", str(folder), "--no-alerts"])
    assert failed.exit_code == 1 and "broken.docx: error: is not a readable .docx" in failed.output


def test_watch_refreshes_and_rewrites_html(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    page = tmp_path / "p.html"
    result = CliRunner().invoke(
        author_app,
        [
            "progress",
            str(folder),
            "--watch",
            "--interval",
            "0.01",
            "--iterations",
            "3",
            "--no-alerts",
            "--html",
            str(page),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("Draft progress") == 3
    assert 'http-equiv="refresh"' in page.read_text()


def test_html_page_is_self_contained(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    html = render_html(progress_report(folder, alerts=False))
    assert "<script" not in html and "http://" not in html and "https://" not in html
    assert html.count('class="fill extra overrun"') == 1  # over.md only
    assert html.count('class="fill extra"') == 1  # near.docx: past target, within tolerance
    assert 'data-path="half.md"' in html
