"""Benchmark: start-up of the sample course, coursestack vs. the same programs started by hand
vs. supervisord, plus cold start and (via bench_idle.py) the daemon's idle cost.

Everything runs in one isolated COURSESTACK_HOME under /tmp (a 0755 folder) on the embedded
sample course, i.e. every service `coursestack up` starts for it (PostgreSQL from the
pgserver wheel, JupyterLab which depends on it, and whatever else the sample starts).

Warm start (data already initialised), each variant timed from the command to *real*
readiness, checked by this script -- PostgreSQL accepts a password connection as its
superuser and answers `SELECT 1`; Jupyter answers 200 on `/s/jupyter/api/status?token=`;
a MongoDB(-compatible) server answers `ping`:

- coursestack      wall time of `coursestack up --state DIR` (it returns when all are
                   ready); readiness is re-checked by this script right after it returns.
- one-by-one       each service started in dependency order, polled until ready, then
                   the next one.
- supervisord      `supervisord -n -c CONF` running the same programs; all polled.
- NAME alone       each service's own start time; the slowest one is the yardstick of
                   the aim "warm start within 1.2x the slowest service's own start".

The alternatives run the SAME argv, environment, working folder, user (`coursestack`) and
stop signal as the daemon: they come from coursestack's own `Daemon.build()` +
`launch_spec()` (run under the interpreter of the `coursestack` script, so even argv[0]
matches), and are checked once against /proc of the daemon's running services.
Variants are alternated (the order rotates every round); median and min are reported.

Cold start: a fresh state folder, `coursestack up` including initdb, role/database
creation and seeding; median of --cold runs.

    python bench/bench_startup.py                  # about 4-6 minutes, idle part included
    python bench/bench_startup.py --markdown docs/benchmarks-core.md
    python bench/bench_startup.py --skip-idle      # start-up only
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

LOCALHOST = "127.0.0.1"
POLL = 0.02  # seconds between readiness polls of this script (coursestack's own: 0.05)
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


# -- small helpers ---------------------------------------------------------------------------


def tool(name: str) -> str:
    """A console script of this Python (not a pyenv shim, whose bash adds ~0.05 s a call)."""
    beside = BIN / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: pip install -e '.[bench]'")
    return found


def script_python(script: str) -> str:
    """The interpreter named in a console script's #! line (what the daemon runs as)."""
    first = Path(script).read_text(encoding="utf-8", errors="replace").splitlines()[0]
    if first.startswith("#!") and "python" in first and " " not in first[2:].strip():
        return first[2:].strip()
    return sys.executable


def wait_gone(pids: list[int], timeout: float = 30.0) -> None:
    """Wait until every process in `pids` has exited (ports on this shared machine may be
    taken by other people's instances at any time, so we wait for our processes instead)."""

    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} still running after {timeout:g} s")
        time.sleep(0.05)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> list[int]:
    """`count` free, unusual loopback ports in a row.

    This machine is shared: other people's sample instances sit on 5432/8888/8700/27017 and
    the ports next to them, and grab them between our runs. The sample course is benchmarked
    unchanged except for its preferred ports (set in the state folder's copy of it).
    """
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(20000, 30000, 20)
        ports = list(range(base, base + count))
        if all(port_free(p) for p in ports):
            return ports
    raise RuntimeError("no free port block found")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- readiness, as a user sees it -----------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One service `up` starts: where it is, what proves it ready, how it is launched."""

    name: str
    kind: str
    port: int
    secret: str | None  # postgres superuser password, jupyter token
    base_url: str
    launch: dict[str, Any]  # argv, env, cwd, uid, gid, user, stop_signal
    depends_on: tuple[str, ...]  # "NAME CONDITION", e.g. "postgres ready"


@dataclass(frozen=True)
class Facts:
    """The services of one state folder, in coursestack's start (dependency) order."""

    services: dict[str, Service]

    def ready(self, name: str) -> bool:
        service = self.services[name]
        return READY_CHECKS[service.kind](service)

    def all_ready(self) -> bool:
        return all(self.ready(name) for name in self.services)

    def with_ports(self, ports: dict[str, int]) -> Facts:
        return Facts(
            {n: replace(s, port=int(ports.get(n, s.port))) for n, s in self.services.items()}
        )


# No keep-alive: every poll is a fresh connection, as a browser's first request would be.
_http = httpx.Client(timeout=2.0, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0))


