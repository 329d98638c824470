"""`coursestack doctor`: checks a student can run, in plain words.

Each check is a small function that returns `Finding`s: a status ("ok", "warn" or
"fail"), what was found, and the one thing to do next. `run_doctor` runs them all for
one instance; a check that breaks becomes a "fail" finding instead of a traceback.

What is checked: Python and package versions; each kind's program and its version; the
course spec; the state folder (writable, secrets private, free disk); every preferred
port (free, used by this instance, or taken by which process); memory headroom against
what the course needs (see `coursestack.plan`); the daemon, each service's health and
its recent failures (from the daemon's history of state changes); the clock, the time
zone and the locale, which break PostgreSQL and Jupyter in odd ways.

Over 600 lines on purpose: about thirty small checks that share the Finding vocabulary
and the report; each is independent, and one file keeps the list of what is checked
readable from top to bottom.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from coursestack.errors import UserError
from coursestack.instances import SAMPLE_INSTANCE, Instance, sample_course_source
from coursestack.plan import make_plan
from coursestack.spec import CourseSpec, ServiceSpec, StartPolicy, load_spec
from coursestack.state import StateFolder, read_json
from coursestack.units import MB, format_size

Status = Literal["ok", "warn", "fail"]

#: Python versions coursestack supports.
MIN_PYTHON = (3, 11)
#: Free disk below which services are likely to fail (PostgreSQL stops writing).
DISK_FAIL_BELOW = 500 * MB
DISK_WARN_BELOW = 2048 * MB
#: Memory left over, beyond what the course needs, below which we warn.
MEMORY_SPARE = 512 * MB
#: How far back "recent failures" look.
RECENT_SECONDS = 24 * 3600
#: Lines of the history of state changes read when the daemon is not running.
HISTORY_LINES = 5000

_TROUBLE_STATES = ("failed", "backoff", "unhealthy")


@dataclass(frozen=True)
class Finding:
    """One result of a check: what was found, and the one thing to do next."""

    status: Status
    check: str
    what: str
    next_step: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def worst(findings: Iterable[Finding]) -> Status:
    """The most serious status among `findings` ("ok" when there are none)."""
    statuses = {f.status for f in findings}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


# -- the whole run -----------------------------------------------------------------------


def run_doctor(target: Instance | StateFolder | Path | str | None = None) -> list[Finding]:
    """Run every check for one instance and return the findings, in a readable order.

    `target` is an `Instance`, a state folder (`StateFolder` or path), or None for the
    instance `coursestack` commands would pick. Blocking (it calls the daemon's API and
    runs small programs such as `postgres --version`): from inside the daemon's event
    loop call it with `await asyncio.to_thread(run_doctor, daemon.state)`.
    """
    instance = _as_instance(target)
    findings: list[Finding] = []
    add = findings.extend
    add(_guard("python", check_python))
    add(_guard("packages", check_packages))
    add(_guard("kinds", check_kinds))
    spec: CourseSpec | None = None
    try:
        spec, spec_findings = _load_spec(instance)
    except Exception as error:  # an unreadable file, say: report it, check the rest
        spec_findings = [
            Finding(
                "fail",
                "spec",
                f"The course spec could not be read: {type(error).__name__}: {error}",
                "check that the spec file exists and is readable",
            )
        ]
    add(spec_findings)
    if spec is not None:
        add(_guard("programs", check_programs, spec))
    add(_guard("state-folder", check_state_folder, instance.state))
    add(_guard("disk", check_free_disk, instance.state.root))
    alive = _guard_value(instance.daemon_alive, False)
    services: list[dict[str, Any]] | None = None
    history: list[dict[str, Any]] = []
    if alive:
        services, history, daemon_findings = _ask_daemon(instance)
        add(daemon_findings)
    else:
        add(_guard("daemon", check_daemon_stopped, instance))
        history = read_history(instance.state)
    if spec is not None:
        add(_guard("ports", check_ports, spec, instance, alive))
        measured = {s["name"]: s.get("memory") for s in services} if services is not None else None
        add(_guard("memory", check_memory, spec, measured))
    if services is not None:
        add(_guard("services", check_services, services))
    add(_guard("history", check_recent_failures, history))
    add(_guard("clock", check_clock, time.time(), installed_at(), history))
    add(_guard("timezone", check_timezone, os.environ))
    add(_guard("locale", check_locale, os.environ))
    return findings


def _as_instance(target: Instance | StateFolder | Path | str | None) -> Instance:
    from coursestack.instances import resolve_instance

    if isinstance(target, Instance):
        return target
    if isinstance(target, StateFolder):
        return resolve_instance(state=target.root)
    if target is None:
        return resolve_instance()
    return resolve_instance(state=Path(target))


def _guard(
    check: str, function: Callable[..., Finding | list[Finding]], *args: Any
) -> list[Finding]:
    """Run one check; if the check itself breaks, say so instead of crashing."""
    try:
        result = function(*args)
    except UserError as error:
        return [
            Finding(
                "fail",
                check,
                error.render().splitlines()[0],
                error.hint or "send `coursestack doctor --bundle` to your support desk",
            )
        ]
    except Exception as error:
        return [
            Finding(
                "fail",
                check,
                f"The {check} check could not run: {type(error).__name__}: {error}",
                "send `coursestack doctor --bundle` to your support desk",
            )
        ]
    return result if isinstance(result, list) else [result]


def _guard_value(function: Callable[[], Any], default: Any) -> Any:
    try:
        return function()
    except Exception:
        return default


# -- Python, packages, programs -------------------------------------------------------------


def check_python(version: tuple[int, ...] = tuple(sys.version_info[:3])) -> Finding:
    """Python is new enough."""
    shown = ".".join(str(part) for part in version)
    if version[:2] < MIN_PYTHON:
        need = ".".join(str(part) for part in MIN_PYTHON)
        return Finding(
            "fail",
            "python",
            f"Python {shown} is too old (coursestack needs {need} or newer).",
            f"install Python {need} or newer and reinstall coursestack with it",
        )
    return Finding("ok", "python", f"Python {shown} ({sys.executable}).")


def check_packages(distribution: str = "coursestack") -> Finding:
    """Every package coursestack needs is installed; lists the versions that matter."""
    try:
        own = importlib.metadata.version(distribution)
        needed = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return Finding(
            "fail",
            "packages",
            f"The {distribution} package is not installed properly (no package metadata).",
            f"reinstall it: pip install --force-reinstall {distribution}",
        )
    missing = []
    for requirement in needed:
        if "extra ==" in requirement:
            continue
        name = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return Finding(
            "fail",
            "packages",
            f"Packages coursestack needs are missing: {', '.join(missing)}.",
            f"pip install {' '.join(missing)}",
        )
    shown = ", ".join(
        f"{name} {version}" for name, version in package_versions().items() if name != distribution
    )
    return Finding("ok", "packages", f"coursestack {own}; {shown}.")


def package_versions() -> dict[str, str]:
    """Versions of coursestack and the packages its services depend on most."""
    versions = {}
    for name in (
        "coursestack",
        "pydantic",
        "starlette",
        "uvicorn",
        "httpx",
        "psutil",
        "psycopg",
        "pgserver",
        "pymongo",
        "nx-27017",
        "jupyter_server",
        "jupyterlab",
        "ipykernel",
    ):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def check_kinds() -> list[Finding]:
    """Every package that registers a kind (entry point group `coursestack.kinds`) loads,
    and no two register the same name."""
    from coursestack.registry import registry

    found = registry()
    loaded = found.load_all()
    findings = [
        Finding(
            "warn",
            "kinds",
            f"A kind package is broken: {problem.line()}.",
            f"reinstall or uninstall package {problem.package!r}; the other kinds work",
        )
        for problem in found.problems
    ]
    others = sorted(name for name in loaded if found.package_of(name) != "coursestack")
    extra = f" (from other packages: {', '.join(others)})" if others else ""
    findings.append(Finding("ok", "kinds", f"{len(loaded)} kinds can be used{extra}."))
    return findings


def check_programs(spec: CourseSpec) -> list[Finding]:
    """Each service's program is installed; its version, in words; and what its kind
    checks besides (`doctor_checks`)."""
    findings = []
    for name, service in spec.services.items():
        findings.append(check_program(name, service, spec))
        with contextlib.suppress(UserError):
            findings += [
                Finding(check.status, f"kind:{name}", check.message, check.hint)
                for check in _scratch_unit(name, service, spec).doctor_checks()
            ]
    return findings


def check_program(name: str, service: ServiceSpec, spec: CourseSpec) -> Finding:
    """One service's program: found (with its version), or how to install it."""
    unit = _scratch_unit(name, service, spec)
    check = f"program:{name}"
    try:
        unit.check_installed()
    except UserError as error:
        optional = service.start is not StartPolicy.ALWAYS
        return Finding(
            "warn" if optional else "fail",
            check,
            f"{name} ({service.kind}) cannot start: {error.message}"
            + (" (it only starts on request)" if optional else "")
            + ".",
            error.hint or "install the program it names",
        )
    return Finding("ok", check, f"{name} ({service.kind}): {program_version(unit)}.")


