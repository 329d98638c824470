"""The three-way decision: what happens to one file, given the last delivered version
(the base), the student's copy and the course's new version.

A pure function of its inputs (no disk, no clock), so every rule is tested in
milliseconds. The rules, in the order they are checked:

- gone from the course: the student's copy stays (nothing to do if they deleted it too);
- not delivered before: absent here → added; the same here → nothing to do; different
  here → on the very first update (no record yet) it counts as the student's edit of the
  course's file, later it is the student's own file of that name, renamed first;
- the student deleted it → restored;
- the student did not change it → the new version (unless they made it read-only);
- the course did not change it → the student's stays;
- both changed a notebook → merged cell by cell; both changed anything else, or the
  notebook merge is not clean → the student's stays and the new version sits beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from coursestack.content.notebooks import is_notebook, merge_notebook, notebook_problem


class Action(StrEnum):
    """What an update does to one file."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    KEPT = "kept"
    SAME = "same"
    MERGED = "merged"
    BESIDE = "beside"
    RESTORED = "restored"
    RENAMED = "renamed"
    GONE_UPSTREAM = "gone-upstream"
    GONE_BOTH = "gone-both"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Sides:
    """The three versions of one file (None: that side has no such file)."""

    path: str
    destination: Path
    base: bytes | None
    student: bytes | None
    upstream: bytes | None
    #: No delivery record exists yet: files that differ count as the student's edits.
    first_update: bool = False
    #: The student made their copy read-only: it is never replaced.
    read_only: bool = False
    #: Why the file cannot go where it goes ("a folder of yours has this name"), if so.
    in_the_way: str = ""


@dataclass
class Decision:
    """What to do with one file, and the files to write for it (in order)."""

    path: str
    destination: Path
    action: Action
    writes: list[tuple[Path, bytes]] = field(default_factory=list)
    #: The other file involved: the new version beside, or the student's renamed file.
    other: Path | None = None
    #: Why, when the action alone does not say (a merge that was not clean, ...).
    reason: str = ""

    @property
    def changes_files(self) -> bool:
        return bool(self.writes)


#: Makes a free name beside `destination`, tagged with `label` ("updated", "yours").
Namer = Callable[[Path, str], Path]


def decide(sides: Sides, name_beside: Namer) -> Decision:
    """The decision for one file (see the module's docstring for the rules)."""
    path, destination = sides.path, sides.destination
    base, student, upstream = sides.base, sides.student, sides.upstream

    def beside(reason: str) -> Decision:
        assert upstream is not None
        other = name_beside(destination, "updated")
        return Decision(path, destination, Action.BESIDE, [(other, upstream)], other, reason)

    if upstream is None:
        action = Action.GONE_BOTH if student is None else Action.GONE_UPSTREAM
        return Decision(path, destination, action)
    if sides.in_the_way:
        return Decision(path, destination, Action.SKIPPED, reason=sides.in_the_way)
    if base is None:
        if student is None:
            return Decision(path, destination, Action.ADDED, [(destination, upstream)])
        if student == upstream:
            return Decision(path, destination, Action.UNCHANGED)
        if sides.first_update:
            return beside("it differs from the course's version, so it counts as yours")
        renamed = name_beside(destination, "yours")
        return Decision(
            path,
            destination,
            Action.RENAMED,
            [(renamed, student), (destination, upstream)],
            renamed,
        )
    if student is None:
        return Decision(path, destination, Action.RESTORED, [(destination, upstream)])
    if student == upstream:
        return Decision(path, destination, Action.UNCHANGED if base == upstream else Action.SAME)
    if student == base:
        if sides.read_only:
            return beside("you made your copy read-only")
        return Decision(path, destination, Action.UPDATED, [(destination, upstream)])
    if upstream == base:
        return Decision(path, destination, Action.KEPT)
    if not is_notebook(path):
        return beside("you and the course both changed it")
    result = merge_notebook(base, student, upstream)
    if result.merged is None:
        return beside(result.reason)
    if sides.read_only:
        return beside("you made your copy read-only")
    cleared = result.outputs_cleared
    note = (
        f"outputs of {cleared} cell{'s' if cleared > 1 else ''} differed and were "
        "cleared: run them again"
        if cleared
        else ""
    )
    return Decision(path, destination, Action.MERGED, [(destination, result.merged)], reason=note)


def upstream_warning(path: str, upstream: bytes | None) -> str | None:
    """A note when the course's new version of a notebook is not a valid notebook."""
    if upstream is None or not is_notebook(path):
        return None
    problem = notebook_problem(upstream)
    return f"the course's {path} is {problem}: tell the course team" if problem else None