def pg_ready(service: Service) -> bool:
    """A real connection (scram-sha-256 password) as the superuser, and SELECT 1."""
    try:
        with psycopg.connect(
            host=LOCALHOST,
            port=service.port,
            user="postgres",
            password=service.secret,
            dbname="postgres",
            connect_timeout=2,
        ) as connection:
            return connection.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def jupyter_ready(service: Service) -> bool:
    url = f"http://{LOCALHOST}:{service.port}{service.base_url}api/status?token={service.secret}"
    try:
        return _http.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def mongo_ready(service: Service) -> bool:
    """`ping` answered (after a cheap TCP check: pymongo waits for server selection)."""
    try:
        with socket.create_connection((LOCALHOST, service.port), timeout=1):
            pass
    except OSError:
        return False
    import pymongo
    import pymongo.errors

    client: Any = pymongo.MongoClient(
        f"mongodb://{LOCALHOST}:{service.port}/?directConnection=true",
        serverSelectionTimeoutMS=2000,
        connectTimeoutMS=2000,
    )
    try:
        return bool(client.admin.command("ping").get("ok"))
    except pymongo.errors.PyMongoError:
        return False
    finally:
        client.close()


READY_CHECKS: dict[str, Callable[[Service], bool]] = {
    "postgres": pg_ready,
    "jupyter": jupyter_ready,
    "mongodb-lite": mongo_ready,
    "mongodb": mongo_ready,
}