def _scratch_unit(name: str, service: ServiceSpec, spec: CourseSpec) -> Any:
    """A kind object that can answer questions about programs; it writes nothing."""
    from coursestack.kinds import Context, build_unit
    from coursestack.state import Secrets

    scratch = StateFolder(Path("/nonexistent"))
    return build_unit(name, service, Context(scratch, spec, Secrets(scratch), None))


def program_version(unit: Any) -> str:
    """The version of a service's program, as its kind knows it (`program_version`)."""
    version: str = unit.program_version()
    return version


def _load_spec(instance: Instance) -> tuple[CourseSpec | None, list[Finding]]:
    """The instance's course spec, or the sample course for a sample never set up."""
    record = instance.state.instance()
    try:
        if "spec" in record:
            spec = load_spec(record["spec"])
        elif instance.name == SAMPLE_INSTANCE:
            spec = load_spec(sample_course_source() / "course.toml")
        else:
            return None, [
                Finding(
                    "warn",
                    "spec",
                    f"Instance {instance.name!r} has never "
                    f"been set up (no {instance.state.instance_file}).",
                    "run `coursestack up COURSE.toml` first",
                )
            ]
    except UserError as error:
        return None, [
            Finding(
                "fail",
                "spec",
                "The course spec has mistakes:\n" + error.render(),
                "fix the lines it names, then run `coursestack doctor` again",
            )
        ]
    return spec, [
        Finding("ok", "spec", f"Course spec {spec.path} is valid ({len(spec.services)} services).")
    ]


