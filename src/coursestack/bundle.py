"""The diagnostics bundle: one zip a student sends to the support desk.

It holds the doctor's report, the course spec, the services' states and the daemon's
history of state changes, the tail of every log, versions and facts about the OS (see
`docs/support-guide.md`). Every file in it goes through `Redactor` first:

- by value, wherever it appears (spec, logs, states) and whatever its key is called:
  every value of `run/secrets.json`, the daemon token of `run/daemon.json`, every
  password and token in `connections.json`, every password inside a URL in the spec,
  and every value of a spec `env` table of `MIN_ENV_VALUE` characters or more (those
  as whole tokens only, so a value such as `UTC` or `1` never shreds the text);
- by pattern: any value after a key that names a password, token or secret
  (`password=...`, `PGPASSWORD=...`, `?token=...`, `"password": "..."`), a URL's
  password (`postgresql://user:PASSWORD@host`) and `Bearer ...` credentials.

Known secrets are replaced by `[REDACTED:<name>]`, so a support desk can still see
which secret a line used; patterns are replaced by `[REDACTED]`.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, urlsplit

import psutil

from coursestack.state import StateFolder, read_json

if TYPE_CHECKING:
    from coursestack.instances import Instance

REDACTED = "[REDACTED]"
#: Lines kept from the end of each log file.
LOG_LINES = 1000
#: Lines kept from the end of the history of state changes.
HISTORY_LINES = 20000
#: Secrets shorter than this are not replaced everywhere (it would garble the text).
MIN_SECRET = 4
#: Values of a spec `env` table this long or longer are redacted (as whole tokens).
MIN_ENV_VALUE = 6

_SECRET_WORDS = r"(?:password|passwd|token|secret|api[_-]?key|credential)"
_SECRET_KEY = re.compile(rf"(?i){_SECRET_WORDS}")
_KEY = rf"[A-Za-z0-9_.\-]*{_SECRET_WORDS}s?[A-Za-z0-9_.\-]*[\"']?\s*[:=]\s*"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:PASSWORD@host
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s/:@'\"]*:)(?!\[REDACTED)([^\s@/'\"]+)(@)"),
        rf"\1{REDACTED}\3",
    ),
    # password = "two words", "token": "abc"
    (re.compile(rf"(?i)({_KEY})\"(?!\[REDACTED)[^\"\n]*\""), rf'\1"{REDACTED}"'),
    (re.compile(rf"(?i)({_KEY})'(?!\[REDACTED)[^'\n]*'"), rf"\1'{REDACTED}'"),
    # password=abc, PGPASSWORD=abc, ?token=abc&, --ServerApp.token=abc
    (
        re.compile(
            rf"(?i)({_KEY})(?![\"'])(?!\[REDACTED|null\b|none\b|true\b|false\b)"
            r"([^\s\"'&,;}<>)\]]+)"
        ),
        rf"\1{REDACTED}",
    ),
    # Authorization: Bearer abc / Basic abc
    (
        re.compile(r"(?i)\b((?:bearer|basic)\s+)(?!\[REDACTED)([A-Za-z0-9._~+/=\-]{8,})"),
        rf"\1{REDACTED}",
    ),
]


class Redactor:
    """Replaces known secrets and anything that looks like a password or token.

    `secrets` are replaced wherever they occur; `whole_tokens` (values a course team
    wrote into an `env` table, which may be ordinary words) only where they stand alone,
    not inside a longer word.
    """

    def __init__(
        self, secrets: Mapping[str, str], whole_tokens: Mapping[str, str] | None = None
    ) -> None:
        self._secrets = _variants(secrets, MIN_SECRET)
        self._tokens = [
            (re.compile(rf"(?<![A-Za-z0-9_]){re.escape(value)}(?![A-Za-z0-9_])"), label)
            for value, label in _variants(whole_tokens or {}, MIN_ENV_VALUE)
        ]

    @classmethod
    def for_state(cls, state: StateFolder) -> Redactor:
        """A redactor for every secret the instance's state folder knows."""
        secrets = collect_secrets(state)
        known = set(secrets.values())
        tokens = {
            label: value for label, value in collect_env_values(state).items() if value not in known
        }
        return cls(secrets, tokens)

    def __call__(self, text: str) -> str:
        for value, label in self._secrets:
            if value in text:
                text = text.replace(value, f"[REDACTED:{label}]")
        for pattern, label in self._tokens:
            text = pattern.sub(f"[REDACTED:{label}]", text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def _variants(secrets: Mapping[str, str], shortest: int) -> list[tuple[str, str]]:
    """(form, label) of every secret as written, URL-quoted and JSON-escaped; longest
    first, so a secret that contains another is replaced whole."""
    variants: dict[str, str] = {}
    for label, value in secrets.items():
        if not isinstance(value, str) or len(value) < shortest:
            continue
        for form in (value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]):
            variants.setdefault(form, label)
    return sorted(variants.items(), key=lambda item: -len(item[0]))


