"""The state folder of an instance, the host's registry of instances, atomic writes.

Layout of a state folder (everything an instance owns; never a temp dir):
    instance.json        which course, from which spec
    course/              the embedded course, copied on first `up` (student-owned)
    data/<service>/      each service's data
    logs/<service>.log   each service's output; daemon.log; events.jsonl
    run/                 daemon.json (address + token), lock, ports, secrets, pids
    connections.json     what notebooks see
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from coursestack.errors import UserError

OWNER_ONLY = 0o600
log = logging.getLogger("coursestack.state")


def is_root() -> bool:
    """True when running with root privileges (services must then drop them)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def coursestack_home() -> Path:
    """Where this user's instances live: $COURSESTACK_HOME, else a per-user data folder.

    Root gets /var/lib/coursestack: root's home is usually closed to the unprivileged
    user that runs the services.
    """
    configured = os.environ.get("COURSESTACK_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    if is_root():
        return Path("/var/lib/coursestack")
    return Path(platformdirs.user_data_dir("coursestack", appauthor=False))


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never half."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` atomically (bytes as given: no newline translation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def atomic_write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    """Write JSON atomically (see atomic_write_text)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON state file; a missing or corrupt one gives `default`.

    A corrupt file (a disk error, an editor accident) is kept aside as `<name>.corrupt`
    with a warning, so nothing is lost silently and nothing crashes.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s was corrupt; kept aside as %s.corrupt and rebuilt", path, path.name)
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".corrupt"))
        return default


@dataclass(frozen=True)
class StateFolder:
    """Paths of one instance's state folder."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def course(self) -> Path:
        return self.root / "course"

    @property
    def instance_file(self) -> Path:
        return self.root / "instance.json"

    @property
    def daemon_file(self) -> Path:
        return self.run / "daemon.json"

    @property
    def lock_file(self) -> Path:
        return self.run / "daemon.lock"

    @property
    def connections_file(self) -> Path:
        return self.root / "connections.json"

    @property
    def events_file(self) -> Path:
        return self.logs / "events.jsonl"

    @property
    def daemon_log(self) -> Path:
        return self.logs / "daemon.log"

    @property
    def spec_file(self) -> Path:
        """The instance's own copy of the course spec."""
        return self.course / "course.toml"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def content(self) -> Path:
        """What `coursestack update` keeps: releases, record, journal."""
        return self.root / "content"

    @property
    def private_folders(self) -> tuple[Path, ...]:
        """Folders only the instance's owner may enter (0700)."""
        return (self.run, self.logs, self.backups)

    # run/: the daemon's and the CLI's own records, owner-only.
    @property
    def pids_file(self) -> Path:
        """Process identities of every service started, for leftovers after a crash."""
        return self.run / "pids.json"

    @property
    def ports_file(self) -> Path:
        return self.run / "ports.json"

    @property
    def secrets_file(self) -> Path:
        return self.run / "secrets.json"

    @property
    def secrets_backup_file(self) -> Path:
        return self.run / "secrets.backup.json"

    @property
    def account_file(self) -> Path:
        """The service account this instance's files belong to."""
        return self.run / "account.json"

    @property
    def dashboard_port_file(self) -> Path:
        return self.run / "dashboard-port.json"

    @property
    def password_file(self) -> Path:
        """The dashboard password's hash."""
        return self.run / "dashboard-password.json"

    @property
    def revoked_sessions_file(self) -> Path:
        return self.run / "revoked-sessions.json"

    @property
    def tls_dir(self) -> Path:
        """The dashboard's self-signed certificate and key."""
        return self.run / "tls"

    @property
    def runtime_files(self) -> tuple[Path, ...]:
        """run/ files that describe one run of the daemon: not the instance's to keep."""
        return (self.pids_file, self.daemon_file, self.ports_file)

    def data_dir(self, service: str) -> Path:
        return self.data / service

    def log_file(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def create(self) -> None:
        """Create the folder tree; fail with a clear error if the place is not writable."""
        try:
            for folder in (self.root, self.data, self.logs, self.run):
                folder.mkdir(parents=True, exist_ok=True)
            os.chmod(self.run, 0o700)
            os.chmod(self.logs, 0o700)
        except PermissionError as error:
            raise UserError(
                f"cannot create the state folder: {error.strerror}",
                where=str(error.filename),
                hint="choose a writable place with --state DIR or COURSESTACK_HOME",
            ) from None
        except OSError as error:
            raise UserError(
                f"cannot create the state folder: {error}",
                where=str(self.root),
                hint="check free disk space and permissions",
            ) from None

    def instance(self) -> dict[str, Any]:
        """The instance record (course name, spec path), or {} if never set up."""
        data = read_json(self.instance_file, {})
        return data if isinstance(data, dict) else {}

    def daemon(self) -> dict[str, Any] | None:
        """The running daemon's address and token, if the daemon file exists."""
        data = read_json(self.daemon_file)
        return data if isinstance(data, dict) else None


class Secrets:
    """Generated secrets of an instance, kept in run/secrets.json, owner-only.

    A second copy (`secrets.backup.json`) is written every time: losing the database
    passwords to a corrupt file would lock the student out of their own data.
    """

    def __init__(self, state: StateFolder) -> None:
        self._path = state.secrets_file
        self._backup = state.secrets_backup_file
        loaded = read_json(self._path)
        if not isinstance(loaded, dict):
            loaded = read_json(self._backup, {})
            if loaded:
                log.warning("restored the instance's secrets from %s", self._backup)
        self._values: dict[str, str] = loaded if isinstance(loaded, dict) else {}

    def get(self, key: str, length: int = 24) -> str:
        """The secret named `key`, generated (and saved) the first time it is asked for."""
        value = self._values.get(key)
        if not value:
            value = secrets.token_urlsafe(length)
            self._values[key] = value
            atomic_write_json(self._path, self._values, OWNER_ONLY)
            atomic_write_json(self._backup, self._values, OWNER_ONLY)
        return value

    def values(self) -> list[str]:
        """Every secret (for redaction)."""
        return list(self._values.values())


def instance_registry() -> Path:
    """Folder of small files, one per instance this user has set up."""
    return coursestack_home() / "registry"


def default_state_folder(instance_name: str) -> StateFolder:
    """The state folder of a named instance under coursestack_home()."""
    return StateFolder(coursestack_home() / "instances" / instance_name)


def register_instance(state: StateFolder, name: str) -> None:
    """Remember an instance so `coursestack list` can find it."""
    key = hashlib.sha256(str(state.root).encode()).hexdigest()[:16]
    atomic_write_json(
        instance_registry() / f"{key}.json",
        {"name": name, "state": str(state.root), "registered": time.time()},
    )


def registered_instances() -> list[tuple[str, StateFolder]]:
    """Every instance this user has set up whose state folder still exists."""
    found: list[tuple[str, StateFolder]] = []
    registry = instance_registry()
    if not registry.is_dir():
        return found
    for entry in sorted(registry.glob("*.json")):
        record = read_json(entry, {})
        if not isinstance(record, dict) or "state" not in record:
            continue
        state = StateFolder(Path(record["state"]))
        if state.root.is_dir():
            found.append((str(record.get("name", state.root.name)), state))
    return found
