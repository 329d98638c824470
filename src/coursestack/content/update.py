"""One update of an instance's course material: fetch, decide, back up, journal, write.

It needs no running daemon: everything lives in files (the notebooks folder, the spec's
folder and `content/` in the state folder), and one lock file keeps two updates (the
CLI and the dashboard's button) from running at once.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import filelock

from coursestack.content import anchored
from coursestack.content.decide import Action, Decision, Namer, Sides, decide, upstream_warning
from coursestack.content.journal import NOT_A_FILE, Change, Journal, back_up, mode_of
from coursestack.content.layout import SPEC_NAME, Layout, layout_for
from coursestack.content.record import ContentStore, Delivered, DeliveryRecord
from coursestack.content.report import Entry, Report, words_for
from coursestack.content.sources import Release, digest, fetch_release
from coursestack.errors import UserError
from coursestack.nofollow import UnsafePath
from coursestack.spec import CourseSpec
from coursestack.state import StateFolder, atomic_write_json


class NoContentSource(UserError):
    """The course spec has no `[content]` table."""


def content_store(state: StateFolder) -> ContentStore:
    """The instance's `content/` folder."""
    return ContentStore(state.content)


@contextlib.contextmanager
def _update_lock(store: ContentStore) -> Iterator[None]:
    lock = filelock.FileLock(str(store.lock_file))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise UserError(
            "another update of this course is running",
            where=str(store.root),
            hint="wait for it to finish, then try again",
        ) from None
    try:
        yield
    finally:
        lock.release()


def run_update(spec: CourseSpec, state: StateFolder, check: bool = False) -> Report:
    """Update the course material of the instance in `state`; the report says what was
    done (with `check`: what would be done, changing nothing)."""
    settings = spec.content
    if settings is None:
        raise NoContentSource(
            "this course has no `[content]` source to update from",
            where=str(spec.path),
            hint='add `[content]` with `source = "..."` (see docs/updates.md)',
        )
    store = content_store(state)
    store.create()
    with _update_lock(store):
        pending = Journal.pending(store)
        finished_interrupted = False
        left_alone: list[tuple[str, str]] = []
        if pending is not None and not check:
            left_alone = pending.apply()
            pending.finish()
            finished_interrupted = True
        release = fetch_release(settings.source, spec.folder, settings.ref, store.git_cache)
        layout = layout_for(spec, release)
        record = store.load_record()
        decisions = _decide_all(release, record, layout, store)
        report = _report(release, layout, decisions, check)
        report.finished_interrupted = finished_interrupted
        for path, why in left_alone:
            report.notes.append(f"{layout.shown(Path(path))} (interrupted update): {why}.")
        if check:
            if pending is not None:
                report.notes.append(
                    "An interrupted update is waiting: the next update completes it first."
                )
            return report
        new_record = _new_record(release, layout, decisions, store)
        changes, backup = _stage(decisions, layout, store)
        if any(change.backup for change in changes):
            report.backup = str(backup)
        journal = Journal(store, changes, new_record, report.as_dict())
        journal.write()
        skipped = journal.apply()
        for path, why in skipped:
            report.notes.append(f"{layout.shown(Path(path))}: {why}.")
        journal.finish()
        atomic_write_json(store.last_report, report.as_dict(), 0o600)
        return report


def _decide_all(
    release: Release, record: DeliveryRecord, layout: Layout, store: ContentStore
) -> list[Decision]:
    name_beside = _namer(time.strftime("%Y%m%d-%H%M%S"))
    decisions = []
    for path in sorted(set(release.files) | set(record.files)):
        upstream = release.files.get(path)
        recorded = record.files.get(path)
        destination = (
            layout.destination(path)
            if upstream is not None or recorded is None
            else Path(recorded.destination)
        )
        base = store.get(recorded.sha) if recorded is not None else None
        student, read_only, in_the_way = _student_copy(destination, layout)
        decisions.append(
            decide(
                Sides(
                    path,
                    destination,
                    base,
                    student,
                    upstream,
                    # A lost copy of the base: differing files count as the student's edits.
                    first_update=not record.exists or (recorded is not None and base is None),
                    read_only=read_only,
                    in_the_way=in_the_way,
                ),
                name_beside,
            )
        )
    return decisions


def _student_copy(destination: Path, layout: Layout) -> tuple[bytes | None, bool, str]:
    """The student's file: its bytes, whether it is read-only, and why nothing can be
    delivered there ("" if it can).

    Links are never followed: run as root, an update must not read or replace a file
    outside the course's folders that a student's symbolic link points at.
    """
    place = layout.place(destination)
    try:
        with anchored.folder_of(place) as fd:
            if fd is None:
                return None, False, ""
            try:
                found = anchored.read_in(fd, place.name, destination)
            except UnsafePath:
                return None, False, _odd_entry(fd, place.name)
    except UnsafePath:
        return None, False, "a link or file of yours is in the way of its folder"
    if found is None:
        return None, False, ""
    return found.data, not found.info.st_mode & 0o222, ""