# -- state folder and disk -------------------------------------------------------------------


def check_state_folder(state: StateFolder) -> list[Finding]:
    """The state folder can be written, and its secrets are private to its owner."""
    root = state.root
    existing = _nearest_existing(root)
    if not root.exists():
        if not os.access(existing, os.W_OK | os.X_OK):
            return [
                Finding(
                    "fail",
                    "state-folder",
                    f"The state folder {root} does not exist and {existing} is not writable.",
                    "choose a writable place with --state DIR or COURSESTACK_HOME",
                )
            ]
        return [
            Finding(
                "ok",
                "state-folder",
                f"The state folder {root} will be created by `coursestack up`.",
            )
        ]
    findings = []
    unwritable = [
        p
        for p in (root, state.logs, state.run, state.data)
        if p.exists() and not os.access(p, os.W_OK | os.X_OK)
    ]
    if unwritable:
        findings.append(
            Finding(
                "fail",
                "state-folder",
                "coursestack cannot write in " + ", ".join(str(p) for p in unwritable) + ".",
                f"give yourself write access: chmod -R u+rwX {root}",
            )
        )
    loose = [
        p
        for p in (state.secrets_file, state.daemon_file)
        if p.exists() and p.stat().st_mode & 0o077
    ]
    if loose:
        findings.append(
            Finding(
                "warn",
                "state-folder",
                "Files holding passwords can be read "
                "by other users: " + ", ".join(str(p) for p in loose) + ".",
                "chmod 600 " + " ".join(str(p) for p in loose),
            )
        )
    if not findings:
        findings.append(
            Finding(
                "ok",
                "state-folder",
                f"The state folder {root} is writable and its secrets are private.",
            )
        )
    return findings


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def check_free_disk(
    path: Path, warn_below: int = DISK_WARN_BELOW, fail_below: int = DISK_FAIL_BELOW
) -> Finding:
    """Enough free disk where the instance keeps its data."""
    where = _nearest_existing(path)
    free = shutil.disk_usage(where).free
    shown = format_size(free)
    if free < fail_below:
        return Finding(
            "fail",
            "disk",
            f"Only {shown} of disk is free at {where}; "
            "PostgreSQL stops and notebooks cannot be saved when it runs out.",
            f"free at least {format_size(warn_below)} of disk (empty the "
            "bin, delete downloads), then `coursestack restart` what failed",
        )
    if free < warn_below:
        return Finding(
            "warn",
            "disk",
            f"{shown} of disk is free at {where}; that is little for data and notebooks.",
            f"free some disk: {format_size(warn_below)} or more is comfortable",
        )
    return Finding("ok", "disk", f"{shown} of disk is free at {where}.")


