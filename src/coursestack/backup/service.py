"""Backup, restore and reset of an instance, service by service, through its daemon.

- backup: databases are read live (a stopped database service is started for it, and
  stopped again afterwards), folders are copied as files; everything goes into one
  archive with a manifest (see `archive.py`).
- restore: check the whole archive first; set up and start the instance if needed; back
  up what is there now; then replace each service's data with the archive's, and record
  the seeds as applied so they are not loaded again on top.
- reset NAME: back up that service, stop it, delete its data folder, start it again (it
  re-initialises and re-seeds itself on that first start).

Nothing is destroyed before a backup of it is on disk.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coursestack.api_types import ServiceView
from coursestack.backup import files
from coursestack.backup.archive import SUFFIX, Manifest, open_no_link, read_archive, write_archive
from coursestack.endpoints import EndpointTable
from coursestack.errors import DaemonError, UsageError, UserError
from coursestack.instances import DaemonClient, Instance, set_up_instance, start_daemon
from coursestack.kinds import Context, Kind, bind_all, build_unit, kind_class
from coursestack.kinds.base import BackupMode, count
from coursestack.privileges import service_account
from coursestack.seeding import SeedLedger, seed_checksum
from coursestack.state import Secrets, StateFolder, read_json

READY_TIMEOUT = 300.0
RAW_READY_TIMEOUT = 90.0


@dataclass
class Reporter:
    """Where progress goes: `step` is transient (a spinner), `note` stays on screen."""

    step: Callable[[str], None] = lambda message: None
    note: Callable[[str], None] = lambda message: None


@dataclass
class BackupResult:
    path: Path
    size: int
    seconds: float
    manifest: Manifest

    def lines(self) -> list[str]:
        return [f"{name}: {describe(entry)}" for name, entry in self.manifest.services.items()]


@dataclass
class RestoreResult:
    archive: Path
    manifest: Manifest
    seconds: float
    before: BackupResult | None
    restored: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    set_up: bool = False


@dataclass
class ResetResult:
    service: str
    backup: BackupResult
    state: str


def mode_of(kind: str) -> BackupMode:
    """How a backup takes the data of a service of `kind` (the kind says)."""
    found = kind_class(kind)
    return found.backup_mode if found is not None else "none"


def describe(entry: dict[str, Any]) -> str:
    """One line saying what a manifest's service entry holds."""
    if entry.get("format") == "raw":
        return f"raw copy of its data folder ({_count(entry.get('files', 0), 'file')})"
    found = kind_class(str(entry.get("kind", "")))
    said = found.describe_backup(entry) if found is not None else None
    if said is not None:
        return said
    text = f"{_count(entry.get('files', 0), 'file')} from {entry.get('folder', '')}"
    if entry.get("raw_files"):
        text += f" (and a raw copy of its data folder, {_count(entry['raw_files'], 'file')})"
    return text


_count = count


# -- the instance as seen from the command line ----------------------------------------------


