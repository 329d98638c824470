"""Benchmark: idle CPU and memory of the coursestack daemon vs. supervisord, same programs.

After the sample course is up (coursestack: `coursestack up`; supervisord: `supervisord -n`
with the daemon's own commands for every service `up` starts, see bench_startup.py) and
all of them are really ready, wait --settle seconds, then sample for --sample seconds with psutil:

Before the settling time, the daemon serves what a user's first minute asks of it (the
dashboard page, a few seconds of the event stream, one request proxied to Jupyter through
the front door), so the web stack, the proxy and its HTTP client are loaded and counted.
Then a kept-alive request for Jupyter's `api/status` is timed through the front door
(`Host: jupyter.<instance>.localhost:<port>`) and straight to Jupyter.

- the supervising process alone (daemon pid from `coursestack status --json` -> `pid`;
  supervisord's own pid): RSS every second (mean, max), USS at the end, and CPU as
  (user + system time used) / wall time, in % of one core;
- the whole tree (supervisor + services + their children, incl. reaped ones such as the
  PostgreSQL backends the daemon's health probes open): CPU % of one core and RSS.

    python bench/bench_idle.py                 # ~1.5 minutes
    python bench/bench_idle.py --settle 10 --sample 30 --markdown /tmp/idle.md

bench_startup.py runs this too and puts the table into docs/benchmarks-core.md.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from bench_startup import Workspace, machine_facts, poll_until, supervisord_running

MB = 1024 * 1024


def _tree(pid: int) -> dict[int, psutil.Process]:
    root = psutil.Process(pid)
    found = {pid: root}
    for child in root.children(recursive=True):
        found[child.pid] = child
    return found


def _cpu(process: psutil.Process, with_children: bool) -> float:
    times = process.cpu_times()
    total = times.user + times.system
    if with_children:
        total += times.children_user + times.children_system
    return total


def sample(pid: int, seconds: float) -> dict[str, float]:
    """RSS/CPU of `pid` alone and of its process tree over `seconds`."""
    root = psutil.Process(pid)
    tree = _tree(pid)
    start_wall = time.monotonic()
    start_self = _cpu(root, with_children=False)
    start_tree = {p: _cpu(proc, with_children=True) for p, proc in tree.items()}
    rss: list[float] = []
    tree_rss: list[float] = []
    while time.monotonic() - start_wall < seconds:
        rss.append(root.memory_info().rss / MB)
        total = 0
        for proc in _tree(pid).values():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        tree_rss.append(total / MB)
        time.sleep(1.0)
    elapsed = time.monotonic() - start_wall
    used_self = _cpu(root, with_children=False) - start_self
    used_tree = 0.0
    for p, before in start_tree.items():
        with contextlib.suppress(psutil.Error):
            used_tree += _cpu(tree[p], with_children=True) - before
    uss = root.memory_full_info().uss / MB
    return {
        "rss": sum(rss) / len(rss),
        "rss_max": max(rss),
        "uss": uss,
        "threads": root.num_threads(),
        "cpu": 100 * used_self / elapsed,
        "tree_cpu": 100 * used_tree / elapsed,
        "tree_rss": sum(tree_rss) / len(tree_rss),
        "processes": len(tree),
        "seconds": elapsed,
    }


def api_latency(state: Path, count: int = 20) -> dict[str, float]:
    """Median ms of GET /api/health: a new connection each time vs. one kept-alive one
    (the CLI's `up` polls and browsers use the front door over kept-alive connections)."""
    record = json.loads((state / "run" / "daemon.json").read_text())
    url = record["url"].rstrip("/") + "/api/health"
    fresh, kept = [], []
    for _ in range(count):
        with httpx.Client(trust_env=False) as client:
            start = time.perf_counter()
            client.get(url).raise_for_status()
            fresh.append(time.perf_counter() - start)
    with httpx.Client(trust_env=False) as client:
        client.get(url)
        for _ in range(count):
            start = time.perf_counter()
            client.get(url).raise_for_status()
            kept.append(time.perf_counter() - start)
    return {
        "api_fresh_ms": 1000 * statistics.median(fresh),
        "api_kept_ms": 1000 * statistics.median(kept),
    }


def _daemon(state: Path) -> tuple[str, dict[str, str]]:
    record = json.loads((state / "run" / "daemon.json").read_text())
    return record["url"].rstrip("/"), {"Authorization": f"Bearer {record['token']}"}


def _front_door_host(base: str, client: httpx.Client, auth: dict[str, str]) -> str:
    """`jupyter.<instance>.localhost:<port>`: the front door routes by Host (web/origins.py)."""
    instance = client.get(f"{base}/api/instance", headers=auth).json()["name"]
    label = re.sub(r"[^a-z0-9-]+", "-", instance.lower()).strip("-")[:63].strip("-")
    return f"jupyter.{label or 'instance'}.localhost:{httpx.URL(base).port}"


def serve_first_minute(state: Path, jupyter_base: str) -> dict[str, float]:
    """Dashboard page, 3 s of the event stream and one proxied request; status codes."""
    base, auth = _daemon(state)
    with httpx.Client(trust_env=False, timeout=10.0) as client:
        page = client.get(f"{base}/", headers={**auth, "Accept": "text/html"})
        events = 0
        with client.stream("GET", f"{base}/api/events", headers=auth) as stream:
            began = time.monotonic()
            for _ in stream.iter_raw():
                events += 1
                if time.monotonic() - began > 3:
                    break
        host = _front_door_host(base, client, auth)
        proxied = client.get(f"{base}{jupyter_base}api/status", headers={**auth, "Host": host})
    if proxied.status_code != 200:
        raise RuntimeError(f"proxied request failed: {proxied.status_code} {proxied.text[:200]}")
    return {
        "dashboard_status": page.status_code,
        "event_chunks": events,
        "proxied_status": proxied.status_code,
    }


def proxy_latency(
    state: Path, jupyter_port: int, jupyter_base: str, token: str, count: int = 300
) -> dict[str, float]:
    """Median ms of a kept-alive GET of Jupyter's api/status: through the front door
    vs. straight to Jupyter (both with one warm-up request; rounds alternate)."""
    base, auth = _daemon(state)
    direct_url = f"http://127.0.0.1:{jupyter_port}{jupyter_base}api/status"
    with (
        httpx.Client(trust_env=False, timeout=10.0) as front,
        httpx.Client(trust_env=False, timeout=10.0) as direct,
    ):
        host = _front_door_host(base, front, auth)
        front_headers = {**auth, "Host": host}
        direct_headers = {"Authorization": f"token {token}"}
        url = f"{base}{jupyter_base}api/status"
        front.get(url, headers=front_headers).raise_for_status()
        direct.get(direct_url, headers=direct_headers).raise_for_status()
        through, straight = [], []
        for _ in range(count):
            start = time.perf_counter()
            front.get(url, headers=front_headers).raise_for_status()
            through.append(time.perf_counter() - start)
            start = time.perf_counter()
            direct.get(direct_url, headers=direct_headers).raise_for_status()
            straight.append(time.perf_counter() - start)
    # Several hundred rounds: on a shared machine one scheduling delay moves a median of 50.
    return {
        "proxy_ms": 1000 * statistics.median(through),
        "direct_ms": 1000 * statistics.median(straight),
        "proxy_count": count,
    }


_IMPORT_RSS = r"""
import importlib, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
out = {"bare": rss()}
import coursestack.daemon  # as the daemon does: keep out what it never uses
getattr(coursestack.daemon, "keep_out_unused_imports", lambda: None)()
for name in sys.argv[1:]:
    importlib.import_module(name)
out["imports"] = rss()
print(out)
"""


def import_rss(ws: Workspace) -> dict[str, float]:
    """RSS of the daemon's interpreter bare, and after importing what the daemon imports
    (its modules and the web app)."""
    # No database driver: the probes speak PostgreSQL's and MongoDB's protocols themselves.
    modules = ["coursestack.daemon", "coursestack.web.app", "coursestack.kinds"]
    result = subprocess.run(
        [ws.python, "-c", _IMPORT_RSS, *modules],
        env=ws.env,
        capture_output=True,
        text=True,
        check=True,
    )
    data = ast.literal_eval(result.stdout.strip())
    return {"python_bare": float(data["bare"]), "python_imports": float(data["imports"])}


def measure(
    ws: Workspace, state: Path, settle: float, seconds: float
) -> dict[str, dict[str, float]]:
    """Idle figures of coursestack's daemon and of supervisord running the same programs.

    `state` must have been initialised by one `coursestack up` already.
    """
    results: dict[str, dict[str, float]] = {}
    facts = ws.launch_facts(state)
    print("idle: coursestack up ...", flush=True)
    ws.up(state)
    try:
        if not facts.with_ports(ws.recorded_ports(state)).all_ready():
            raise RuntimeError("coursestack up returned but a service is not really ready")
        pid = int(ws.status(state)["pid"])
        jupyter = next(s for s in facts.services.values() if s.kind == "jupyter")
        jupyter_port = ws.recorded_ports(state).get(jupyter.name, jupyter.port)
        served = serve_first_minute(state, jupyter.base_url)
        time.sleep(settle)
        results["coursestack daemon"] = sample(pid, seconds)
        results["coursestack daemon"].update(served)
        results["coursestack daemon"].update(api_latency(state))
        results["coursestack daemon"].update(
            proxy_latency(state, int(jupyter_port), jupyter.base_url, str(jupyter.secret))
        )
    finally:
        ws.down(state)
    results["coursestack daemon"].update(import_rss(ws))
    print("idle: supervisord ...", flush=True)
    facts = ws.launch_facts(state)
    with supervisord_running(ws, facts) as process:
        poll_until(facts.all_ready, alive=lambda: process.poll() is None)
        time.sleep(settle)
        results["supervisord"] = sample(process.pid, seconds)
    return results


def idle_markdown(
    results: dict[str, dict[str, float]],
    settle: float,
    seconds: float,
    rss_aim: float = 50.0,
    cpu_aim: float = 0.5,
    proxy_aim: float = 1.5,
) -> tuple[str, dict[str, Any]]:
    rows = [
        "| supervising process | RSS mean (MB) | RSS max (MB) | USS (MB) | CPU (% of a core) "
        "| threads | whole tree CPU (%) | whole tree RSS (MB) | processes |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['rss']:.1f} | {r['rss_max']:.1f} | {r['uss']:.1f} | "
            f"{r['cpu']:.2f} | {r['threads']:.0f} | {r['tree_cpu']:.2f} | "
            f"{r['tree_rss']:.0f} | {r['processes']:.0f} |"
        )
    daemon = results["coursestack daemon"]
    summary = {
        "rss": daemon["rss"],
        "rss_max": daemon["rss_max"],
        "cpu": daemon["cpu"],
        "rss_met": daemon["rss_max"] <= rss_aim,
        "cpu_met": daemon["cpu"] <= cpu_aim,
    }
    if "proxy_ms" in daemon:
        summary["proxy_ratio"] = daemon["proxy_ms"] / daemon["direct_ms"]
        summary["proxy_met"] = summary["proxy_ratio"] <= proxy_aim
    ratio_text = ""
    if "supervisord" in results:
        sup = results["supervisord"]
        cpu_ratio = (
            f"{daemon['cpu'] / sup['cpu']:.0f}x"
            if sup["cpu"] >= 0.01
            else f"{daemon['cpu']:.2f}% vs. {sup['cpu']:.3f}%"
        )
        ratio_text = (
            f" Against supervisord: RSS {daemon['rss'] / sup['rss']:.1f}x, "
            f"CPU {cpu_ratio} (supervisord does no health probes; coursestack "
            "probes every service every 5 s, each probe a new connection: a "
            "PostgreSQL login, an HTTP request, a MongoDB ping over its wire protocol)."
        )
    extra = ""
    if "python_imports" in daemon:
        extra += (
            f"\n- Where the daemon's RSS comes from: the same interpreter is "
            f"{daemon['python_bare']:.1f} MB bare and {daemon['python_imports']:.1f} MB "
            "after importing what the daemon imports (coursestack.daemon, "
            "coursestack.web.app with Starlette/pydantic/uvicorn, every kind), "
            "before doing anything."
        )
    if "api_kept_ms" in daemon:
        extra += (
            f"\n- The daemon's API, GET /api/health (median of 20): "
            f"{daemon['api_fresh_ms']:.1f} ms on a new connection each time, "
            f"{daemon['api_kept_ms']:.1f} ms per request on one kept-alive connection."
        )
    if "proxy_ms" in daemon:
        extra += (
            f"\n- Before sampling the daemon served the dashboard page (HTTP "
            f"{daemon['dashboard_status']:.0f}), 3 s of the event stream "
            f"({daemon['event_chunks']:.0f} chunks) and one request proxied to Jupyter "
            f"(HTTP {daemon['proxied_status']:.0f}), so the web stack, the proxy and its "
            "HTTP client are loaded in the figures above."
        )
        extra += (
            f"\n- Jupyter's api/status on one kept-alive connection (median of "
            f"{daemon.get('proxy_count', 50):.0f}, "
            f"alternating): through the front door (`Host: jupyter.<instance>."
            f"localhost:<port>`) {daemon['proxy_ms']:.2f} ms, straight to Jupyter "
            f"{daemon['direct_ms']:.2f} ms: **{summary['proxy_ratio']:.2f}x**, aim <= "
            f"{proxy_aim:g}x: {'met' if summary['proxy_met'] else 'NOT met'}."
        )
    text = (
        f"\n## Idle cost ({settle:g} s after all ready, then {seconds:g} s of sampling)\n\n"
        + "\n".join(rows)
        + "\n\n"
        f"**Daemon RSS {daemon['rss']:.1f} MB (max {daemon['rss_max']:.1f}), aim <= "
        f"{rss_aim:g} MB: {'met' if summary['rss_met'] else 'NOT met'}; idle CPU "
        f"{daemon['cpu']:.2f}% of a core, aim <= {cpu_aim:g}%: "
        f"{'met' if summary['cpu_met'] else 'NOT met'}.**{ratio_text}\n{extra}\n"
    )
    return text, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--sample", type=float, default=30.0)
    parser.add_argument("--markdown", type=Path, help="write this table as a Markdown file")
    parser.add_argument("--keep", action="store_true", help="keep the /tmp workspace")
    args = parser.parse_args()
    facts = machine_facts()
    ws = Workspace(keep=args.keep)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"workspace {ws.root}; {facts['nproc']} CPUs ({facts['cpu']})", flush=True)
    try:
        state = ws.state("idle")
        print("first up (initdb) ...", flush=True)
        ws.up(state)
        ws.down(state)
        results = measure(ws, state, args.settle, args.sample)
    finally:
        ws.cleanup()
    text, _ = idle_markdown(results, args.settle, args.sample)
    print(text)
    if args.markdown:
        header = "\n".join(f"- {key}: {value}" for key, value in facts.items())
        args.markdown.write_text(
            f"# Idle cost of the coursestack daemon\n\n{header}\n{text}", encoding="utf-8"
        )
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