# -- ports -------------------------------------------------------------------------------------


def preferred_ports(spec: CourseSpec) -> list[tuple[str, int, str]]:
    """(name, port, host) for the dashboard and every service that has a port."""
    from coursestack.kinds import KINDS

    ports = [("dashboard", spec.dashboard.port, spec.dashboard.host)]
    for name, service in spec.services.items():
        kind = KINDS.get(service.kind)
        port = service.port or (kind.default_port if kind else None)
        if port:
            ports.append((name, port, "127.0.0.1"))
    return ports


def check_ports(spec: CourseSpec, instance: Instance, alive: bool) -> list[Finding]:
    """Each preferred port: free, used by this instance, or taken by which process."""
    from coursestack.ports import port_is_free

    ours = _own_pids(instance) if alive else set()
    leftovers = set() if alive else _leftover_pids(instance.state)
    actual = read_json(instance.state.ports_file, {}) or {}
    daemon = instance.state.daemon() or {}
    if alive and daemon.get("port"):
        actual = {**actual, "dashboard": daemon["port"]}
    owners: dict[int, tuple[int | None, str]] | None = None
    others: dict[int, str] | None = None
    findings = []
    for name, port, host in preferred_ports(spec):
        label = f"Port {port} ({name})"
        try:
            free = port_is_free(port, host)
        except OSError as error:
            findings.append(
                Finding(
                    "warn",
                    f"port:{name}",
                    f"{label} on {host} cannot be checked: {error.strerror or error}.",
                    f"check [dashboard] host = {host!r} in the course spec"
                    if name == "dashboard"
                    else "nothing to do",
                )
            )
            continue
        if free:
            findings.append(Finding("ok", f"port:{name}", f"{label} is free."))
            continue
        if owners is None:
            owners = listening_processes()
        pid, program = owners.get(port, (None, ""))
        if pid in ours or (alive and pid is None and actual.get(name) == port):
            findings.append(
                Finding("ok", f"port:{name}", f"{label} is used by this instance, as planned.")
            )
            continue
        who = f"`{program}` (pid {pid})" if pid is not None else "another program"
        if pid is not None:
            if others is None:
                others = _other_instances(instance)
            if pid in others:
                who = f"coursestack instance {others[pid]!r} ({program}, pid {pid})"
        if pid is not None and pid in leftovers:
            findings.append(
                Finding(
                    "warn",
                    f"port:{name}",
                    f"{label} is taken by {who}, "
                    "left running by this instance's daemon, which died.",
                    "run `coursestack down`: it stops what the daemon left",
                )
            )
            continue
        now = (
            f" (it uses {actual[name]} now)"
            if alive and actual.get(name) and actual[name] != port
            else ""
        )
        findings.append(
            Finding(
                "warn",
                f"port:{name}",
                f"{label} is taken by {who}; coursestack will use another port{now}.",
                "nothing to do",
            )
        )
    return findings


