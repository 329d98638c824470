"""Benchmark: start-up of the sample course, coursestack vs. the same programs started by hand
vs. supervisord, plus cold start and (via bench_idle.py) the daemon's idle cost.

Everything runs in one isolated COURSESTACK_HOME under /tmp (a 0755 folder) on the embedded
sample course: a real PostgreSQL (pgserver wheel) and a real JupyterLab that depends on it.

Warm start (data already initialised), each variant timed from the command to *real*
readiness -- PostgreSQL accepts a password connection as its superuser and answers
`SELECT 1`; Jupyter answers 200 on `/s/jupyter/api/status?token=...`:

- coursestack      wall time of `coursestack up --state DIR` (it returns when all are
                   ready); readiness is re-checked by this script right after it returns.
- one-by-one       postgres started, polled until ready, then jupyter, polled until ready.
- supervisord      `supervisord -n -c CONF` running the same two programs; both polled.
- postgres alone / jupyter alone: each service's own start time; the slower one is the
                   yardstick of the aim "warm start within 1.2x the slowest service".

The alternatives run the SAME argv, environment, working folder, user (`coursestack`) and
stop signal as the daemon: they are taken from coursestack's own `Daemon.build()` +
`launch_spec()` (run under the interpreter of the `coursestack` script, so even argv[0]
matches), and checked once against /proc/PID/cmdline of the daemon's running services.
Variants are alternated (the order rotates every round); median and min are reported.

Cold start: a fresh state folder, `coursestack up` including copying the course, initdb,
role/database creation and seeding; median of --cold runs.

    python bench/bench_startup.py                       # ~4 minutes with the idle part
    python bench/bench_startup.py --rounds 5 --cold 3 --markdown docs/benchmarks-core.md
    python bench/bench_startup.py --skip-idle           # start-up only
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg

LOCALHOST = "127.0.0.1"
POLL = 0.02  # seconds between readiness polls of this script (coursestack's own: 0.05)
BIN = Path(sys.executable).parent


# -- small helpers ---------------------------------------------------------------------------


def tool(name: str) -> str:
    """A console script of this Python (not a pyenv shim, whose bash costs ~0.1 s a call)."""
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
    deadline = time.monotonic() + timeout
    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    while any(running(pid) for pid in pids):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} still running after {timeout:g} s")
        time.sleep(0.05)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- readiness, as a user sees it -----------------------------------------------------------


@dataclass
class Facts:
    """Where the sample course's services are and what proves they are ready."""

    pg_port: int
    pg_password: str
    jupyter_port: int
    jupyter_token: str
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def jupyter_url(self) -> str:
        return (f"http://{LOCALHOST}:{self.jupyter_port}/s/jupyter/api/status"
                f"?token={self.jupyter_token}")

    @property
    def ports(self) -> list[int]:
        return [self.pg_port, self.jupyter_port]


# No keep-alive: every poll is a fresh connection, as a browser's first request would be.
_http = httpx.Client(timeout=2.0, trust_env=False,
                     limits=httpx.Limits(max_keepalive_connections=0))


def pg_ready(facts: Facts) -> bool:
    """A real connection (scram-sha-256 password) and SELECT 1."""
    try:
        with psycopg.connect(host=LOCALHOST, port=facts.pg_port, user="postgres",
                             password=facts.pg_password, dbname="postgres",
                             connect_timeout=2) as connection:
            row = connection.execute("SELECT 1").fetchone()
            return row == (1,)
    except psycopg.Error:
        return False


def jupyter_ready(facts: Facts) -> bool:
    try:
        return _http.get(facts.jupyter_url).status_code == 200
    except httpx.HTTPError:
        return False