def backups_folder(state: StateFolder) -> Path:
    """`<state>/backups/`, private to the owner (backups hold the student's data)."""
    folder = state.backups
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def default_archive_path(instance: Instance, label: str = "") -> Path:
    """`<state>/backups/<instance>-<YYYYmmdd-HHMMSS>[-label].coursestack.tar.gz`, unused."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = f"{instance.name}-{stamp}" + (f"-{label}" if label else "")
    folder = backups_folder(instance.state)
    path = folder / f"{base}{SUFFIX}"
    number = 2
    while path.exists():
        path = folder / f"{base}-{number}{SUFFIX}"
        number += 1
    return path


def _work_folder(state: StateFolder, what: str) -> Path:
    """A scratch folder beside the backups (same disk; never a system temp folder)."""
    folder = backups_folder(state) / f".{what}-{os.getpid()}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    return folder


def units(instance: Instance) -> dict[str, Kind]:  # type: ignore[type-arg]
    """Every service bound to its kind, with the ports and secrets the daemon uses now."""
    spec = instance.spec()
    ports = read_json(instance.state.ports_file, {}) or {}
    context = Context(
        instance.state,
        spec,
        Secrets(instance.state),
        service_account(instance.state.root, instance.name),
        instance_name=instance.name,
    )
    bound = {name: build_unit(name, service, context) for name, service in spec.services.items()}
    bind_all(bound, EndpointTable.from_ports(ports, spec.services))
    return bound


class Services:
    """The daemon's service API, as backup, restore and reset need it."""

    def __init__(self, client: DaemonClient, reporter: Reporter) -> None:
        self.client = client
        self.reporter = reporter

    def view(self, name: str) -> ServiceView:
        return self.client.service(name)

    def running(self, name: str) -> bool:
        return self.view(name).state not in ("stopped", "failed")

    def start(self, name: str, timeout: float = READY_TIMEOUT) -> None:
        """Start a service and wait until it is ready (UserError if it fails)."""
        before = self.view(name)
        if before.state == "ready":
            return
        self.client.start(name)
        self.wait_ready(name, before.since, timeout)

    def wait_ready(self, name: str, since: float, timeout: float = READY_TIMEOUT) -> None:
        """Until `name` is ready; UserError if it fails or stops after `since`, or at
        the timeout."""
        from coursestack.readiness import Verdict, polled_services, wait_until_ready

        def progress(views: list[dict[str, Any]]) -> None:
            for view in views:
                if view["state"] != "ready":
                    self.reporter.step(
                        f"waiting for {name} ({view['state']}"
                        + (f": {view['detail']}" if view["detail"] else "")
                        + ")"
                    )

        outcome = wait_until_ready(
            polled_services(self.client, timeout, interval=0.2),
            [name],
            progress,
            since={name: since},
        )
        if outcome.ready:
            return
        view = (
            outcome.views[0] if outcome.views else {"state": "unknown", "reason": "", "detail": ""}
        )
        state = view["state"]
        if outcome.verdict is Verdict.FAILED:
            raise UserError(
                f"service {name} did not start ({state}): {view['reason'] or view['detail']}",
                where=f"services.{name}",
                hint=f"see `coursestack logs {name}`; fix it, then try again",
            )
        raise UserError(
            f"service {name} was not ready within {timeout:g} s ({state})",
            where=f"services.{name}",
            hint=f"see `coursestack logs {name}`",
        )

    def stop(self, name: str) -> None:
        self.client.stop(name)


def _client(instance: Instance, what: str) -> DaemonClient:
    try:
        return instance.client()
    except DaemonError:
        raise DaemonError(
            f"instance {instance.name!r} is not running",
            where=str(instance.state.root),
            hint=f"start it with `coursestack up`, then {what} again "
            "(databases are read from the running services)",
        ) from None


# -- backup ----------------------------------------------------------------------------------


