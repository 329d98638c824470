"""Draft progress: how far each document is against its target, alerts and deadlines.

Progress is measured in words, lines or pages (words / `words_per_page`) against the
`target_words` / `target_lines` / `target_pages` metadata. A document tagged as a task
(`task :: yes` or a `task` tag) uses its manual `percent_complete` instead. Thresholds in
`alert_at` (e.g. `50, 90`) raise an alert once per upward crossing; which thresholds each
document has crossed is kept in `.coursestack-progress.json` in the folder.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from coursestack.authoring.documents import Draft, count_words, iter_drafts, text_lines
from coursestack.authoring.metadata import Metadata, parse_percentages, truthy
from coursestack.authoring.model import Problem

STATE_FILE = ".coursestack-progress.json"
MEASURES = ("words", "lines", "pages")
DEFAULT_WORDS_PER_PAGE = 500.0
DEFAULT_TOLERANCE = 10.0


@dataclass
class DraftProgress:
    """One document's progress, ready for a table, JSON or the HTML page."""

    path: str
    title: str
    measure: str
    value: float
    words: int
    lines: int
    pages: float
    target: float | None
    percent: float | None
    task: bool
    status: str
    tolerance: float
    deadline: str | None = None
    days_left: int | None = None
    per_day: float | None = None
    alerts: list[str] = field(default_factory=list)

    @property
    def overrun(self) -> bool:
        """Past the target by more than the tolerance."""
        return self.percent is not None and self.percent > 100 + self.tolerance


@dataclass
class ProgressReport:
    """Progress of every draft in a folder plus the problems found on the way."""

    folder: str
    course: str
    items: list[DraftProgress]
    problems: list[Problem]
    alerts: list[str]

    def to_json(self) -> str:
        """The report as JSON (problems rendered as strings)."""
        data = {
            "folder": self.folder,
            "course": self.course,
            "documents": [asdict(i) | {"overrun": i.overrun} for i in self.items],
            "alerts": self.alerts,
            "problems": [asdict(p) for p in self.problems],
        }
        return json.dumps(data, indent=2)

    @property
    def failed(self) -> bool:
        """True when any error was found."""
        return any(p.severity == "error" for p in self.problems)


def _number(meta: Metadata, key: str, problems: list[Problem], file: str) -> float | None:
    raw = meta.get(key)
    if raw is None:
        return None
    try:
        return float(raw.strip().rstrip("%").replace(",", ""))
    except ValueError:
        problems.append(
            Problem("error", file, meta.place(key) or key, f"{key} {raw!r} is not a number")
        )
        return None


def _status(value: float, percent: float | None, tolerance: float) -> str:
    if percent is None:
        return "no target"
    if value <= 0 and percent <= 0:
        return "not started"
    if percent < 100:
        return "in progress"
    return "done" if percent <= 100 + tolerance else "overrun"


def measure_draft(draft: Draft, root: Path, today: date, problems: list[Problem]) -> DraftProgress:
    """Measure one draft against its metadata."""
    doc = draft.document
    meta = draft.metadata
    file = str(doc.path)
    rel = str(doc.path.relative_to(root)) if doc.path.is_relative_to(root) else doc.path.name
    words = count_words(doc.blocks)
    lines = len(text_lines(doc.blocks))
    wpp = _number(meta, "words_per_page", problems, file) or DEFAULT_WORDS_PER_PAGE
    pages = float(doc.stated_pages) if doc.stated_pages else round(words / wpp, 2)
    measure = (meta.get("measure") or "words").strip().lower()
    if measure not in MEASURES:
        problems.append(
            Problem(
                "error",
                file,
                meta.place("measure"),
                f"measure {measure!r} is not one of {', '.join(MEASURES)}",
            )
        )
        measure = "words"
    value = {"words": float(words), "lines": float(lines), "pages": pages}[measure]
    target = _number(meta, f"target_{measure}", problems, file)
    if target is None and measure == "pages":
        tw = _number(meta, "target_words", problems, file)
        target = round(tw / wpp, 2) if tw is not None else None
    elif target is None and measure == "words":
        tp = _number(meta, "target_pages", problems, file)
        target = tp * wpp if tp is not None else None
    tags = {t.strip().lower() for t in (meta.get("tags") or "").replace(";", ",").split(",")}
    task = truthy(meta.get("task")) or "task" in tags
    tolerance = _number(meta, "tolerance", problems, file)
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    if task:
        percent = _number(meta, "percent_complete", problems, file)
        if percent is None:
            problems.append(
                Problem(
                    "warning",
                    file,
                    "",
                    "tagged as a task but has no percent_complete; counted as 0%",
                )
            )
            percent = 0.0
    else:
        percent = round(value / target * 100, 1) if target else None
    item = DraftProgress(
        path=rel,
        title=meta.get("item_title") or doc.path.stem,
        measure=measure,
        value=value,
        words=words,
        lines=lines,
        pages=pages,
        target=target,
        percent=percent,
        task=task,
        status="failed" if draft.failed else _status(value, percent, tolerance),
        tolerance=tolerance,
    )
    raw_deadline = meta.get("deadline")
    if raw_deadline:
        try:
            deadline = date.fromisoformat(raw_deadline.strip())
        except ValueError:
            problems.append(
                Problem(
                    "error",
                    file,
                    meta.place("deadline"),
                    f"deadline {raw_deadline!r} is not a date (YYYY-MM-DD)",
                )
            )
        else:
            item.deadline = deadline.isoformat()
            item.days_left = (deadline - today).days
            if target is not None and not task:
                remaining = max(0.0, target - value)
                item.per_day = round(remaining / max(item.days_left, 1), 1)
    return item