def _odd_entry(dir_fd: int, name: str) -> str:
    """Why the entry `name` in `dir_fd` cannot be read as the student's copy."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return "something of yours has this name"
    if stat.S_ISDIR(info.st_mode):
        return "a folder of yours has this name"
    if stat.S_ISREG(info.st_mode):
        return "a file of yours with several hard links has this name"
    return "a link or special file of yours has this name"


def _namer(stamp: str) -> Namer:
    taken: set[Path] = set()

    def name_beside(destination: Path, label: str) -> Path:
        suffix = destination.suffix if destination.stem else ""
        stem = destination.name[: len(destination.name) - len(suffix)]
        candidate = destination.with_name(f"{stem}_{label}-{stamp}{suffix}")
        counter = 2
        while os.path.lexists(candidate) or candidate in taken:
            candidate = destination.with_name(f"{stem}_{label}-{stamp}-{counter}{suffix}")
            counter += 1
        taken.add(candidate)
        return candidate

    return name_beside


def _report(release: Release, layout: Layout, decisions: list[Decision], check: bool) -> Report:
    report = Report(release.label, check)
    for decision in decisions:
        other = layout.shown(decision.other) if decision.other else ""
        report.entries.append(
            Entry(
                layout.shown(decision.destination),
                str(decision.action),
                words_for(decision.action, other, decision.reason, check),
                other,
            )
        )
        if not decision.changes_files:
            continue
        warning = upstream_warning(decision.path, release.files.get(decision.path))
        if warning:
            report.notes.append(f"Warning: {warning}.")
        if layout.notebooks_prefix is not None and decision.path == SPEC_NAME:
            report.notes.append(
                "The course's settings (course.toml) changed: they apply "
                "when the course next starts (if it is running: "
                "`coursestack down`, then `coursestack up`)."
            )
        service = layout.seeds.get(decision.path)
        if service is not None:
            report.notes.append(
                f"Seed data of {service} changed ({decision.path}). Your {service} data is "
                f"kept and not seeded again; `coursestack reset {service}` starts it afresh "
                "from the new seed (after a backup of your data)."
            )
    return report


def _new_record(
    release: Release, layout: Layout, decisions: list[Decision], store: ContentStore
) -> DeliveryRecord:
    """What counts as delivered after this update: the whole release (a copy of each
    file kept), except files a folder of the student's kept out."""
    skipped = {decision.path for decision in decisions if decision.action is Action.SKIPPED}
    files = {}
    for path, data in release.files.items():
        if path not in skipped:
            files[path] = Delivered(
                store.put(data, sha=release.hashes[path]), str(layout.destination(path))
            )
    return DeliveryRecord(files, release.label, release.source, time.time(), True)


def _stage(
    decisions: list[Decision], layout: Layout, store: ContentStore
) -> tuple[list[Change], Path]:
    """Keep every new content and every student file about to change, and list the
    changes for the journal."""
    backup = store.new_backup_folder()
    changes: list[Change] = []
    for decision in decisions:
        for path, data in decision.writes:
            place = layout.place(path)
            try:
                found = anchored.read(place)
                before = None if found is None else digest(found.data)
            except UnsafePath:  # a link since the decision: the journal leaves it, says so
                found, before = None, NOT_A_FILE
            backup_path = ""
            if found is not None:
                copy = backup / _relative(layout.shown(path))
                back_up(found.data, found.info, copy)
                # Only needed to roll back within this process: no fsync.
                store.put(found.data, durable=False)
                backup_path = str(copy)
            uid, gid = layout.owner_of(path)
            changes.append(
                Change(
                    str(path),
                    before,
                    store.put(data),
                    uid,
                    gid,
                    _mode_for(path, decision, found, layout),
                    backup_path,
                    str(place.anchor),
                )
            )
    return changes, backup


def _mode_for(path: Path, decision: Decision, found: anchored.Found | None, layout: Layout) -> int:
    """A replaced file keeps its permissions, and so does the student's file under its
    new name; a new file gets the usual ones."""
    if decision.action is Action.RENAMED and path != decision.destination:
        try:
            return mode_of(anchored.read(layout.place(decision.destination)))
        except UnsafePath:
            return mode_of(None)
    return mode_of(found)


def _relative(shown: str) -> str:
    return shown.lstrip("/") if not Path(shown).is_absolute() else Path(shown).name