def create_backup(
    instance: Instance,
    output: Path | None = None,
    only: Iterable[str] | None = None,
    reporter: Reporter | None = None,
    label: str = "",
    raw: bool = False,
    client: DaemonClient | None = None,
) -> BackupResult:
    """Write a backup archive of the instance (or of the services in `only`).

    With `raw` (reset uses it: it deletes whole data folders), nothing is left out: a
    database service that cannot start, and a service whose data coursestack does not
    know, are kept as a raw copy of their data folder, and a folder service's data
    folder is copied too (Jupyter's settings, say), beside its restorable files.
    """
    reporter = reporter or Reporter()
    began = time.monotonic()
    spec = instance.spec()
    names = list(only) if only else list(spec.services)
    unknown = [name for name in names if name not in spec.services]
    if unknown:
        raise UsageError(
            f"no service named {', '.join(unknown)} in this course",
            hint=f"services: {', '.join(spec.services)}",
        )
    api = Services(client or _client(instance, "back up"), reporter)
    target = output or default_archive_path(instance, label)
    if target.is_dir():
        target = target / default_archive_path(instance, label).name
    if target.exists():
        raise UsageError(
            "the backup file already exists",
            where=str(target),
            hint="choose another --output, or move the old file away",
        )
    manifest = Manifest(
        course=spec.course.name,
        instance=instance.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        services={},
        embedded_sample=spec.path.is_relative_to(instance.state.course),
    )
    work = _work_folder(instance.state, "backup")
    started: list[str] = []
    paused: list[str] = []
    try:
        members: list[tuple[str, Path]] = []
        for name in names:
            kind = spec.services[name].kind
            mode = mode_of(kind)
            entry: dict[str, Any] | None = None
            parts: list[tuple[str, Path]] = []
            view = api.view(name)
            if mode == "live" and view.state != "ready":
                # Reset is often the cure for a service that cannot start: wait less.
                timeout = RAW_READY_TIMEOUT if raw else READY_TIMEOUT
                try:
                    if view.state in ("stopped", "failed"):
                        reporter.step(f"starting {name} to read its data")
                        api.start(name, timeout)
                        started.append(name)
                        reporter.note(f"{name} was {view.state}: started it for the backup")
                    else:
                        api.wait_ready(name, view.since, timeout)
                except UserError as error:
                    if not raw:
                        raise
                    reporter.note(
                        f"{name} could not start ({error.message}); keeping a raw "
                        "copy of its data folder instead"
                    )
                    api.stop(name)
                    entry, parts = _raw(units(instance)[name], work / name)
            if _stops_for_backup(kind) and api.running(name):
                # It keeps recent changes in memory (OpenRefine); stopping writes them out.
                reporter.step(f"stopping {name} so it saves its projects")
                api.stop(name)
                paused.append(name)
            if entry is None and mode != "none":
                reporter.step(f"backing up {name}")
                entry, parts = _dump(units(instance)[name], work / name, reporter)
                if raw and mode == "files":
                    extra, more = _raw(units(instance)[name], work / name)
                    entry["raw_files"] = extra["files"]
                    parts += more
            elif entry is None and raw:
                entry, parts = _raw(units(instance)[name], work / name)
            if entry is None:
                manifest.skipped[name] = (
                    f"a {kind!r} service: coursestack does not know its "
                    "data; back up what it needs yourself"
                )
                reporter.note(f"{name}: skipped ({kind} service)")
                continue
            manifest.services[name] = entry
            members += [(f"services/{name}/{member}", path) for member, path in parts]
        reporter.step(f"writing {target.name}")
        size = write_archive(target, manifest, members)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for name in started:
            reporter.step(f"stopping {name} again")
            api.stop(name)
            reporter.note(f"{name}: stopped again, as it was before the backup")
        for name in paused:
            reporter.step(f"starting {name} again")
            api.start(name)
            reporter.note(f"{name} was stopped for a moment to save its projects; running again")
    return BackupResult(target, size, time.monotonic() - began, manifest)


def _stops_for_backup(kind: str) -> bool:
    found = kind_class(kind)
    return found is not None and found.stop_for_backup


def _dump(
    unit: Kind,  # type: ignore[type-arg]
    folder: Path,
    reporter: Reporter,
) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    if unit.backup_mode == "live":
        return unit.backup_dump(folder)
    source = unit.backup_folder()
    found, skipped = files.folder_members(source, "files", [unit.context.state.root])
    for relative in skipped:
        reporter.note(f"{unit.name}: skipped {relative} (not a regular file)")
    parts = _snapshot(found, folder)
    entry = {"kind": unit.spec.kind, "format": "files", "folder": str(source), "files": len(parts)}
    return entry, parts


