"""How fast /api/health answers while 8 threads guess the dashboard password.

The attack of issue 9: 8 threads post wrong passwords as fast as they can, each with a
new `X-Forwarded-For` (so a per-address limit never holds them back). Side by side:
this tree (argon2 in worker threads, at most 2 at once; back-off per device; forwarded
headers ignored) and a baseline commit (`--baseline`, default the commit before the
change: argon2 on the event loop, a per-address limit that trusted X-Forwarded-For).

For each: a daemon of a one-service course (a `command` service) with a password set;
`--probes` sequential GET /api/health idle, then for `--seconds` while the threads guess. It
reports the median and 95th percentile of the health latency, and how many guesses were
answered in that time, and how many of them were really checked (401) rather than
refused at once (429).

    python bench/bench_login.py [--probes 200] [--baseline REF] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "42a0382"  # the commit before issue 9's web half
COURSE = """[course]
name = "bench-login"

[services.web]
kind = "command"
command = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
web = true
port = 18590
probe = { type = "http", path = "/" }
"""
PASSWORD = "a long enough bench password"


def coursestack(src: Path, home: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": str(src), "COURSESTACK_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "coursestack", *args],
        env=env,
        text=True,
        input=stdin,
        capture_output=True,
        check=True,
        timeout=300,
    )
    return done.stdout


def latencies(url: str, count: int, seconds: float = 0.0) -> list[float]:
    """`count` health answers' latencies in ms (and go on for at least `seconds`)."""
    found: list[float] = []
    until = time.monotonic() + seconds
    with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
        while len(found) < count or time.monotonic() < until:
            started = time.perf_counter()
            client.get("/api/health").raise_for_status()
            found.append((time.perf_counter() - started) * 1000)
    return found


def guesser(
    url: str, stop: threading.Event, tally: dict[int, int], lock: threading.Lock, offset: int
) -> None:
    with httpx.Client(base_url=url, trust_env=False, timeout=120) as client:
        page = client.get("/login")
        found = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert found
        sent = 0
        while not stop.is_set():
            sent += 1
            response = client.post(
                "/login",
                data={"login_csrf": found.group(1), "next": "/", "secret": f"wrong {sent}"},
                headers={"X-Forwarded-For": f"10.{offset}.{sent // 250 % 250}.{sent % 250}"},
            )
            with lock:
                tally[response.status_code] = tally.get(response.status_code, 0) + 1


def measure(src: Path, folder: Path, probes: int, seconds: float) -> dict[str, Any]:
    home = folder / "home"
    home.mkdir(parents=True)
    spec = folder / "course.toml"
    spec.write_text(COURSE)
    state = folder / "state"
    coursestack(src, home, "up", str(spec), "--state", str(state))
    try:
        coursestack(src, home, "passwd", "--state", str(state), "--stdin", stdin=PASSWORD + "\n")
        url = json.loads((state / "run" / "daemon.json").read_text())["url"]
        latencies(url, 20)  # warm up
        idle = latencies(url, probes)
        stop, lock, tally = threading.Event(), threading.Lock(), {}
        threads = [
            threading.Thread(target=guesser, args=(url, stop, tally, lock, index))
            for index in range(8)
        ]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        with lock:
            tally.clear()
        started = time.monotonic()
        loaded = latencies(url, 20, seconds)
        elapsed = time.monotonic() - started
        with lock:
            counted = dict(tally)
        stop.set()
        for thread in threads:
            thread.join(120)
    finally:
        coursestack(src, home, "down", "--state", str(state))
    return {"idle": idle, "loaded": loaded, "tally": counted, "seconds": elapsed}


def summary(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.95) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=200, help="idle health probes")
    parser.add_argument(
        "--seconds",
        type=float,
        default=20.0,
        help="how long to probe health while the threads guess",
    )
    parser.add_argument("--baseline", default=DEFAULT_BASELINE)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-login-", dir="/tmp"))
    os.chmod(scratch, 0o755)
    try:
        baseline_src = scratch / "baseline"
        baseline_src.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", options.baseline, "src"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(baseline_src)], input=archive, check=True)
        results = {
            "this tree": measure(ROOT / "src", scratch / "this", options.probes, options.seconds),
            f"baseline {options.baseline}": measure(
                baseline_src / "src", scratch / "base", options.probes, options.seconds
            ),
        }
    finally:
        if not options.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    lines = [
        "| code | health idle p50 / p95 (ms) | health under 8 guessing threads p50 / "
        "p95 (ms) | guesses answered / s | checked (401) in that time |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, result in results.items():
        idle, loaded = summary(result["idle"]), summary(result["loaded"])
        answered = sum(result["tally"].values())
        lines.append(
            f"| {name} | {idle[0]:.1f} / {idle[1]:.1f} | {loaded[0]:.1f} / "
            f"{loaded[1]:.1f} | {answered / result['seconds']:.0f} | "
            f"{result['tally'].get(401, 0)} |"
        )
    ours, base = (summary(r["loaded"])[0] for r in results.values())
    lines.append("")
    lines.append(f"Health latency under attack, this tree / baseline: {ours / base:.3f}x (p50).")
    report = "\n".join(lines)
    print(report)
    if options.markdown:
        options.markdown.write_text(
            "# Benchmark: logging in under a password-guessing flood\n\n"
            "Made by `python bench/bench_login.py` (see its docstring). One machine, "
            "2 cores shared with other work: read the ratios, not the absolute figures.\n\n"
            + report
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