def collect_env_values(state: StateFolder) -> dict[str, str]:
    """Every value of every `env` table in the instance's spec: path -> value."""
    document = _spec_document(state)
    found: dict[str, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else str(key)
                if key == "env" and isinstance(value, dict):
                    found.update(
                        {
                            f"{where}.{k}": str(v)
                            for k, v in value.items()
                            if isinstance(v, str | int | float) and not isinstance(v, bool)
                        }
                    )
                else:
                    walk(value, where)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}.{index}")

    walk(document, "spec")
    return found


def collect_secrets(state: StateFolder) -> dict[str, str]:
    """Every secret of an instance: name -> value (names say where it came from)."""
    found: dict[str, str] = {}
    for secrets_file in (state.secrets_backup_file, state.secrets_file):
        stored = read_json(secrets_file, {}) or {}
        if isinstance(stored, dict):
            found.update({str(k): str(v) for k, v in stored.items() if v})
    daemon = read_json(state.daemon_file, {}) or {}
    if isinstance(daemon, dict) and daemon.get("token"):
        found.setdefault("daemon.token", str(daemon["token"]))
    connections = read_json(state.connections_file, {}) or {}
    for path, value in _secret_values(connections, "connections"):
        if value not in found.values():
            found[path] = value
    for path, value in _spec_env_secrets(state):
        if value not in found.values():
            found[path] = value
    return found


def _secret_values(document: Any, path: str) -> Iterator[tuple[str, str]]:
    """(dotted path, value) of every password/token-like value, and URL passwords."""
    if isinstance(document, dict):
        for key, value in document.items():
            where = f"{path}.{key}"
            if isinstance(value, str | int) and value != "" and _SECRET_KEY.search(str(key)):
                yield where, str(value)
            else:
                yield from _secret_values(value, where)
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _secret_values(value, f"{path}.{index}")
    elif isinstance(document, str) and "://" in document:
        with contextlib.suppress(ValueError):
            password = urlsplit(document).password
            if password:
                yield f"{path}.password", password


