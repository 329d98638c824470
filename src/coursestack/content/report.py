"""The update report: every file and what was done to it, in plain words.

The same report is printed by `coursestack update`, returned as JSON (`--json`, the
dashboard's button) and kept as `content/last-report.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from coursestack.content.decide import Action

RELOAD_ADVICE = (
    "If one of these notebooks is open in JupyterLab, reload it (File > "
    "Reload Notebook from Disk) before you go on; JupyterLab also warns "
    "before saving over a file that changed on disk."
)

#: Actions that change nothing on disk (listed, but not as changes).
QUIET = {
    Action.UNCHANGED,
    Action.KEPT,
    Action.SAME,
    Action.GONE_BOTH,
    Action.GONE_UPSTREAM,
    Action.SKIPPED,
}


@dataclass
class Entry:
    """One file in the report."""

    path: str
    action: str
    words: str
    other: str = ""

    @property
    def changed(self) -> bool:
        return Action(self.action) not in QUIET


@dataclass
class Report:
    """What an update did (or, with `check`, would do)."""

    release: str
    check: bool
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    backup: str = ""
    finished_interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changed"] = sum(1 for entry in self.entries if entry.changed)
        data["reload_notebooks"] = self.notebooks_changed
        data["summary"] = self.summary()
        data["lines"] = self.lines()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        entries = [Entry(**entry) for entry in data.get("entries", [])]
        return cls(
            str(data.get("release", "")),
            bool(data.get("check", False)),
            entries,
            list(data.get("notes", [])),
            str(data.get("backup", "")),
            bool(data.get("finished_interrupted", False)),
        )

    @property
    def notebooks_changed(self) -> bool:
        return any(
            entry.changed and (entry.path.endswith(".ipynb") or entry.other.endswith(".ipynb"))
            for entry in self.entries
        )

    def summary(self) -> str:
        changed = sum(1 for entry in self.entries if entry.changed)
        if self.check:
            return (
                f"{changed} file{'s' if changed != 1 else ''} would change; nothing "
                "was changed (--check)."
                if changed
                else "Everything is up to date."
            )
        if not changed:
            return "Everything is up to date; nothing was changed."
        return f"{changed} file{'s' if changed != 1 else ''} changed; none of your work was lost."

    def lines(self) -> list[str]:
        """The report as text lines: changes first, then what stayed, then notes."""
        shown = sorted(self.entries, key=lambda entry: (not entry.changed, entry.path))
        lines = [f"Course material: {self.release}"]
        if self.finished_interrupted:
            lines.append("An update that was interrupted has been completed first.")
        lines += [
            f"  {entry.path}: {entry.words}" for entry in shown if entry.action != Action.UNCHANGED
        ]
        unchanged = sum(1 for entry in self.entries if entry.action == Action.UNCHANGED)
        if unchanged:
            lines.append(f"  ({unchanged} other file{'s' if unchanged != 1 else ''} unchanged)")
        lines += self.notes
        if self.backup:
            lines.append(f"Your previous versions of changed files are in {self.backup}.")
        lines.append(self.summary())
        if self.notebooks_changed and not self.check:
            lines.append(RELOAD_ADVICE)
        return lines


def words_for(action: Action, other: str, reason: str, check: bool) -> str:
    """What happened to one file, for a student."""
    will = check
    texts = {
        Action.ADDED: "new from the course" + (", will be added" if will else ", added"),
        Action.UPDATED: ("will be updated" if will else "updated")
        + " to the course's new version (you had not changed it)",
        Action.UNCHANGED: "unchanged",
        Action.KEPT: "your changes kept (the course did not change this file)",
        Action.SAME: "already the same as the course's new version",
        Action.MERGED: ("will be merged" if will else "merged")
        + ": your changes kept and the course's changes added, cell by cell",
        Action.BESIDE: (
            "your version stays as it is; the course's new version "
            + ("will be put" if will else "is")
            + f" beside it as {other}"
        ),
        Action.RESTORED: ("will be restored" if will else "restored")
        + ": you had deleted it, so a fresh copy of the course's version is back",
        Action.RENAMED: (
            f"you had your own file of this name: it {'will be' if will else 'is'}"
            f" now {other}, and the course's new file takes its place"
        ),
        Action.GONE_UPSTREAM: "no longer part of the course; your copy stays",
        Action.GONE_BOTH: "no longer part of the course (you had deleted it too)",
        Action.SKIPPED: "not delivered",
    }
    text = texts[action]
    return f"{text} ({reason})" if reason else text