def poll_until(check: Callable[[], bool], timeout: float = 120.0,
               alive: Callable[[], bool] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if alive is not None and not alive():
            raise RuntimeError("a process exited before it was ready (see its log)")
        if time.monotonic() > deadline:
            raise RuntimeError(f"not ready after {timeout:g} s")
        time.sleep(POLL)


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
        self._children: list[subprocess.Popen[bytes]] = []

    def state(self, name: str) -> Path:
        path = self.root / name
        if path not in self.states:
            self.states.append(path)
        return path

    def cs(self, *args: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.coursestack, *args], env=self.env, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def up(self, state: Path) -> float:
        """Wall seconds of `coursestack up --state DIR` (fails loudly if it fails)."""
        start = time.perf_counter()
        result = self.cs("up", "--state", str(state))
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"coursestack up failed ({result.returncode}):\n"
                               f"{result.stdout}\n{result.stderr}")
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

    def facts_from_state(self, state: Path) -> Facts:
        """Ports and secrets as the daemon recorded them (for checking its readiness)."""
        ports = json.loads((state / "run" / "ports.json").read_text())
        secrets = json.loads((state / "run" / "secrets.json").read_text())
        return Facts(ports["postgres"], secrets["postgres.superuser-password"],
                     ports["jupyter"], secrets["jupyter.token"])

    def launch_facts(self, state: Path) -> Facts:
        """coursestack's own LaunchSpecs for this state folder (daemon not running).

        Runs Daemon.build() + launch_spec() in the interpreter the daemon itself uses, so
        argv[0], environment, cwd, user and stop signal are exactly what the daemon runs.
        """
        code = r"""
import json, sys
from pathlib import Path
from coursestack.daemon import Daemon
from coursestack.state import StateFolder
d = Daemon(StateFolder(Path(sys.argv[1])))
d.build()
out = {"specs": {}}
for name, unit in d.units.items():
    s = unit.launch_spec()
    out["specs"][name] = {"argv": list(s.argv), "env": dict(s.env), "cwd": str(s.cwd),
                          "uid": s.run_as.uid if s.run_as else None,
                          "gid": s.run_as.gid if s.run_as else None,
                          "user": s.run_as.name if s.run_as else None,
                          "stop_signal": int(s.stop_signal), "port": unit.port}
out["pg_password"] = d.units["postgres"].superuser_password
out["token"] = d.units["jupyter"].token
print(json.dumps(out))
"""
        result = subprocess.run([self.python, "-c", code, str(state)], env=self.env,
                                capture_output=True, text=True, check=True)
        data = json.loads(result.stdout)
        specs = data["specs"]
        return Facts(specs["postgres"]["port"], data["pg_password"], specs["jupyter"]["port"],
                     data["token"], specs)

    # -- processes this script starts itself ---------------------------------------------------

    def spawn(self, spec: dict[str, Any], log_name: str) -> subprocess.Popen[bytes]:
        """Start one service exactly as coursestack's OSLauncher does."""
        log_fd = os.open(self.logs / log_name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        kwargs: dict[str, Any] = {}
        if spec["uid"] is not None:
            kwargs.update(user=spec["uid"], group=spec["gid"], extra_groups=[])
        stop_signal = spec["stop_signal"]

        def parent_death_signal() -> None:
            ctypes.CDLL(None, use_errno=True).prctl(1, stop_signal, 0, 0, 0)

        try:
            process = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"],
                                       stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                                       start_new_session=True, preexec_fn=parent_death_signal,
                                       **kwargs)
        finally:
            os.close(log_fd)
        self._children.append(process)
        return process

    def start_supervisord(self, conf: Path) -> subprocess.Popen[bytes]:
        env = {"PATH": self.env.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        log_fd = os.open(self.logs / "supervisord.out", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            process = subprocess.Popen([tool("supervisord"), "-n", "-c", str(conf)], env=env,
                                       cwd=self.root, stdin=subprocess.DEVNULL, stdout=log_fd,
                                       stderr=log_fd, start_new_session=True)
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

    def cleanup(self) -> None:
        for process in list(self._children):
            self.stop(process, signal.SIGTERM, grace=15)
        for state in self.states:
            with contextlib.suppress(Exception):
                self.down(state)
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def supervisord_conf(ws: Workspace, facts: Facts, name: str = "supervisord") -> Path:
    """A supervisord.conf running the daemon's two commands (user=coursestack)."""

    def esc(text: str) -> str:
        return text.replace("%", "%%")

    lines = ["[supervisord]", "nodaemon=true", "user=root",
             f"logfile={ws.logs / (name + '.log')}", f"pidfile={ws.root / (name + '.pid')}",
             f"childlogdir={ws.logs}", ""]
    for priority, service in enumerate(("postgres", "jupyter"), start=1):
        spec = facts.specs[service]
        environment = ",".join(f'{key}="{esc(value)}"' for key, value in spec["env"].items())
        stop = {int(signal.SIGINT): "INT", int(signal.SIGTERM): "TERM"}[spec["stop_signal"]]
        lines += [f"[program:{service}]",
                  "command=" + esc(" ".join(shlex.quote(a) for a in spec["argv"])),
                  f"directory={spec['cwd']}", f"user={spec['user']}",
                  f"environment={environment}", f"priority={priority}",
                  "autostart=true", "autorestart=true", f"stopsignal={stop}",
                  "stopwaitsecs=30", "stopasgroup=true", "killasgroup=true",
                  "redirect_stderr=true", f"stdout_logfile={ws.logs / (name + '-' + service)}.log",
                  ""]
    conf = ws.root / f"{name}.conf"
    conf.write_text("\n".join(lines), encoding="utf-8")
    return conf


@contextlib.contextmanager
def supervisord_running(ws: Workspace, facts: Facts) -> Iterator[subprocess.Popen[bytes]]:
    process = ws.start_supervisord(supervisord_conf(ws, facts))
    try:
        yield process
    finally:
        # SIGTERM: supervisord stops its programs (reverse priority, their stop signals).
        ws.stop(process, signal.SIGTERM, grace=60)


# -- the variants ------------------------------------------------------------------------------


def run_coursestack(ws: Workspace, state: Path) -> dict[str, float]:
    """`coursestack up` to all ready; timeline from the daemon's events.jsonl."""
    events_file = state / "logs" / "events.jsonl"
    offset = events_file.stat().st_size if events_file.exists() else 0
    wall0 = time.time()
    try:
        seconds = ws.up(state)
        facts = ws.facts_from_state(state)
        if not (pg_ready(facts) and jupyter_ready(facts)):
            raise RuntimeError("coursestack up returned but a service is not really ready")
    finally:
        ws.down(state)
    result = {"total": seconds}
    with open(events_file, encoding="utf-8") as handle:
        handle.seek(offset)
        events = [json.loads(line) for line in handle if line.strip()]

    def first(service: str, state_name: str, detail: str | None = None) -> float | None:
        for event in events:
            if event["service"] == service and event["state"] == state_name and (
                    detail is None or event["detail"] == detail):
                return float(event["time"])
        return None

    first_event = min(float(e["time"]) for e in events)
    pg_prep, pg_ready_at = first("postgres", "starting", "preparing"), first("postgres", "ready")
    ju_prep, ju_ready_at = first("jupyter", "starting", "preparing"), first("jupyter", "ready")
    if None not in (pg_prep, pg_ready_at, ju_prep, ju_ready_at):
        assert pg_prep and pg_ready_at and ju_prep and ju_ready_at
        result.update(to_daemon=first_event - wall0, postgres=pg_ready_at - pg_prep,
                      jupyter=ju_ready_at - ju_prep, after=wall0 + seconds - ju_ready_at)
    return result


def run_one_by_one(ws: Workspace, state: Path) -> dict[str, float]:
    facts = ws.launch_facts(state)
    postgres = jupyter = None
    try:
        start = time.perf_counter()
        postgres = ws.spawn(facts.specs["postgres"], "seq-postgres.log")
        poll_until(lambda: pg_ready(facts), alive=lambda: postgres.poll() is None)
        pg_at = time.perf_counter()
        jupyter = ws.spawn(facts.specs["jupyter"], "seq-jupyter.log")
        poll_until(lambda: jupyter_ready(facts), alive=lambda: jupyter.poll() is None)
        end = time.perf_counter()
    finally:
        if jupyter is not None:
            ws.stop(jupyter, facts.specs["jupyter"]["stop_signal"])
        if postgres is not None:
            ws.stop(postgres, facts.specs["postgres"]["stop_signal"])
    return {"total": end - start, "postgres": pg_at - start, "jupyter": end - pg_at}


def run_alone(ws: Workspace, state: Path, service: str) -> dict[str, float]:
    facts = ws.launch_facts(state)
    check = {"postgres": pg_ready, "jupyter": jupyter_ready}[service]
    process = None
    try:
        start = time.perf_counter()
        process = ws.spawn(facts.specs[service], f"alone-{service}.log")
        poll_until(lambda: check(facts), alive=lambda: process.poll() is None)
        end = time.perf_counter()
    finally:
        if process is not None:
            ws.stop(process, facts.specs[service]["stop_signal"])
    return {"total": end - start}


def run_supervisord(ws: Workspace, state: Path) -> dict[str, float]:
    facts = ws.launch_facts(state)
    start = time.perf_counter()
    with supervisord_running(ws, facts) as process:
        pending = {"postgres": pg_ready, "jupyter": jupyter_ready}
        done: dict[str, float] = {}
        deadline = time.monotonic() + 120
        while pending:
            for name, check in list(pending.items()):
                if check(facts):
                    done[name] = time.perf_counter() - start
                    del pending[name]
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("supervisord: services not ready (see bench-logs)")
            if pending:
                time.sleep(POLL)
        end = time.perf_counter()
    return {"total": end - start, **done}


def check_same_commands(ws: Workspace, state: Path) -> dict[str, bool]:
    """Does the daemon run exactly the argv this script uses for the alternatives?"""
    import psutil

    facts = ws.launch_facts(state)
    ws.up(state)
    try:
        services = {s["name"]: s for s in ws.status(state)["services"]}
        same = {}
        for name, spec in facts.specs.items():
            process = psutil.Process(int(services[name]["pid"]))
            environ = process.environ()
            # PostgreSQL changes into its data folder (-D) itself, so its cwd is that.
            cwd_ok = process.cwd() == spec["cwd"] or (
                name == "postgres" and process.cwd() == spec["argv"][2])
            same[name] = (process.cmdline() == spec["argv"] and cwd_ok
                          and process.uids().real == spec["uid"]
                          and all(environ.get(k) == v for k, v in spec["env"].items()))
    finally:
        ws.down(state)
    return same


VARIANTS: dict[str, Callable[[Workspace, Path], dict[str, float]]] = {
    "coursestack": run_coursestack,
    "one-by-one": run_one_by_one,
    "supervisord": run_supervisord,
    "postgres alone": lambda ws, state: run_alone(ws, state, "postgres"),
    "jupyter alone": lambda ws, state: run_alone(ws, state, "jupyter"),
}


def attempt(label: str, run: Callable[[], dict[str, float]],
            tries: int = 3) -> dict[str, float]:
    """Run one measurement; retry if it failed (e.g. another instance on this shared
    machine took the port chosen a moment before). Failures are printed, never hidden."""
    for number in range(1, tries + 1):
        try:
            return run()
        except RuntimeError as error:
            print(f"  {label}: attempt {number} failed: {str(error).splitlines()[0]}",
                  flush=True)
            if number == tries:
                raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


def warm_start(ws: Workspace, rounds: int, warmup: int) -> dict[str, list[dict[str, float]]]:
    state = ws.state("warm")
    print("first up (initdb, not measured) ...", flush=True)
    ws.up(state)
    ws.down(state)
    same = check_same_commands(ws, state)
    print(f"daemon runs the same commands as the alternatives: {same}", flush=True)
    if not all(same.values()):
        raise RuntimeError(f"argv/env/cwd/user differ from the daemon's: {same}")
    names = list(VARIANTS)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_number in range(warmup + rounds):
        order = names[round_number % len(names):] + names[:round_number % len(names)]
        measured = round_number >= warmup
        for name in order:
            time.sleep(0.5)  # let the previous variant's shutdown settle
            outcome = attempt(name, lambda name=name: VARIANTS[name](ws, state))
            if measured:
                results[name].append(outcome)
        label = f"round {round_number - warmup + 1}/{rounds}" if measured else "warm-up round"
        print(f"{label}: " + ", ".join(
            f"{name} {results[name][-1]['total']:.2f}s" if measured else name
            for name in order), flush=True)
    return results


def run_cold(ws: Workspace, state: Path) -> dict[str, float]:
    """First `up` of a fresh state folder (initdb, role, seed) to all ready."""
    shutil.rmtree(state, ignore_errors=True)
    events_file = state / "logs" / "events.jsonl"
    try:
        seconds = ws.up(state)
        facts = ws.facts_from_state(state)
        if not (pg_ready(facts) and jupyter_ready(facts)):
            raise RuntimeError("cold up returned but a service is not really ready")
    finally:
        ws.down(state)
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line]
    times = {(e["service"], e["state"], e["detail"]): float(e["time"]) for e in events}
    initdb = (times.get(("postgres", "starting", "waiting until it answers"), 0.0)
              - times.get(("postgres", "starting", "preparing"), 0.0))
    postgres = (times.get(("postgres", "ready", ""), 0.0)
                - times.get(("postgres", "starting", "preparing"), 0.0))
    shutil.rmtree(state, ignore_errors=True)
    return {"total": seconds, "initdb": initdb, "postgres": postgres}


def cold_start(ws: Workspace, runs: int) -> list[dict[str, float]]:
    results = []
    for n in range(runs):
        state = ws.state(f"cold{n}")
        outcome = attempt("cold", lambda state=state: run_cold(ws, state))
        results.append(outcome)
        print(f"cold {n + 1}/{runs}: {outcome['total']:.2f}s (postgres prepare incl. initdb "
              f"{outcome['initdb']:.2f}s, postgres to ready {outcome['postgres']:.2f}s)",
              flush=True)
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
    for package in ("coursestack", "jupyterlab", "jupyter_server", "supervisor", "psycopg",
                    "pgserver"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[package] = version(package)
    postgres = subprocess.run(
        [str(Path(__import__("pgserver").__file__).parent / "pginstall" / "bin" / "postgres"),
         "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return {"date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "nproc": subprocess.run(["nproc"], capture_output=True, text=True,
                                    check=False).stdout.strip() or str(os.cpu_count()),
            "cpu": model or platform.processor(), "memory": memory,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "postgres": postgres,
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def startup_markdown(warm: dict[str, list[dict[str, float]]], cold: list[dict[str, float]],
                     aim: float = 1.2) -> tuple[str, dict[str, Any]]:
    totals = {name: [r["total"] for r in runs] for name, runs in warm.items()}
    med = {name: median(values) for name, values in totals.items()}
    best = {name: min(values) for name, values in totals.items() if values}
    slowest_name = max(("postgres alone", "jupyter alone"), key=lambda n: med[n])
    slowest = med[slowest_name]
    ratio = med["coursestack"] / slowest
    rows = ["| variant | median (s) | min (s) | median / slowest service alone | "
            "coursestack / this |", "| --- | ---: | ---: | ---: | ---: |"]
    for name in warm:
        rows.append(f"| {name} | {med[name]:.2f} | {best[name]:.2f} | "
                    f"{med[name] / slowest:.2f}x | {med['coursestack'] / med[name]:.2f}x |")
    parts = warm["coursestack"]
    breakdown = ""
    if all("to_daemon" in p for p in parts):
        def m(key: str) -> float:
            return median([p[key] for p in parts])

        breakdown = (
            "\nWhere coursestack's warm start goes (medians, from the daemon's events.jsonl):\n\n"
            "| phase | seconds |\n| --- | ---: |\n"
            f"| command -> daemon's first event (CLI start, daemon spawn, imports, API up) "
            f"| {m('to_daemon'):.2f} |\n"
            f"| postgres: prepare -> ready (incl. role/seed check) | {m('postgres'):.2f} |\n"
            f"| jupyter: prepare (after postgres ready) -> ready | {m('jupyter'):.2f} |\n"
            f"| jupyter ready -> `up` returns (CLI polls every 0.1 s) | {m('after'):.2f} |\n")
    cold_totals = [c["total"] for c in cold]
    cold_text = ""
    if cold:
        cold_text = (
            f"\n### Cold start (first `up` of a fresh state folder)\n\n"
            f"| runs | median (s) | min (s) | postgres prepare incl. initdb, median (s) |\n"
            f"| ---: | ---: | ---: | ---: |\n"
            f"| {len(cold)} | {median(cold_totals):.2f} | {min(cold_totals):.2f} | "
            f"{median([c['initdb'] for c in cold]):.2f} |\n\n"
            f"Cold start / warm start (coursestack medians): "
            f"{median(cold_totals) / med['coursestack']:.2f}x.\n")
    met = ratio <= aim
    text = "\n".join(rows) + "\n" + breakdown + (
        f"\n**coursestack warm start = {ratio:.2f}x the slowest service's own start "
        f"({slowest_name}, median {slowest:.2f} s); aim <= {aim}x: "
        f"{'met' if met else 'NOT met'}.** "
        f"coursestack vs. one-by-one: {med['coursestack'] / med['one-by-one']:.2f}x; "
        f"vs. supervisord: {med['coursestack'] / med['supervisord']:.2f}x.\n") + cold_text
    summary = {"median": med, "min": best, "slowest": slowest_name, "ratio": ratio, "met": met,
               "cold_median": median(cold_totals) if cold else None}
    return text, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    facts = machine_facts()
    ws = Workspace(keep=args.keep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"workspace {ws.root}; {facts['nproc']} CPUs ({facts['cpu']}); load {facts['load']}",
          flush=True)
    try:
        warm = warm_start(ws, args.rounds, args.warmup)
        cold = cold_start(ws, args.cold)
        idle_text = ""
        idle_summary: dict[str, Any] = {}
        if not args.skip_idle:
            import bench_idle

            idle = bench_idle.measure(ws, ws.state("warm"), args.settle, args.sample)
            idle_text, idle_summary = bench_idle.idle_markdown(idle, args.settle, args.sample)
    finally:
        ws.cleanup()
    facts["load after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    startup_text, summary = startup_markdown(warm, cold)
    print()
    print(startup_text)
    if idle_text:
        print(idle_text)
    if args.markdown:
        args.markdown.write_text(
            document(facts, args, startup_text, summary, idle_text, idle_summary),
            encoding="utf-8")
        print(f"wrote {args.markdown}")
    return 0


def document(facts: dict[str, str], args: argparse.Namespace, startup_text: str,
             summary: dict[str, Any], idle_text: str, idle_summary: dict[str, Any]) -> str:
    machine = "\n".join(f"| {key} | {value} |" for key, value in facts.items())
    aims = [f"- Warm start within 1.2x of the slowest service's own start: "
            f"**{'met' if summary['met'] else 'not met'}** ({summary['ratio']:.2f}x)."]
    if idle_summary:
        rss_met = "met" if idle_summary["rss_met"] else "not met"
        aims.append(f"- Daemon RSS under 60 MB: **{rss_met}** ({idle_summary['rss']:.1f} MB "
                    f"mean, {idle_summary['rss_max']:.1f} MB max).")
        aims.append(f"- Daemon idle CPU under 1% of a core: **"
                    f"{'met' if idle_summary['cpu_met'] else 'not met'}** "
                    f"({idle_summary['cpu']:.2f}%).")
    return f"""# Benchmarks: start-up and idle cost of the core (sample course)

Produced by `python bench/bench_startup.py --rounds {args.rounds} --cold {args.cold} \
--markdown docs/benchmarks-core.md` (the idle part is `bench/bench_idle.py`, run by the same
command). All figures come from one run on this machine:

| fact | value |
| --- | --- |
{machine}

## Aims

{chr(10).join(aims)}

## Method

- The embedded sample course: PostgreSQL from the pgserver wheel and JupyterLab, Jupyter
  `depends_on` PostgreSQL. An isolated `COURSESTACK_HOME` and state folder in a 0755 folder
  under /tmp; we run as root, so every service runs as the unprivileged user `coursestack`.
- **Ready** means really ready, checked by the benchmark itself: PostgreSQL accepts a
  scram-sha-256 password connection as its superuser over 127.0.0.1 and answers `SELECT 1`;
  Jupyter answers 200 on `/s/jupyter/api/status?token=...`. The benchmark polls every
  {POLL * 1000:.0f} ms.
- **Warm start** (data already initialised), each variant from the command to both ready:
  - *coursestack*: wall time of `coursestack up --state DIR` (the real console script, not a
    pyenv shim); it returns when every service is ready, and the benchmark then checks both
    itself (every run passed). `coursestack down` between runs is not timed.
  - *one-by-one*: postgres started, polled until ready, then jupyter started and polled.
  - *supervisord* {facts['versions'].split('supervisor ')[-1].split(',')[0]}: `supervisord -n
    -c CONF` with both programs (`user=coursestack`, same environment and folder, postgres
    stopped with SIGINT); both polled. Supervisord has no dependency order or readiness
    notion, so it starts both at once: it is the "parallel, no waiting" lower bound.
  - *postgres alone*, *jupyter alone*: each service's own start time; the slower one is the
    yardstick of the 1.2x aim.
  - The alternatives run exactly the daemon's commands: argv, environment, working folder,
    user and stop signal come from coursestack's own `Daemon.build()` / `launch_spec()`
    (in the daemon's interpreter), and were checked against `/proc/PID/cmdline`, `cwd`,
    `environ` and uid of the services of a running `coursestack up`: identical.
  - {args.warmup} unmeasured warm-up round, then {args.rounds} rounds; the variants'
    order rotates every round. Median and min.
- **Cold start**: `coursestack up` on a fresh state folder (copy of the course, secrets,
  `initdb`, role and database, seeding, then Jupyter), {args.cold} runs, median.
- **Idle**: see below.
- The machine is shared with other work (other engineers' test runs and, during this run,
  another coursestack instance on the host), so single runs vary; medians are the figures.

## Warm start to all ready

{startup_text}
{idle_text}
Reproduce: `python bench/bench_startup.py` (about 4 minutes; `--skip-idle` for start-up
only, `python bench/bench_idle.py` for the idle part alone).
"""


if __name__ == "__main__":
    sys.exit(main())