def poll_until(
    check: Callable[[], bool], timeout: float = 120.0, alive: Callable[[], bool] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if alive is not None and not alive():
            raise RuntimeError("a process exited before it was ready (see bench-logs)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:g} s")
        time.sleep(POLL)


_LAUNCH_FACTS = r"""
import json, sys
from pathlib import Path
from coursestack.daemon import Daemon
from coursestack.state import StateFolder
d = Daemon(StateFolder(Path(sys.argv[1])))
d.build()
wanted = d.supervisor.closure(d.autostart())
order = [n for wave in d.supervisor.waves() for n in wave if n in wanted]
out = []
for name in order:
    unit = d.units[name]
    s = unit.launch_spec()
    secret = {"postgres": "superuser_password", "jupyter": "token"}.get(unit.KIND)
    out.append({"name": name, "kind": unit.KIND, "port": unit.port,
                "secret": getattr(unit, secret) if secret else None,
                "base_url": getattr(unit, "base_url", ""),
                "depends_on": [f"{k} {v}" for k, v in unit.spec.depends_on.items()],
                "launch": {"argv": list(s.argv), "env": dict(s.env), "cwd": str(s.cwd),
                           "uid": s.run_as.uid if s.run_as else None,
                           "gid": s.run_as.gid if s.run_as else None,
                           "user": s.run_as.name if s.run_as else None,
                           "stop_signal": int(s.stop_signal)}})
print(json.dumps(out))
"""


# -- the workspace: an isolated COURSESTACK_HOME and its state folders ---------------------------


class Workspace:
    """A 0755 folder under /tmp holding COURSESTACK_HOME, state folders and logs."""

    def __init__(self, keep: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="coursestack-bench-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.home = self.root / "home"
        self.logs = self.root / "bench-logs"
        self.logs.mkdir()
        self.keep = keep
        self.coursestack = tool("coursestack")
        self.python = script_python(self.coursestack)
        env = {k: v for k, v in os.environ.items() if not k.startswith("COURSESTACK_")}
        env["COURSESTACK_HOME"] = str(self.home)
        self.env = env
        self.states: list[Path] = []
        self.ports = free_port_block(8)
        self._children: list[subprocess.Popen[bytes]] = []

    def state(self, name: str) -> Path:
        """A state folder holding the sample course, with this workspace's own ports."""
        path = self.root / name
        if path not in self.states:
            self.states.append(path)
        course = path / "course"
        if not (course / "course.toml").exists():
            from coursestack.instances import sample_course_source

            shutil.copytree(sample_course_source(), course, dirs_exist_ok=True)
            toml = course / "course.toml"
            ports = iter(self.ports)
            text = re.sub(
                r"(?m)^port\s*=\s*\d+\s*$",
                lambda _: f"port = {next(ports)}",
                toml.read_text(encoding="utf-8"),
            )
            if re.search(r"(?m)^\[dashboard\]", text):
                raise RuntimeError("the sample course now has [dashboard]: update the bench")
            toml.write_text(text + f"\n[dashboard]\nport = {self.ports[-1]}\n", encoding="utf-8")
        return path

    def cs(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.coursestack, *args],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def up(self, state: Path) -> float:
        """Wall seconds of `coursestack up --state DIR` (fails loudly if it fails)."""
        start = time.perf_counter()
        result = self.cs("up", "--state", str(state))
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(
                f"coursestack up failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return elapsed

    def down(self, state: Path) -> None:
        """`coursestack down`, then wait until the services it had recorded are gone."""
        if not state.exists():
            return
        pids_file = state / "run" / "pids.json"
        try:
            pids = [int(entry["pid"]) for entry in json.loads(pids_file.read_text()).values()]
        except (OSError, ValueError, KeyError, TypeError):
            pids = []
        self.cs("down", "--state", str(state), timeout=180)
        wait_gone(pids)

    def status(self, state: Path) -> dict[str, Any]:
        result = self.cs("status", "--json", "--state", str(state))
        if result.returncode != 0:
            raise RuntimeError(f"coursestack status failed: {result.stderr}")
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def recorded_ports(self, state: Path) -> dict[str, int]:
        data: dict[str, int] = json.loads((state / "run" / "ports.json").read_text())
        return data

    def launch_facts(self, state: Path) -> Facts:
        """coursestack's own LaunchSpecs for this state folder (its daemon not running).

        Runs Daemon.build() + launch_spec() in the interpreter the daemon itself uses, so
        argv[0], environment, cwd, user and stop signal are exactly what the daemon runs.
        """
        result = subprocess.run(
            [self.python, "-c", _LAUNCH_FACTS, str(state)],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cannot build launch specs: {result.stderr[-2000:]}")
        services = {}
        for entry in json.loads(result.stdout):
            if entry["kind"] not in READY_CHECKS:
                raise RuntimeError(f"no readiness check for kind {entry['kind']!r}")
            services[entry["name"]] = Service(
                entry["name"],
                entry["kind"],
                int(entry["port"]),
                entry["secret"],
                entry["base_url"],
                entry["launch"],
                tuple(entry["depends_on"]),
            )
        return Facts(services)

    # -- processes this script starts itself ---------------------------------------------------

    def spawn(self, service: Service, log_name: str) -> subprocess.Popen[bytes]:
        """Start one service exactly as coursestack's OSLauncher does."""
        spec = service.launch
        log_fd = os.open(self.logs / log_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        kwargs: dict[str, Any] = {}
        if spec["uid"] is not None:
            kwargs.update(user=spec["uid"], group=spec["gid"], extra_groups=[])
        stop_signal = spec["stop_signal"]

        def parent_death_signal() -> None:
            ctypes.CDLL(None, use_errno=True).prctl(1, stop_signal, 0, 0, 0)

        try:
            process = subprocess.Popen(
                spec["argv"],
                cwd=spec["cwd"],
                env=spec["env"],
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
                preexec_fn=parent_death_signal,
                **kwargs,
            )
        finally:
            os.close(log_fd)
        self._children.append(process)
        return process

    def start_supervisord(self, conf: Path) -> subprocess.Popen[bytes]:
        env = {"PATH": self.env.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        log_fd = os.open(self.logs / "supervisord.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            process = subprocess.Popen(
                [tool("supervisord"), "-n", "-c", str(conf)],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                start_new_session=True,
            )
        finally:
            os.close(log_fd)
        self._children.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], signum: int, grace: float = 30.0) -> None:
        """Stop signal to the process group, SIGKILL after the grace, then the group again."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signum)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process in self._children:
            self._children.remove(process)

    def stop_all(self, processes: list[tuple[subprocess.Popen[bytes], Service]]) -> None:
        """Stop in reverse start order (dependents first), as coursestack does."""
        for process, service in reversed(processes):
            self.stop(process, service.launch["stop_signal"])

    def cleanup(self) -> None:
        for process in list(self._children):
            self.stop(process, signal.SIGTERM, grace=15)
        for state in self.states:
            with contextlib.suppress(Exception):
                self.down(state)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def supervisord_conf(ws: Workspace, facts: Facts, name: str = "supervisord") -> Path:
    """A supervisord.conf running the daemon's commands (user=coursestack)."""

    def esc(text: str) -> str:
        return text.replace("%", "%%")

    lines = [
        "[supervisord]",
        "nodaemon=true",
        "user=root",
        f"logfile={ws.logs / (name + '.log')}",
        f"pidfile={ws.root / (name + '.pid')}",
        f"childlogdir={ws.logs}",
        "",
    ]
    for priority, service in enumerate(facts.services.values(), start=1):
        spec = service.launch
        environment = ",".join(f'{key}="{esc(value)}"' for key, value in spec["env"].items())
        stop = signal.Signals(spec["stop_signal"]).name.removeprefix("SIG")
        lines += [
            f"[program:{service.name}]",
            "command=" + esc(" ".join(shlex.quote(a) for a in spec["argv"])),
            f"directory={spec['cwd']}",
            f"user={spec['user']}",
            f"environment={environment}",
            f"priority={priority}",
            "autostart=true",
            "autorestart=true",
            f"stopsignal={stop}",
            "stopwaitsecs=30",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            f"stdout_logfile={ws.logs / (name + '-' + service.name)}.log",
            "",
        ]
    conf = ws.root / f"{name}.conf"
    conf.write_text("\n".join(lines), encoding="utf-8")
    return conf


@contextlib.contextmanager
def supervisord_running(ws: Workspace, facts: Facts) -> Iterator[subprocess.Popen[bytes]]:
    process = ws.start_supervisord(supervisord_conf(ws, facts))
    try:
        yield process
    finally:
        # SIGTERM: supervisord stops its programs (reverse priority, their stop signals)
        # and waits for them before it exits.
        ws.stop(process, signal.SIGTERM, grace=60)


# -- the variants ------------------------------------------------------------------------------


def events_since(events_file: Path, offset: int) -> list[dict[str, Any]]:
    with open(events_file, encoding="utf-8") as handle:
        handle.seek(offset)
        return [json.loads(line) for line in handle if line.strip()]


def run_coursestack(ws: Workspace, state: Path, facts: Facts) -> dict[str, float]:
    """`coursestack up` to all ready; timeline from the daemon's events.jsonl."""
    events_file = state / "logs" / "events.jsonl"
    offset = events_file.stat().st_size if events_file.exists() else 0
    wall0 = time.time()
    try:
        seconds = ws.up(state)
        if not facts.with_ports(ws.recorded_ports(state)).all_ready():
            raise RuntimeError("coursestack up returned but a service is not really ready")
    finally:
        ws.down(state)
    result = {"total": seconds}
    events = events_since(events_file, offset)

    def first(service: str, state_name: str, detail: str | None = None) -> float | None:
        for event in events:
            if (
                event["service"] == service
                and event["state"] == state_name
                and (detail is None or event["detail"] == detail)
            ):
                return float(event["time"])
        return None

    if events:
        result["to_daemon"] = min(float(e["time"]) for e in events) - wall0
        readies = []
        for name in facts.services:
            prepared, ready = first(name, "starting", "preparing"), first(name, "ready")
            if prepared is not None and ready is not None:
                result[name] = ready - prepared
                readies.append(ready)
        if readies:
            result["after"] = wall0 + seconds - max(readies)
    return result


def run_one_by_one(ws: Workspace, state: Path, facts: Facts) -> dict[str, float]:
    facts = ws.launch_facts(state)
    started: list[tuple[subprocess.Popen[bytes], Service]] = []
    result: dict[str, float] = {}
    try:
        start = previous = time.perf_counter()
        for service in facts.services.values():
            process = ws.spawn(service, f"seq-{service.name}.log")
            started.append((process, service))
            poll_until(
                lambda s=service: facts.ready(s.name), alive=lambda p=process: p.poll() is None
            )
            now = time.perf_counter()
            result[service.name] = now - previous
            previous = now
        result["total"] = time.perf_counter() - start
    finally:
        ws.stop_all(started)
    return result


def run_alone(ws: Workspace, state: Path, name: str) -> dict[str, float]:
    facts = ws.launch_facts(state)
    service = facts.services[name]
    started: list[tuple[subprocess.Popen[bytes], Service]] = []
    try:
        start = time.perf_counter()
        process = ws.spawn(service, f"alone-{name}.log")
        started.append((process, service))
        poll_until(lambda: facts.ready(name), alive=lambda: process.poll() is None)
        end = time.perf_counter()
    finally:
        ws.stop_all(started)
    return {"total": end - start}


def run_supervisord(ws: Workspace, state: Path, facts: Facts) -> dict[str, float]:
    facts = ws.launch_facts(state)
    start = time.perf_counter()
    with supervisord_running(ws, facts) as process:
        pending = list(facts.services)
        done: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while pending:
            for name in list(pending):
                if facts.ready(name):
                    done[name] = time.perf_counter() - start
                    pending.remove(name)
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("supervisord: services not ready (see bench-logs)")
            if pending:
                time.sleep(POLL)
        end = time.perf_counter()
    return {"total": end - start, **done}


def check_same_commands(ws: Workspace, state: Path, facts: Facts) -> dict[str, bool]:
    """Does the daemon run exactly what this script runs for the alternatives?"""
    ws.up(state)
    try:
        services = {s["name"]: s for s in ws.status(state)["services"]}
        same = {}
        for name, service in facts.services.items():
            spec = service.launch
            process = psutil.Process(int(services[name]["pid"]))
            environ = process.environ()
            # PostgreSQL changes into its data folder (-D) itself, so its cwd is that.
            cwd_ok = process.cwd() == spec["cwd"] or (
                service.kind == "postgres" and process.cwd() == spec["argv"][2]
            )
            same[name] = (
                process.cmdline() == spec["argv"]
                and cwd_ok
                and process.uids().real == spec["uid"]
                and environ == spec["env"]
            )
    finally:
        ws.down(state)
    return same


def attempt(label: str, run: Callable[[], dict[str, float]], tries: int = 3) -> dict[str, float]:
    """Run one measurement; retry if it failed (e.g. another instance on this shared
    machine took a port chosen a moment before). Failures are printed, never hidden."""
    for number in range(1, tries + 1):
        try:
            return run()
        except RuntimeError as error:
            print(f"  {label}: attempt {number} failed: {str(error).splitlines()[0]}", flush=True)
            if number == tries:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


Variant = Callable[[Workspace, Path, Facts], dict[str, float]]


def variants(facts: Facts) -> dict[str, Variant]:
    found: dict[str, Variant] = {
        "coursestack": run_coursestack,
        "one-by-one": run_one_by_one,
        "supervisord": run_supervisord,
    }
    for name in facts.services:
        found[f"{name} alone"] = lambda ws, state, _facts, name=name: run_alone(ws, state, name)
    return found


def warm_start(
    ws: Workspace,
    rounds: int,
    warmup: int,
) -> tuple[dict[str, list[dict[str, float]]], Facts]:
    state = ws.state("warm")
    print("first up (initdb, seeding; not measured) ...", flush=True)
    ws.up(state)
    ws.down(state)
    facts = ws.launch_facts(state)
    print(f"services `up` starts, in order: {', '.join(facts.services)}", flush=True)
    same = check_same_commands(ws, state, facts)
    print(f"daemon runs the same argv/env/cwd/user as the alternatives: {same}", flush=True)
    if not all(same.values()):
        raise RuntimeError(f"argv/env/cwd/user differ from the daemon's: {same}")
    table = variants(facts)
    names = list(table)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_number in range(warmup + rounds):
        shift = round_number % len(names)
        order = names[shift:] + names[:shift]
        measured = round_number >= warmup
        for name in order:
            time.sleep(0.5)  # let the previous variant's shutdown settle
            outcome = attempt(name, lambda name=name: table[name](ws, state, facts))
            if measured:
                results[name].append(outcome)
        label = f"round {round_number - warmup + 1}/{rounds}" if measured else "warm-up round"
        print(
            f"{label}: "
            + ", ".join(
                f"{name} {results[name][-1]['total']:.2f}s" if measured else name for name in order
            ),
            flush=True,
        )
    return results, facts


def run_cold(ws: Workspace, state: Path, facts: Facts) -> dict[str, float]:
    """First `up` of a fresh state folder (initdb, role, seed) to all ready."""
    shutil.rmtree(state, ignore_errors=True)
    state = ws.state(state.name)  # a fresh copy of the sample course, our ports
    events_file = state / "logs" / "events.jsonl"
    try:
        seconds = ws.up(state)
        ports = ws.recorded_ports(state)
        secrets = json.loads((state / "run" / "secrets.json").read_text())
        services = {}
        for name, service in facts.services.items():
            key = {"postgres": f"{name}.superuser-password", "jupyter": f"{name}.token"}.get(
                service.kind
            )
            services[name] = replace(
                service, port=int(ports[name]), secret=secrets[key] if key else None
            )
        if not Facts(services).all_ready():
            raise RuntimeError("cold up returned but a service is not really ready")
    finally:
        ws.down(state)
    events = events_since(events_file, 0)
    times: dict[tuple[str, str, str], float] = {}
    for event in events:
        times.setdefault((event["service"], event["state"], event["detail"]), float(event["time"]))
    result = {"total": seconds}
    for name in facts.services:
        prepared = times.get((name, "starting", "preparing"))
        waiting = times.get((name, "starting", "waiting until it answers"))
        ready = times.get((name, "ready", ""))
        if prepared is not None and waiting is not None and ready is not None:
            result[f"{name} prepare"] = waiting - prepared
            result[name] = ready - prepared
    shutil.rmtree(state, ignore_errors=True)
    return result


def cold_start(ws: Workspace, runs: int, facts: Facts) -> list[dict[str, float]]:
    results = []
    for n in range(runs):
        state = ws.root / f"cold{n}"
        outcome = attempt("cold", lambda state=state: run_cold(ws, state, facts))
        results.append(outcome)
        detail = ", ".join(f"{k} {v:.2f}s" for k, v in outcome.items() if k != "total")
        print(f"cold {n + 1}/{runs}: {outcome['total']:.2f}s ({detail})", flush=True)
        time.sleep(0.5)
    return results


# -- report ---------------------------------------------------------------------------------------


def machine_facts() -> dict[str, str]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    versions = {}
    for package in ("coursestack", "jupyterlab", "supervisor", "psycopg", "pgserver", "nx-27017"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    postgres = ""
    with contextlib.suppress(Exception):
        import pgserver

        postgres = subprocess.run(
            [str(Path(pgserver.__file__).parent / "pginstall" / "bin" / "postgres"), "--version"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    code = ""
    with contextlib.suppress(Exception):
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        code = head + (" + uncommitted changes in src/" if dirty else "")
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False)
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": nproc.stdout.strip() or str(os.cpu_count()),
        "cpu": model or platform.processor(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgres": postgres,
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "code under test": code,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def startup_markdown(
    warm: dict[str, list[dict[str, float]]],
    cold: list[dict[str, float]],
    facts: Facts,
    aim: float = 1.2,
) -> tuple[str, dict[str, Any]]:
    totals = {name: [r["total"] for r in runs] for name, runs in warm.items()}
    med = {name: median(values) for name, values in totals.items()}
    best = {name: min(values) for name, values in totals.items() if values}
    alone = [f"{name} alone" for name in facts.services]
    slowest_name = max(alone, key=lambda n: med[n])
    slowest = med[slowest_name]
    ratio = med["coursestack"] / slowest
    rows = [
        "| variant | median (s) | min (s) | median / slowest service alone | "
        "coursestack / this (medians) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in warm:
        rows.append(
            f"| {name} | {med[name]:.2f} | {best[name]:.2f} | "
            f"{med[name] / slowest:.2f}x | {med['coursestack'] / med[name]:.2f}x |"
        )
    parts = warm["coursestack"]

    def m(key: str) -> float:
        return median([p[key] for p in parts if key in p])

    breakdown = (
        "\nWhere coursestack's warm start goes (medians, from the daemon's events.jsonl; "
        "services of one wave start in parallel):\n\n| phase | seconds |\n| --- | ---: |\n"
        f"| command -> daemon's first event (CLI start, spec loaded, fork, daemon's first steps) "
        f"| {m('to_daemon'):.2f} |\n"
    )
    for name in facts.services:
        after = (
            f" (once {', '.join(facts.services[name].depends_on)})"
            if (facts.services[name].depends_on)
            else ""
        )
        breakdown += f"| {name}: prepare -> ready{after} | {m(name):.2f} |\n"
    breakdown += (
        "| last service ready -> `up` returns (the daemon's verdict over the "
        f"readiness pipe) | {m('after'):.2f} |\n"
    )
    one = warm["one-by-one"]
    seq = ", ".join(f"{name} {median([r[name] for r in one]):.2f} s" for name in facts.services)
    breakdown += f"\nOne-by-one, each step (medians): {seq}.\n"
    cold_text = ""
    if cold:
        cold_totals = [c["total"] for c in cold]
        keys = [k for k in cold[0] if k != "total"]
        cold_text = (
            "\n## Cold start (first `up` of a fresh state folder)\n\n"
            "| runs | median (s) | min (s) | "
            + " | ".join(f"{k}, median (s)" for k in keys)
            + " |\n"
            + "| ---: | ---: | ---: | "
            + " | ".join("---:" for _ in keys)
            + " |\n"
            + f"| {len(cold)} | {median(cold_totals):.2f} | {min(cold_totals):.2f} | "
            + " | ".join(f"{median([c[k] for c in cold if k in c]):.2f}" for k in keys)
            + " |\n\n"
            f"`postgres prepare` is `initdb` (+ a `sync`); `postgres` is prepare -> ready, "
            f"which adds the role, database and seeding. Cold / warm (coursestack medians): "
            f"{median(cold_totals) / med['coursestack']:.2f}x.\n"
        )
    met = ratio <= aim
    text = (
        "\n".join(rows)
        + "\n"
        + breakdown
        + (
            f"\n**coursestack warm start = {ratio:.2f}x the slowest service's own start "
            f"({slowest_name}, median {slowest:.2f} s); aim <= {aim}x: "
            f"{'met' if met else 'NOT met'}.** "
            f"coursestack vs. one-by-one: {med['coursestack'] / med['one-by-one']:.2f}x; "
            f"vs. supervisord: {med['coursestack'] / med['supervisord']:.2f}x.\n"
        )
        + cold_text
    )
    summary = {"median": med, "min": best, "slowest": slowest_name, "ratio": ratio, "met": met}
    return text, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="measured warm rounds")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured warm rounds first")
    parser.add_argument("--cold", type=int, default=3, help="cold starts")
    parser.add_argument("--settle", type=float, default=10.0, help="idle: seconds before sampling")
    parser.add_argument("--sample", type=float, default=30.0, help="idle: seconds of sampling")
    parser.add_argument("--skip-idle", action="store_true", help="start-up only")
    parser.add_argument("--markdown", type=Path, help="write the report (docs/benchmarks-core.md)")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp workspace")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("note: not root, so services run as the current user, not `coursestack`")
    began = time.monotonic()
    machine = machine_facts()
    ws = Workspace(keep=args.keep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(
        f"workspace {ws.root}; {machine['nproc']} CPUs ({machine['cpu']}); "
        f"load {machine['load average at start']}",
        flush=True,
    )
    idle_text = ""
    idle_summary: dict[str, Any] = {}
    try:
        warm, facts = warm_start(ws, args.rounds, args.warmup)
        cold = cold_start(ws, args.cold, facts)
        if not args.skip_idle:
            import bench_idle

            idle = bench_idle.measure(ws, ws.state("warm"), args.settle, args.sample)
            idle_text, idle_summary = bench_idle.idle_markdown(idle, args.settle, args.sample)
    finally:
        ws.cleanup()
    machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    startup_text, summary = startup_markdown(warm, cold, facts)
    print()
    print(startup_text)
    if idle_text:
        print(idle_text)
    if args.markdown:
        # A hand-written analysis after ANALYSIS_MARKER survives a re-run.
        kept = ""
        if args.markdown.exists():
            old = args.markdown.read_text(encoding="utf-8")
            if ANALYSIS_MARKER in old:
                kept = "\n" + old[old.index(ANALYSIS_MARKER) :]
        args.markdown.write_text(
            document(machine, args, facts, startup_text, summary, idle_text, idle_summary) + kept,
            encoding="utf-8",
        )
        print(f"wrote {args.markdown}")
    print(f"took {time.monotonic() - began:.0f} s")
    return 0


ANALYSIS_MARKER = "<!-- analysis: hand-written, kept when bench_startup.py rewrites this file -->"


def document(
    machine: dict[str, str],
    args: argparse.Namespace,
    facts: Facts,
    startup_text: str,
    summary: dict[str, Any],
    idle_text: str,
    idle_summary: dict[str, Any],
) -> str:
    table = "\n".join(f"| {key} | {value} |" for key, value in machine.items())
    vs_supervisord = summary["median"]["coursestack"] / summary["median"]["supervisord"]
    aims = [
        f"- Warm start within 1.2x of the slowest service's own start: "
        f"**{'met' if summary['met'] else 'not met'}** ({summary['ratio']:.2f}x).",
        f"- Warm start below supervisord's time for the same programs: "
        f"**{'met' if vs_supervisord < 1 else 'not met'}** ({vs_supervisord:.2f}x).",
    ]
    if idle_summary:
        rss_met = "met" if idle_summary["rss_met"] else "not met"
        cpu_met = "met" if idle_summary["cpu_met"] else "not met"
        aims.append(
            f"- Daemon RSS at most 50 MB (idle, after the dashboard, the event stream "
            f"and a proxied request were served): **{rss_met}** "
            f"({idle_summary['rss']:.1f} MB mean, {idle_summary['rss_max']:.1f} MB max)."
        )
        aims.append(
            f"- Daemon idle CPU at most 0.5% of a core: **{cpu_met}** ({idle_summary['cpu']:.2f}%)."
        )
        if "proxy_ratio" in idle_summary:
            proxy_met = "met" if idle_summary["proxy_met"] else "not met"
            aims.append(
                f"- A kept-alive request for Jupyter's api/status through the front "
                f"door at most 1.5x the same request straight to Jupyter: "
                f"**{proxy_met}** ({idle_summary['proxy_ratio']:.2f}x)."
            )
    kinds = "\n".join(
        f"  - {s.name} ({s.kind})"
        + (f", starts once {', '.join(s.depends_on)}" if s.depends_on else "")
        for s in facts.services.values()
    )
    return f"""# Benchmarks: start-up and idle cost of the core (sample course)

Produced by `python bench/bench_startup.py --rounds {args.rounds} --cold {args.cold} \
--markdown docs/benchmarks-core.md` (the idle part is `bench/bench_idle.py`, which the
same command runs). All figures below come from one run on this machine:

| fact | value |
| --- | --- |
{table}

## Aims

{chr(10).join(aims)}

## Method

- The embedded sample course: every service `coursestack up` starts for it, in its start
  order (services with `start = "on-demand"` are not started by `up`, so not measured):
{kinds}
- An isolated `COURSESTACK_HOME` and state folders in a 0755 folder under
  /tmp; we run as root, so every service runs as the unprivileged user `coursestack`.
- The only change to the sample course: its preferred ports (in the state folder's copy
  of `course.toml`) are moved to a free block of high ports, because this machine is
  shared and other people's sample instances keep taking 5432, 8888, 27017 and their
  neighbours between runs.
- **Ready** means really ready, checked by the benchmark itself: PostgreSQL accepts a
  scram-sha-256 password connection as its superuser over 127.0.0.1 and answers
  `SELECT 1`; Jupyter answers 200 on `/s/jupyter/api/status?token=...` (a new connection
  each time); the MongoDB-compatible server answers `ping`. The benchmark polls every
  {POLL * 1000:.0f} ms.
- **Warm start** (data already initialised), each variant from the command to all ready:
  - *coursestack*: wall time of `coursestack up --state DIR` (the console script itself,
    not a pyenv shim); it returns when every service is ready, and the benchmark then
    checks all of them itself (every run passed). `coursestack down` is not timed.
  - *one-by-one*: each service started in coursestack's start order, polled until
    ready, then the next (a careful person with a shell script).
  - *supervisord* (from PyPI): `supervisord -n -c CONF`, one `[program]` per service
    with `user=coursestack`, the same environment and folder, the same stop signal; all
    polled. Supervisord has no dependency order or readiness notion: it starts all
    programs at once (after its first 1 s main-loop tick, see below).
  - *NAME alone*: each service's own start time; the slowest is the yardstick of the
    1.2x aim.
  - The alternatives run exactly the daemon's commands: argv, environment, working folder,
    user and stop signal come from coursestack's own `Daemon.build()` / `launch_spec()`
    (run in the daemon's interpreter), and were checked against `/proc/PID/cmdline`,
    `cwd`, `environ` and uid of the services of a running `coursestack up`: identical.
  - {args.warmup} unmeasured warm-up round, then {args.rounds} rounds; the order of the
    variants rotates every round. Median and min.
- **Cold start**: `coursestack up` on a fresh state folder (secrets, `initdb`, role and
  database, seeding, then the rest), {args.cold} runs, median.
- The machine is shared with other work (other engineers' test runs and several other
  coursestack instances were running during this run; see the load averages), so single
  runs vary; the medians are the figures.

## Warm start to all ready

{startup_text}
{idle_text}
## Notes

- supervisord spawns its programs only after the first tick of its main loop, about 1 s
  after it starts (visible in its log: "supervisord started" then "spawned" ~1.0 s later);
  that second is in its figure, as it is in real use.

Reproduce: `python bench/bench_startup.py` (about 4-6 minutes; `--skip-idle` for start-up
only; `python bench/bench_idle.py` for the idle part alone).
"""


if __name__ == "__main__":
    sys.exit(main())