def listening_processes() -> dict[int, tuple[int | None, str]]:
    """Listening TCP ports -> (pid, program name); pid None where the OS will not say."""
    found: dict[int, tuple[int | None, str]] = {}
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return found
    for connection in connections:
        if connection.status != psutil.CONN_LISTEN or not connection.laddr:
            continue
        port = connection.laddr.port
        name = ""
        if connection.pid is not None:
            with contextlib.suppress(psutil.Error):
                name = psutil.Process(connection.pid).name()
        if port not in found or found[port][0] is None:
            found[port] = (connection.pid, name)
    return found


def _own_pids(instance: Instance) -> set[int]:
    """The daemon and every process it started (services run in its process tree)."""
    record = instance.state.daemon() or {}
    pids: set[int] = set()
    with contextlib.suppress(KeyError, ValueError, TypeError, psutil.Error):
        daemon = psutil.Process(int(record["pid"]))
        pids.add(daemon.pid)
        pids.update(child.pid for child in daemon.children(recursive=True))
    return pids


def _other_instances(instance: Instance) -> dict[int, str]:
    """Processes of this user's other running instances -> instance name."""
    from coursestack.state import registered_instances

    found: dict[int, str] = {}
    for name, folder in registered_instances():
        if folder.root == instance.state.root:
            continue
        other = Instance(name, folder)
        if _guard_value(other.daemon_alive, False):
            found.update(dict.fromkeys(_own_pids(other), name))
    return found


def _leftover_pids(state: StateFolder) -> set[int]:
    """Processes recorded by a daemon that died, still running (same creation time)."""
    from coursestack.procs import process_identity

    recorded = read_json(state.pids_file, {}) or {}
    found: set[int] = set()
    for entry in recorded.values() if isinstance(recorded, dict) else ():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            pid = int(entry["pid"])
            if process_identity(pid) == float(entry["created"]):
                found.add(pid)
                with contextlib.suppress(psutil.Error):
                    found.update(c.pid for c in psutil.Process(pid).children(recursive=True))
    return found


# -- memory -------------------------------------------------------------------------------------


def check_memory(
    spec: CourseSpec, measured: Mapping[str, int | None] | None = None, available: int | None = None
) -> list[Finding]:
    """Memory headroom against what the course needs, and the course's own budget."""
    plan = make_plan(spec, dict(measured) if measured is not None else None)
    free = psutil.virtual_memory().available if available is None else available
    need = plan.expected_total
    findings = []
    if measured is not None:
        in_use = plan.measured_total or 0
        if free < MEMORY_SPARE // 2:
            findings.append(
                Finding(
                    "warn",
                    "memory",
                    f"Only {format_size(free)} of memory is "
                    f"left (the course uses {format_size(in_use)}); the "
                    "system may stop services to make room.",
                    "close programs you do not need, and notebooks you "
                    "are not using (their kernels)",
                )
            )
        else:
            findings.append(
                Finding(
                    "ok",
                    "memory",
                    f"{format_size(free)} of memory is free; "
                    f"the running course uses {format_size(in_use)}.",
                )
            )
    elif free < need:
        findings.append(
            Finding(
                "fail",
                "memory",
                f"The course needs about {format_size(need)}"
                f" of memory but only {format_size(free)} is free.",
                "close other programs (and other instances: `coursestack "
                "list`), then start the course",
            )
        )
    elif free < need + MEMORY_SPARE:
        findings.append(
            Finding(
                "warn",
                "memory",
                f"The course needs about {format_size(need)}"
                f" and {format_size(free)} is free: little room to spare.",
                "close programs you do not need before you start",
            )
        )
    else:
        findings.append(
            Finding(
                "ok",
                "memory",
                f"{format_size(free)} of memory is free; the "
                f"course needs about {format_size(need)}.",
            )
        )
    if plan.fits is False:
        findings.append(
            Finding(
                "warn",
                "memory-budget",
                plan.verdict(),
                "see `coursestack plan` (a matter for the course team)",
            )
        )
    return findings


