"""Recovery after `kill -9`, coursestack vs supervisord running the same PostgreSQL.

    python bench/bench_recovery.py [--kills 10] [--rounds 3]

- *service*: a kill storm: PostgreSQL's postmaster gets SIGKILL `--kills` times, each
  2-8 s (seeded random) after it answered again; the outage of each kill is the time
  until a real login + `SELECT 1` succeeds again (min/median/max).
- *supervisor*: the supervising process itself gets SIGKILL. coursestack: the kernel stops
  the services (parent-death signal), then `coursestack up` is timed to PostgreSQL ready.
  supervisord: it is started again with the same config, timed to PostgreSQL ready under
  its management; whether the old PostgreSQL was left running is reported.
supervisord runs exactly the postmaster command line, environment and user that
coursestack's daemon uses (read from /proc of the running service).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

STABLE = 2.0  # past both supervisors' "ran well" period (stable_after / startsecs: 1 s)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coursestack", *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "COURSESTACK_HOME": str(home)},
    )


def pg_ok(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=1) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def until(check: Any, timeout: float = 120.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError
        time.sleep(0.01)
    return time.perf_counter() - started


def postmaster(state: Path, home: Path) -> dict[str, Any]:
    data = json.loads(cli(home, "status", "--json", "--state", str(state)).stdout)
    service: dict[str, Any] = next(s for s in data["services"] if s["name"] == "postgres")
    return service


def supervisord_conf(
    folder: Path, command: list[str], env: dict[str, str], cwd: str, user: str
) -> Path:
    environment = ",".join(f'{k}="{v}"' for k, v in env.items() if '"' not in v and "%" not in v)
    conf = folder / "supervisord.conf"
    conf.write_text(
        "\n".join(
            [
                "[supervisord]",
                "nodaemon=true",
                f"logfile={folder}/supervisord.log",
                f"pidfile={folder}/supervisord.pid",
                "user=root",
                "[unix_http_server]",
                f"file={folder}/supervisor.sock",
                "[rpcinterface:supervisor]",
                "supervisor.rpcinterface_factory=supervisor.rpcinterface:make_main_rpcinterface",
                "[program:postgres]",
                "command=" + " ".join(command),
                f"directory={cwd}",
                f"user={user}",
                f"environment={environment}",
                "autorestart=true",
                "startsecs=1",
                "stopsignal=INT",
                f"stdout_logfile={folder}/postgres.log",
                "redirect_stderr=true",
                "",
            ]
        )
    )
    return conf


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kills", type=int, default=10)
    options = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-recovery-"))
    os.chmod(base, 0o755)
    home, state = base / "home", base / "state"
    cli(home, "up", "--state", str(state), "--only", "postgres")

    def current_url() -> str:
        """Where PostgreSQL is now (a port taken meanwhile by another program moves it)."""
        connections = json.loads((state / "connections.json").read_text())
        return str(connections["services"]["postgres"]["url"])

    url = current_url()
    ours_daemon: list[float] = []
    try:
        ours_service, ours_relaunch = kill_storm(
            lambda: int(postmaster(state, home)["pid"]), url, options.kills, "coursestack"
        )
        for _ in range(options.rounds):
            time.sleep(STABLE)
            daemon_pid = json.loads((state / "run" / "daemon.json").read_text())["pid"]
            old = postmaster(state, home)["pid"]
            os.kill(daemon_pid, signal.SIGKILL)
            until(
                lambda o=old: (
                    not psutil.pid_exists(o) or psutil.Process(o).status() == psutil.STATUS_ZOMBIE
                ),
                60,
            )
            started = time.perf_counter()
            cli(home, "up", "--state", str(state), "--only", "postgres")
            url = current_url()
            until(lambda u=url: pg_ok(u))
            ours_daemon.append(time.perf_counter() - started)
            print(f"coursestack: daemon {ours_daemon[-1]:.2f} s", file=sys.stderr)
        process = psutil.Process(postmaster(state, home)["pid"])
        command, env = process.cmdline(), process.environ()
        cwd, user = process.cwd(), process.username()
    finally:
        cli(home, "down", "--state", str(state))
    theirs_daemon: list[float] = []
    orphaned = 0
    folder = base / "supervisord"
    folder.mkdir()
    conf = supervisord_conf(folder, command, env, cwd, user)
    supervisord = shutil.which("supervisord") or "supervisord"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    runner = subprocess.Popen([supervisord, "-n", "-c", str(conf)], **quiet)  # type: ignore[call-overload]
    try:
        until(lambda: pg_ok(url))

        def their_postmaster() -> int:
            return next(
                p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == command
            )

        theirs_service, theirs_relaunch = kill_storm(
            their_postmaster, url, options.kills, "supervisord"
        )
        for _ in range(options.rounds):
            time.sleep(STABLE)
            runner.kill()
            runner.wait()
            time.sleep(0.5)
            left = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == command]
            if left:
                orphaned += 1
                for leftover in left:  # it would block the new supervisord's postgres
                    leftover.send_signal(signal.SIGINT)
                    leftover.wait(30)
            started = time.perf_counter()
            runner = subprocess.Popen([supervisord, "-n", "-c", str(conf)], **quiet)  # type: ignore[call-overload]
            until(lambda: pg_ok(url))
            theirs_daemon.append(time.perf_counter() - started)
            print(
                f"supervisord: daemon {theirs_daemon[-1]:.2f} s (orphans so far: {orphaned})",
                file=sys.stderr,
            )
    finally:
        runner.send_signal(signal.SIGTERM)
        runner.wait(60)
    report(
        ours_service,
        ours_daemon,
        theirs_service,
        theirs_daemon,
        orphaned,
        options.rounds,
        ours_relaunch,
        theirs_relaunch,
    )


def kill_storm(victim: Any, url: str, kills: int, who: str) -> tuple[list[float], list[float]]:
    """SIGKILL the postmaster `kills` times, 2-8 s after it last answered. Returns the
    outages (to a login) and the supervisor's part of them: until a new postmaster runs
    (the rest is PostgreSQL's crash recovery, the same under any supervisor)."""
    pause = random.Random(10)  # the same pauses for both supervisors
    outages, relaunches = [], []
    for number in range(kills):
        time.sleep(pause.uniform(2.0, 8.0))
        old = psutil.Process(victim())
        command = old.cmdline()
        killed = time.perf_counter()
        old.kill()
        until(
            lambda c=command, o=old.pid: any(
                p.info["cmdline"] == c and p.pid != o for p in psutil.process_iter(["cmdline"])
            )
        )
        relaunches.append(time.perf_counter() - killed)
        until(lambda: pg_ok(url))
        outages.append(time.perf_counter() - killed)
        print(
            f"{who}: kill {number + 1}: relaunched after {relaunches[-1]:.2f} s, "
            f"outage {outages[-1]:.2f} s",
            file=sys.stderr,
        )
    return outages, relaunches


def report(
    ours_service: list[float],
    ours_daemon: list[float],
    theirs_service: list[float],
    theirs_daemon: list[float],
    orphaned: int,
    rounds: int,
    ours_relaunch: list[float],
    theirs_relaunch: list[float],
) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    def spread(values: list[float]) -> str:
        return f"{min(values):.2f} / {med(values):.2f} / {max(values):.2f}"

    print(
        "\n".join(
            [
                f"Outage per `kill -9` of the postmaster, {len(ours_service)} kills 2-8 s apart "
                "(seconds to a real login + SELECT 1; min / median / max):",
                "",
                "| | coursestack | supervisord | ratio of medians |",
                "| --- | ---: | ---: | ---: |",
                f"| outage per kill | {spread(ours_service)} | {spread(theirs_service)} | "
                f"{med(ours_service) / med(theirs_service):.2f}x |",
                "| of which the supervisor's part: kill to a new postmaster | "
                f"{spread(ours_relaunch)} | {spread(theirs_relaunch)} | "
                f"{med(ours_relaunch) / med(theirs_relaunch):.2f}x |",
                "",
                f"Recovery after `kill -9` of the supervisor itself, median of {rounds} rounds:",
                "",
                "| fault | coursestack | supervisord | ratio |",
                "| --- | ---: | ---: | ---: |",
                f"| `kill -9` of the supervisor, then start it again | {med(ours_daemon):.2f} | "
                f"{med(theirs_daemon):.2f} | {med(ours_daemon) / med(theirs_daemon):.2f}x |",
                "",
                f"After `kill -9` of supervisord, its PostgreSQL kept running unmanaged in "
                f"{orphaned} of {rounds} rounds (the benchmark stopped it by hand so that a new "
                "supervisord could start its own); coursestack's services were stopped by the "
                "kernel every time, and `up` cleaned up and started them.",
            ]
        )
    )


if __name__ == "__main__":
    main()