def _spec_document(state: StateFolder) -> Any:
    """The instance's course spec as parsed TOML ({} if it cannot be read)."""
    import tomllib

    spec = state.instance().get("spec")
    if not spec:
        return {}
    try:
        return tomllib.loads(Path(spec).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _spec_env_secrets(state: StateFolder) -> Iterator[tuple[str, str]]:
    """Secret-looking values a course team wrote into the spec, and URL passwords."""
    yield from _secret_values(_spec_document(state), "spec")


# -- the bundle ----------------------------------------------------------------------------


def default_bundle_name(instance_name: str, now: float | None = None) -> str:
    """coursestack-diagnostics-<instance>-<YYYYmmdd-HHMMSS>.zip"""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return f"coursestack-diagnostics-{instance_name}-{stamp}.zip"


def write_bundle(
    state_folder: StateFolder | Path,
    dest: Path | str | None = None,
    findings: list[Any] | None = None,
) -> Path:
    """Write the diagnostics zip of the instance in `state_folder`; return its path.

    `dest` is a file name, an existing folder (a dated name is made in it), or None for
    the current folder. `findings` are the doctor's, if already run (else it runs now).
    Every text file in the zip is redacted. Blocking: from the daemon's event loop, call
    it with `await asyncio.to_thread(write_bundle, daemon.state, folder)`.
    """
    from coursestack.doctor import report_text, run_doctor
    from coursestack.instances import resolve_instance

    state = (
        state_folder
        if isinstance(state_folder, StateFolder)
        else StateFolder(Path(state_folder).expanduser().resolve())
    )
    instance = resolve_instance(state=state.root)
    target = _target(dest, instance.name)
    if findings is None:
        findings = run_doctor(instance)
    redact = Redactor.for_state(state)
    members = _members(instance, findings, report_text(findings))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        folder = target.stem
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, text in members.items():
                archive.writestr(f"{folder}/{name}", redact(text))
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target


def _target(dest: Path | str | None, instance_name: str) -> Path:
    if dest is None or str(dest) == "":
        return Path.cwd() / default_bundle_name(instance_name)
    path = Path(dest).expanduser()
    if path.is_dir():
        return (path / default_bundle_name(instance_name)).resolve()
    return (path if path.suffix == ".zip" else path.with_name(path.name + ".zip")).resolve()


def _members(instance: Any, findings: list[Any], report: str) -> dict[str, str]:
    """Every file of the bundle, by name (text, before redaction)."""
    from coursestack.logs import tail_lines

    state: StateFolder = instance.state
    members: dict[str, str] = {"README.txt": _README.format(name=instance.name, made=time.ctime())}
    members["doctor.txt"] = report
    members["doctor.json"] = _json([f.as_dict() for f in findings])
    record = state.instance()
    members["instance.json"] = _json(record)
    spec_path = Path(record["spec"]) if record.get("spec") else None
    if spec_path is not None:
        with contextlib.suppress(OSError):
            members["course/course.toml"] = spec_path.read_text(encoding="utf-8", errors="replace")
    services = _service_states(instance)
    members["services.json"] = _json(services)
    members["events.jsonl"] = "\n".join(tail_lines(state.events_file, HISTORY_LINES)) + "\n"
    if state.logs.is_dir():
        for log in sorted(state.logs.iterdir()):
            if log.is_file() and log != state.events_file:
                members[f"logs/{log.name}"] = "\n".join(tail_lines(log, LOG_LINES)) + "\n"
    # Some programs keep their own log in their data folder (nx-27017, for one).
    if state.data.is_dir():
        for log in sorted(state.data.glob("*/*.log")):
            if log.is_file():
                members[f"logs/data/{log.parent.name}/{log.name}"] = (
                    "\n".join(tail_lines(log, LOG_LINES)) + "\n"
                )
    for path in state.runtime_files:
        data = read_json(path)
        if data is not None:
            members[f"run/{path.name}"] = _json(data)
    connections = read_json(state.connections_file)
    if connections is not None:
        members["connections.json"] = _json(connections)
    running = services.get("instance", {}).get("services") if services["running"] else None
    measured = {s["name"]: s.get("memory") for s in running} if running else None
    members["plan.json"] = _json(_plan(spec_path, measured))
    members["versions.json"] = _json(_versions(findings))
    members["os.json"] = _json(os_facts(state.root))
    return members


def _service_states(instance: Instance) -> dict[str, Any]:
    """The services now (from the daemon) or as last recorded (from the history)."""
    from coursestack.errors import UserError

    if instance.daemon_alive():
        try:
            client = instance.client()
            try:
                return {"running": True, "instance": client.instance_view().model_dump()}
            finally:
                client.close()
        except UserError as error:
            return {"running": True, "error": error.render()}
    last: dict[str, Any] = {}
    from coursestack.doctor import read_history

    for event in read_history(instance.state):
        last[str(event.get("service"))] = event
    return {"running": False, "last_recorded": last}


def _plan(
    spec_path: Path | None,
    measured: dict[str, int | None] | None,
) -> dict[str, Any]:
    from coursestack.errors import UserError
    from coursestack.plan import make_plan
    from coursestack.spec import load_spec

    if spec_path is None:
        return {"error": "the instance has never been set up"}
    try:
        return make_plan(load_spec(spec_path), measured).as_dict()
    except UserError as error:
        return {"error": error.render()}


def _versions(findings: list[Any]) -> dict[str, Any]:
    from coursestack.doctor import package_versions

    return {
        "python": sys.version,
        "executable": sys.executable,
        "packages": package_versions(),
        "programs": {
            f.check.removeprefix("program:"): f.what
            for f in findings
            if f.check.startswith("program:")
        },
    }


def os_facts(root: Path) -> dict[str, Any]:
    """Facts about the machine that explain many support cases."""
    memory = psutil.virtual_memory()
    where = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    disk = shutil.disk_usage(where)
    uname = platform.uname()
    facts: dict[str, Any] = {
        "system": uname.system,
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "platform": platform.platform(),
        "python_implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "memory_total": memory.total,
        "memory_available": memory.available,
        "disk_total": disk.total,
        "disk_free": disk.free,
        "disk_checked_at": str(where),
        "boot_time": psutil.boot_time(),
        "now": time.time(),
        "timezone": time.tzname,
        "is_root": hasattr(os, "geteuid") and os.geteuid() == 0,
        "environment": {
            k: os.environ[k]
            for k in (
                "LANG",
                "LC_ALL",
                "LC_CTYPE",
                "TZ",
                "COURSESTACK_HOME",
                "COURSESTACK_INSTANCE",
                "COURSESTACK_SERVICE_USER",
            )
            if k in os.environ
        },
        "container": Path("/.dockerenv").exists() or Path("/run/.containerenv").exists(),
        "cgroup_v2": Path("/sys/fs/cgroup/cgroup.controllers").exists(),
    }
    with contextlib.suppress(OSError):
        facts["os_release"] = Path("/etc/os-release").read_text(encoding="utf-8")
    return facts


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"


_README = """\
coursestack diagnostics bundle for instance {name!r}, made {made}.

doctor.txt / doctor.json   what `coursestack doctor` found, and what to do next
course/course.toml         the course spec
instance.json              which course and spec the instance runs
services.json              each service's state now (or as last recorded)
events.jsonl               the daemon's history of state changes (one JSON per line)
logs/                      the last {lines} lines of each service's log and daemon.log
run/, connections.json     ports, process ids, the daemon's address; connection info
plan.json                  expected memory per service (`coursestack plan`)
versions.json, os.json     Python, packages, programs; the operating system

Passwords, tokens and secrets are replaced by [REDACTED] or [REDACTED:<name>].
""".replace("{lines}", str(LOG_LINES))