# -- the daemon and services -----------------------------------------------------------------


def _ask_daemon(
    instance: Instance,
) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]], list[Finding]]:
    try:
        client = instance.client()
        try:
            # As dicts: the checks also read the history file, written before a crash.
            services = [view.model_dump() for view in client.services()]
            history = [event.model_dump() for event in client.history()]
        finally:
            client.close()
    except UserError as error:
        return (
            None,
            read_history(instance.state),
            [
                Finding(
                    "fail",
                    "daemon",
                    f"The daemon of {instance.name!r} runs but does not answer: {error.message}",
                    "run `coursestack down`, then `coursestack up`",
                )
            ],
        )
    url = (instance.state.daemon() or {}).get("url", "")
    return (
        services,
        history,
        [Finding("ok", "daemon", f"The daemon of {instance.name!r} is running (dashboard {url}).")],
    )


def check_daemon_stopped(instance: Instance) -> Finding:
    """With no daemon running: stopped cleanly, or died leaving its record behind?"""
    if instance.state.daemon_file.exists():
        from coursestack.logs import tail_lines

        last = [
            line
            for line in tail_lines(instance.state.daemon_log, 20)
            if "error" in line.lower() or "traceback" in line.lower()
        ]
        said = f" Its log ends with: {last[-1].strip()}" if last else ""
        return Finding(
            "warn",
            "daemon",
            f"The daemon of {instance.name!r} stopped without "
            f"cleaning up (it crashed or was killed).{said}",
            "run `coursestack up`: it stops what was left and starts again",
        )
    return Finding(
        "ok",
        "daemon",
        f"{instance.name!r} is not running, so its services were not checked.",
        "start it with `coursestack up` if you want them checked too",
    )


def check_services(services: list[dict[str, Any]]) -> list[Finding]:
    """Each service's state, as the daemon sees it now."""
    return [check_service(service) for service in services]


def check_service(service: dict[str, Any]) -> Finding:
    """One service: ready, or what is wrong and what to do."""
    name, state = service["name"], service["state"]
    reason = (service.get("reason") or service.get("detail") or "").strip()
    reason_line = reason.splitlines()[0] if reason else ""
    logs = f"`coursestack logs {name}`"
    check = f"service:{name}"
    if state == "ready":
        return Finding(
            "ok",
            check,
            f"{name} is ready (port {service.get('port') or '-'}, "
            f"restarted {service.get('restarts', 0)} times).",
        )
    if state == "failed":
        return Finding(
            "fail",
            check,
            f"{name} has failed: {reason_line or 'no reason given'}",
            f"read {logs}, fix what it says, then `coursestack restart {name}`",
        )
    if state == "backoff":
        return Finding(
            "warn",
            check,
            f"{name} crashed and will be restarted: {reason_line or 'no reason given'}",
            f"if it keeps crashing, read {logs}",
        )
    if state == "unhealthy":
        return Finding(
            "warn",
            check,
            f"{name} runs but does not answer its health checks.",
            f"wait a minute; if it stays so, `coursestack restart {name}`",
        )
    if state in ("starting", "stopping"):
        return Finding("ok", check, f"{name} is {state}.", "wait a moment")
    if service.get("start") == str(StartPolicy.ALWAYS):
        return Finding("warn", check, f"{name} is stopped.", f"`coursestack start {name}`")
    return Finding("ok", check, f"{name} is stopped (it starts on request).")


