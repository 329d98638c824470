"""Load test of the daemon's API, side by side with supervisord's XML-RPC.

For `--seconds` (30), against one daemon of the sample course (started here in a scratch
COURSESTACK_HOME unless --url/--token name a running one):
- `--clients` (100) concurrent clients loop on GET /api/services (bearer token);
- `--streams` (100) event streams (GET /api/events) stay open, and must keep receiving.
Then supervisord runs two dummy programs and the same number of clients loop on its
XML-RPC `supervisor.getAllProcessInfo`. Every load goes to 127.0.0.1 only.

Besides throughput and latency (which the load generator, one Python process on the same
host, also limits), it reports the CPU time each server spent per answered request,
which does not depend on how fast the client is.

    python bench/bench_api.py [--seconds 30] [--clients 100] [--streams 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

XMLRPC_BODY = (
    b"<?xml version='1.0'?><methodCall><methodName>supervisor.getAllProcessInfo"
    b"</methodName><params></params></methodCall>"
)


async def hammer(
    method: str,
    url: str,
    clients: int,
    seconds: float,
    headers: dict[str, str],
    body: bytes | None = None,
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        limits=limits, timeout=30, trust_env=False, headers=headers
    ) as client:

        async def one() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.request(method, url, content=body)
                    ok = response.status_code == 200 and (
                        body is None or b"<fault>" not in response.content
                    )
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        began = time.monotonic()
        await asyncio.gather(*(one() for _ in range(clients)))
        elapsed = time.monotonic() - began
    return summary(latencies, errors, elapsed)


def summary(latencies: list[float], errors: int, elapsed: float) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000

    return {
        "requests": len(ordered),
        "errors": errors,
        "rps": len(ordered) / elapsed,
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": ordered[-1] * 1000,
        "mean": statistics.fmean(ordered) * 1000,
    }


async def open_streams(url: str, token: str, count: int, seconds: float) -> dict[str, Any]:
    """`count` event streams; each must connect and see its snapshot and ticks."""
    events = [0] * count
    failures = 0

    async def one(index: int, client: httpx.AsyncClient) -> None:
        nonlocal failures
        try:
            async with client.stream("GET", url) as response:
                if response.status_code != 200:
                    failures += 1
                    return
                async for line in response.aiter_lines():
                    if line.startswith("event:"):
                        events[index] += 1
        except httpx.HTTPError:
            failures += 1

    limits = httpx.Limits(max_connections=count + 1)
    async with httpx.AsyncClient(
        limits=limits,
        trust_env=False,
        timeout=httpx.Timeout(10, read=60),
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        tasks = [asyncio.create_task(one(i, client)) for i in range(count)]
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    starved = sum(1 for n in events if n < 2)  # a snapshot and at least one tick
    return {"streams": count, "failed": failures, "starved": starved, "events": sum(events)}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def add_cpu(result: dict[str, Any], pid: int, before: float) -> dict[str, Any]:
    spent = cpu_seconds(pid) - before
    ok = max(1, result["requests"] - result["errors"])
    return {**result, "server_cpu_s": spent, "cpu_ms_per_request": spent / ok * 1000}


async def daemon_load(url: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(trust_env=False, headers=auth) as client:
        pid = int((await client.get(f"{url}api/instance")).json()["pid"])
    streams = asyncio.create_task(
        open_streams(f"{url}api/events", token, args.streams, args.seconds + 2)
    )
    await asyncio.sleep(1)
    before = cpu_seconds(pid)
    api = await hammer("GET", f"{url}api/services", args.clients, args.seconds, auth)
    return {"api": add_cpu(api, pid, before), "streams": await streams}


def run_supervisord(args: argparse.Namespace) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-supervisord-"))
    port = 9871
    config = folder / "supervisord.conf"
    config.write_text(
        textwrap.dedent(f"""
        [supervisord]
        nodaemon=true
        logfile={folder}/supervisord.log
        pidfile={folder}/supervisord.pid
        [inet_http_server]
        port=127.0.0.1:{port}
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [program:one]
        command=sleep 3600
        [program:two]
        command=sleep 3600
    """)
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/RPC2"
        for _ in range(100):
            try:
                if httpx.post(url, content=XMLRPC_BODY, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        before = cpu_seconds(process.pid)
        result = asyncio.run(
            hammer(
                "POST", url, args.clients, args.seconds, {"Content-Type": "text/xml"}, XMLRPC_BODY
            )
        )
        return add_cpu(result, process.pid, before)
    finally:
        process.terminate()
        process.wait(30)
        shutil.rmtree(folder, ignore_errors=True)


def report(result: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        ("coursestack GET /api/services", result["daemon"]["api"]),
        ("supervisord XML-RPC getAllProcessInfo", result["supervisord"]),
    ]
    lines = [
        f"Load: {args.clients} concurrent clients for {args.seconds:g} s each, on "
        f"127.0.0.1; coursestack also had {args.streams} event streams open.",
        "",
        "| server | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms "
        "| server CPU ms/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['requests']} | {r['errors']} | {r['rps']:.0f} | "
            f"{r['p50']:.1f} | {r['p90']:.1f} | {r['p99']:.1f} | {r['max']:.1f} | "
            f"{r['cpu_ms_per_request']:.2f} |"
        )
    s = result["daemon"]["streams"]
    lines += [
        "",
        f"Event streams: {s['streams']} opened, {s['failed']} failed, "
        f"{s['starved']} without a tick, {s['events']} events delivered.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--url")
    parser.add_argument("--token")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    home = None
    url, token = args.url, args.token
    if not url:
        home = tempfile.mkdtemp(prefix="bench-home-")
        os.chmod(home, 0o755)
        env = {**os.environ, "COURSESTACK_HOME": home}
        subprocess.run(
            [sys.executable, "-m", "coursestack", "up"], env=env, check=True, capture_output=True
        )
        record = json.loads(
            (Path(home) / "instances" / "sample" / "run" / "daemon.json").read_text()
        )
        url, token = record["url"], record["token"]
    try:
        result = {"daemon": asyncio.run(daemon_load(url, token, args))}
    finally:
        if home:
            subprocess.run(
                [sys.executable, "-m", "coursestack", "down"],
                check=False,
                env={**os.environ, "COURSESTACK_HOME": home},
                capture_output=True,
            )
    result["supervisord"] = run_supervisord(args)
    text = report(result, args)
    print(text)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(text)
    failed = (
        result["daemon"]["api"]["errors"]
        or result["supervisord"]["errors"]
        or result["daemon"]["streams"]["failed"]
        or result["daemon"]["streams"]["starved"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