def _snapshot(found: list[tuple[str, Path]], folder: Path) -> list[tuple[str, Path]]:
    """Copy archive members into `folder`: a file saved while the archive is written
    cannot spoil it."""
    parts = []
    for member, path in found:
        copy = folder / member
        copy.parent.mkdir(parents=True, exist_ok=True)
        # Never through a link put in the file's place since it was listed.
        with open_no_link(path) as source, open(copy, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
            stamp = os.fstat(source.fileno())
        os.utime(copy, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        parts.append((member, copy))
    return parts


def _raw(
    unit: Kind,  # type: ignore[type-arg]
    folder: Path,
) -> tuple[dict[str, Any], list[tuple[str, Path]]]:
    found, _skipped = files.folder_members(unit.data_dir, "raw", [unit.context.state.root])
    parts = _snapshot(found, folder)
    entry = {
        "kind": unit.spec.kind,
        "format": "raw",
        "folder": str(unit.data_dir),
        "files": len(parts),
    }
    return entry, parts


# -- restore ---------------------------------------------------------------------------------


def check_archive(archive: Path) -> Manifest:
    """Check an archive completely without changing anything (UserError if bad)."""
    return read_archive(archive)


def restore_backup(
    instance: Instance, archive: Path, reporter: Reporter | None = None
) -> RestoreResult:
    """Rebuild the instance's data from an archive (see the module docstring)."""
    reporter = reporter or Reporter()
    began = time.monotonic()
    archive = archive.expanduser().resolve()
    where = str(archive)
    if not archive.is_file():
        raise UserError(
            "no such backup file", where=where, hint="give the path of a .coursestack.tar.gz file"
        )
    instance.state.create()
    work = _work_folder(instance.state, "restore")
    try:
        reporter.step("checking the archive")
        manifest = read_archive(archive, into=work)
        reporter.note(
            f"archive checked: {len(manifest.members)} files, course "
            f"{manifest.course}, made {manifest.created}"
        )
        existed = "spec" in instance.state.instance()
        if not existed:
            if not manifest.embedded_sample:
                raise UserError(
                    f"instance {instance.name!r} has no course yet, and the backup is of "
                    f"course {manifest.course!r}; nothing was changed",
                    where=str(instance.state.root),
                    hint="set the course up first with `coursestack up PATH/course.toml` "
                    "(same --instance/--state), then restore again",
                )
            reporter.step("setting up the sample course")
            instance, _ = set_up_instance(None, instance.name, instance.state.root, [])
        spec = instance.spec()
        _check_fits(manifest, spec.course.name, dict(spec.services.items()), where)
        bound = units(instance)
        for name, entry in manifest.services.items():
            bound[name].backup_check(
                entry,
                {m.removeprefix(f"services/{name}/"): v for m, v in manifest.members.items()},
                where,
            )
        if not instance.daemon_alive():
            reporter.step(f"starting instance {instance.name}")
            start_daemon(instance)
            reporter.note(f"started instance {instance.name}")
        api = Services(instance.client(), reporter)
        for name in manifest.services:
            if mode_of(spec.services[name].kind) == "live":
                reporter.step(f"waiting for {name}")
                api.start(name)
        before = None
        if existed:
            reporter.step("backing up the current data first")
            before = create_backup(
                instance,
                only=list(manifest.services),
                reporter=reporter,
                label="before-restore",
                client=api.client,
            )
            reporter.note(f"current data backed up to {before.path}")
        result = RestoreResult(archive, manifest, 0.0, before, set_up=not existed)
        bound = units(instance)
        for name, entry in manifest.services.items():
            reporter.step(f"restoring {name}")
            _restore_one(bound[name], entry, work / "services" / name, api)
            result.restored.append(f"{name}: {describe(entry)}")
        _record_seeds(bound, manifest)
        result.untouched = [name for name in spec.services if name not in manifest.services]
        result.seconds = time.monotonic() - began
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_fits(manifest: Manifest, course: str, services: dict[str, Any], where: str) -> None:
    """Refuse an archive of another course, or with a service this course lacks."""
    if manifest.course != course:
        raise UserError(
            f"the backup is of course {manifest.course!r}, this instance runs "
            f"{course!r}; nothing was changed",
            where=where,
            hint="restore into an instance of that course (--instance/--state)",
        )
    for name, entry in manifest.services.items():
        service = services.get(name)
        if service is None:
            raise UserError(
                f"the backup has a service {name!r} this course does not have; nothing was changed",
                where=where,
                hint="restore into an instance of the course it was made from",
            )
        found = kind_class(service.kind)
        family = found.backup_family if found is not None else frozenset()
        if service.kind != entry["kind"] and entry["kind"] not in family:
            raise UserError(
                f"service {name!r} is {entry['kind']} in the backup but "
                f"{service.kind} here; nothing was changed",
                where=where,
                hint="restore into an instance of the course it was made from",
            )
        if entry.get("format") == "raw":
            raise UserError(
                f"service {name!r} is a raw copy of its data folder in this backup (it "
                "could not start when the backup was made); nothing was changed",
                where=where,
                hint=f"restore it by hand: `coursestack down`, unpack "
                f"services/{name}/raw/ of the archive into data/{name}/, `coursestack up`",
            )


def _restore_one(
    unit: Kind,  # type: ignore[type-arg]
    entry: dict[str, Any],
    folder: Path,
    api: Services,
) -> None:
    if unit.backup_mode == "live":
        unit.backup_restore(entry, folder)
    elif unit.backup_mode == "files":
        # A kind that keeps its files in memory writes them back: stop it first.
        was_running = unit.stop_for_backup and api.running(unit.name)
        if was_running:
            api.stop(unit.name)
        target = unit.backup_folder()
        if target.is_relative_to(unit.data_dir):
            unit.make_data_folders(str(target.relative_to(unit.data_dir)))  # the account's
        files.replace_folder(target, folder / "files", unit.run_as, [unit.context.state.root])
        if was_running:
            api.start(unit.name)


def _record_seeds(bound: dict[str, Kind], manifest: Manifest) -> None:  # type: ignore[type-arg]
    """Mark seeds as applied: the restored data replaces them, never gets them on top."""
    for name in manifest.services:
        unit = bound[name]
        seed = getattr(unit.spec, "seed", None)
        if unit.backup_mode == "live" and seed:
            paths = [unit.context.spec.resolve(item) for item in seed]
            SeedLedger(unit.data_dir / "seeded.json").record(seed_checksum(paths, name), paths)


# -- reset -----------------------------------------------------------------------------------


def reset_service(instance: Instance, name: str, reporter: Reporter | None = None) -> ResetResult:
    """Back up one service, delete its data folder, and start it again from its seed."""
    reporter = reporter or Reporter()
    spec = instance.spec()
    if name not in spec.services:
        raise UsageError(
            f"no service named {name!r} in this course",
            hint=f"services: {', '.join(spec.services)}",
        )
    client = _client(instance, "reset")
    api = Services(client, reporter)
    was_running = api.running(name)
    live = mode_of(spec.services[name].kind) == "live"
    if not live:
        # Files are copied while nothing writes them.
        reporter.step(f"stopping {name}")
        api.stop(name)
    reporter.step(f"backing up {name} first")
    backup = create_backup(
        instance,
        only=[name],
        reporter=reporter,
        label=f"before-reset-{name}",
        raw=True,
        client=client,
    )
    reporter.note(f"{name} backed up to {backup.path}")
    reporter.step(f"stopping {name}")
    api.stop(name)
    data = instance.state.data_dir(name)
    reporter.step(f"deleting {data}")
    shutil.rmtree(data, ignore_errors=True)
    if data.exists():
        raise UserError(
            f"could not delete all of {name}'s data folder",
            where=str(data),
            hint="check its permissions; the backup is in " + str(backup.path),
        )
    reporter.note(f"deleted {data}")
    if was_running or live:
        reporter.step(f"starting {name} again (it starts from its seed)")
        api.start(name)
    return ResetResult(name, backup, api.view(name).state)