def read_history(state: StateFolder, lines: int = HISTORY_LINES) -> list[dict[str, Any]]:
    """The latest state changes from the daemon's append-only log (events.jsonl)."""
    from coursestack.logs import tail_lines

    events = []
    for line in tail_lines(state.events_file, lines):
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                events.append(event)
    return events


def check_recent_failures(
    history: list[dict[str, Any]], now: float | None = None, window: float = RECENT_SECONDS
) -> list[Finding]:
    """Services that crashed, failed or stopped answering in the last `window` seconds."""
    now = time.time() if now is None else now
    trouble: dict[str, list[dict[str, Any]]] = {}
    for event in history:
        try:
            recent = now - float(event["time"]) <= window
        except (KeyError, TypeError, ValueError):
            continue
        if (
            recent
            and event.get("state") in _TROUBLE_STATES
            and event.get("previous") != event.get("state")
        ):
            trouble.setdefault(str(event.get("service")), []).append(event)
    hours = f"{window / 3600:g} hours"
    if not trouble:
        return [Finding("ok", "history", f"No crashes or failures in the last {hours}.")]
    findings = []
    for name, events in sorted(trouble.items()):
        crashes = sum(1 for e in events if e.get("state") == "backoff")
        failed = sum(1 for e in events if e.get("state") == "failed")
        unhealthy = sum(1 for e in events if e.get("state") == "unhealthy")
        parts = [
            f"crashed {crashes} times" if crashes else "",
            f"failed {failed} times" if failed else "",
            f"stopped answering {unhealthy} times" if unhealthy else "",
        ]
        last = events[-1]
        reason = str(last.get("reason") or last.get("detail") or "").strip()
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(last["time"])))
        findings.append(
            Finding(
                "warn",
                f"history:{name}",
                f"{name} {', '.join(p for p in parts if p)} in the last {hours} (last at {when}"
                + (f": {reason.splitlines()[0]}" if reason else "")
                + ").",
                f"read `coursestack logs {name}` around {when}",
            )
        )
    return findings


# -- clock, time zone, locale -------------------------------------------------------------------


def installed_at() -> float:
    """When this copy of coursestack was installed (the newest of its module files)."""
    folder = Path(__file__).parent
    return max((p.stat().st_mtime for p in folder.glob("*.py")), default=0.0)


def check_clock(
    now: float,
    installed: float,
    history: list[dict[str, Any]] | None = None,
) -> list[Finding]:
    """The clock is not behind the install time, nor behind the daemon's last records."""
    shown = time.strftime("%Y-%m-%d %H:%M", time.localtime(now))
    if installed and now < installed - 86400:
        when = time.strftime("%Y-%m-%d", time.localtime(installed))
        return [
            Finding(
                "fail",
                "clock",
                f"The clock says {shown}, before coursestack was "
                f"installed ({when}); logins, certificates and cookies break with a "
                "wrong clock.",
                "set the right date and time (turn on automatic time), then restart the course",
            )
        ]
    latest = max(
        (float(e["time"]) for e in history or [] if _is_number(e.get("time"))), default=0.0
    )
    if latest and now < latest - 300:
        return [
            Finding(
                "warn",
                "clock",
                f"The clock says {shown}, but the instance "
                f"recorded events up to {(latest - now) / 60:.0f} minutes later: the "
                "clock went back.",
                "check the date and time settings (automatic time is best)",
            )
        ]
    return [Finding("ok", "clock", f"The clock says {shown}.")]


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