def _load_state(folder: Path) -> dict[str, list[float]]:
    try:
        data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        crossed = data.get("crossed", {})
        return {str(k): [float(x) for x in v] for k, v in crossed.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def update_alerts(
    folder: Path, items: list[DraftProgress], drafts: Mapping[str, Draft], problems: list[Problem]
) -> list[str]:
    """Raise an alert for each threshold crossed upwards since the last run; keep state."""
    state = _load_state(folder)
    new_state: dict[str, list[float]] = {}
    alerts: list[str] = []
    for item in items:
        draft = drafts[item.path]
        raw = draft.metadata.get("alert_at")
        crossed = set(state.get(item.path, []))
        if raw and item.percent is not None:
            try:
                thresholds = parse_percentages(raw, draft.metadata.place("alert_at"))
            except ValueError as exc:
                problems.append(Problem("error", str(draft.document.path), "", str(exc)))
                thresholds = []
            for t in thresholds:
                if item.percent >= t and t not in crossed:
                    unit = (
                        "" if item.task else f" ({item.value:g} of {item.target:g} {item.measure})"
                    )
                    msg = f"{item.path} crossed {t:g}%: now {item.percent:g}%{unit}"
                    item.alerts.append(msg)
                    alerts.append(msg)
                    crossed.add(t)
                    _send(draft, msg, item, t, problems)
                elif item.percent < t:
                    crossed.discard(t)  # dropped below: a later crossing alerts again
        if crossed:
            new_state[item.path] = sorted(crossed)
    if new_state != state:
        try:
            (folder / STATE_FILE).write_text(
                json.dumps({"crossed": new_state}, indent=2), encoding="utf-8"
            )
        except OSError as exc:
            problems.append(
                Problem("warning", str(folder / STATE_FILE), "", f"cannot save alert state: {exc}")
            )
    return alerts


def _send(
    draft: Draft, message: str, item: DraftProgress, threshold: float, problems: list[Problem]
) -> None:
    command = draft.metadata.get("alert_command")
    if not command:
        return
    env = dict(
        os.environ,
        COURSESTACK_ALERT_DOCUMENT=item.path,
        COURSESTACK_ALERT_THRESHOLD=f"{threshold:g}",
        COURSESTACK_ALERT_PERCENT=f"{item.percent:g}",
    )
    try:
        # No shell: the command comes from a metadata file, so keep it to one program.
        done = subprocess.run(
            shlex.split(command),
            input=message + "\n",
            text=True,
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        problems.append(
            Problem(
                "error",
                draft.metadata.place("alert_command"),
                "",
                f"alert command {command!r} failed: {exc}",
            )
        )
        return
    if done.returncode != 0:
        problems.append(
            Problem(
                "error",
                draft.metadata.place("alert_command"),
                "",
                f"alert command {command!r} exited {done.returncode}: {done.stderr.strip()[:200]}",
            )
        )


def progress_report(
    folder: Path,
    overrides: Mapping[str, str] | None = None,
    today: date | None = None,
    alerts: bool = True,
) -> ProgressReport:
    """Measure every draft in `folder` (alerts raised and state saved unless disabled)."""
    today = today or date.today()
    problems: list[Problem] = []
    items: list[DraftProgress] = []
    drafts: dict[str, Draft] = {}
    course = ""
    for draft in iter_drafts(folder, overrides):
        problems.extend(draft.metadata_problems)
        problems.extend(draft.problems)
        item = measure_draft(draft, folder, today, problems)
        items.append(item)
        drafts[item.path] = draft
        course = course or " ".join(
            x for x in (draft.metadata.get("course_code"), draft.metadata.get("course_title")) if x
        )
    raised = update_alerts(folder, items, drafts, problems) if alerts else []
    # Only errors about the draft itself or metadata matter here; exporter-only warnings
    # (alt text etc.) are not raised by reading, so the list stays short.
    return ProgressReport(str(folder), course, items, problems, raised)