_POSIX_TZ = re.compile(r"^[A-Za-z]{3,}[+-]?\d{1,2}(:\d{2}){0,2}([A-Za-z]{3,}.*)?$")


def check_timezone(env: Mapping[str, str]) -> list[Finding]:
    """TZ, if set, names a real time zone (PostgreSQL and notebooks read it)."""
    import zoneinfo

    value = env.get("TZ")
    if not value:
        return [Finding("ok", "timezone", "Time zone: the system's (TZ is not set).")]
    name = value.removeprefix(":")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if not _POSIX_TZ.match(name):
            return [
                Finding(
                    "warn",
                    "timezone",
                    f"TZ={value} is not a time zone this system "
                    "knows: PostgreSQL falls back to GMT and notebooks may show wrong "
                    "times.",
                    "unset TZ, or set it to a zone such as Europe/London",
                )
            ]
    return [Finding("ok", "timezone", f"Time zone: TZ={value}.")]


def check_locale(env: Mapping[str, str]) -> list[Finding]:
    """The locale in LC_ALL / LC_CTYPE / LANG exists and uses UTF-8.

    A locale that is not installed stops PostgreSQL's programs, and a non-UTF-8 one
    breaks Jupyter with non-English file names. Checked in a child process, so the
    caller's own locale is never changed.
    """
    chosen = {key: env[key] for key in ("LC_ALL", "LC_CTYPE", "LANG") if env.get(key)}
    shown = ", ".join(f"{k}={v}" for k, v in chosen.items()) or "no LANG or LC_* set"
    probe = (
        "import locale, sys\n"
        "try:\n    locale.setlocale(locale.LC_ALL, '')\n"
        "except locale.Error as e:\n    print('missing'); sys.exit(0)\n"
        "print(locale.getpreferredencoding(False))"
    )
    try:
        result = subprocess.run(
            [sys.executable, "-I", "-c", probe],
            capture_output=True,
            text=True,
            env=dict(env),
            timeout=20,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return [
            Finding(
                "warn", "locale", f"The locale could not be checked ({error}).", "nothing to do"
            )
        ]
    answer = result.stdout.strip()
    if answer == "missing":
        return [
            Finding(
                "warn",
                "locale",
                f"The locale ({shown}) is not installed on this "
                "system; PostgreSQL and Jupyter may refuse to start.",
                "use an installed one: export LANG=C.UTF-8 and unset LC_ALL",
            )
        ]
    if answer.replace("-", "").lower() != "utf8":
        return [
            Finding(
                "warn",
                "locale",
                f"The text encoding is {answer or 'unknown'} "
                f"({shown}), not UTF-8; notebooks with accents or non-English file "
                "names may fail.",
                "export LANG=C.UTF-8 (or your language, e.g. en_GB.UTF-8)",
            )
        ]
    return [Finding("ok", "locale", f"Locale: {shown} (UTF-8).")]


# -- output -------------------------------------------------------------------------------------


def summary(findings: list[Finding]) -> str:
    """One closing sentence: all well, or the first thing to fix."""
    failures = [f for f in findings if f.status == "fail"]
    warnings = [f for f in findings if f.status == "warn"]
    if failures:
        first = failures[0]
        return (
            f"{len(failures)} problem(s) found. Start here: {first.next_step}"
            if first.next_step
            else f"{len(failures)} problem(s) found."
        )
    if warnings:
        return f"No problems; {len(warnings)} thing(s) worth knowing above."
    return "Everything looks fine."


def report_text(findings: list[Finding]) -> str:
    """The findings as plain text (no colour), as in the diagnostics bundle."""
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for finding in findings:
        what = finding.what.replace("\n", "\n       ")
        lines.append(f"[{marks[finding.status]}] {what}")
        if finding.next_step and finding.status != "ok":
            lines.append(f"       next: {finding.next_step}")
    lines.append("")
    lines.append(summary(findings))
    return "\n".join(lines) + "\n"
