"""Benchmark: what the front door adds to a kept-alive request, against the floor.

Starts the sample course (`coursestack up`), then times Jupyter's `api/status` on one
kept-alive connection each (median per round, rounds alternating):
- straight to Jupyter;
- through the front door (`Host: jupyter.<instance>.localhost:<port>`, the bearer token);
- through a bare proxy in this process's child: asyncio streams, httptools on both
  sides, one kept-alive upstream connection, no checks, no framework, header and body
  written in one piece. It is the floor of any Python proxy hop on this machine: what
  the front door costs beyond it is its own work (uvicorn, the web app, the checks).

    python bench/bench_proxy.py --rounds 6 --count 300
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from bench_startup import Workspace, free_port_block

BARE_PROXY = r"""
import asyncio, sys
import httptools

UPSTREAM, PORT = int(sys.argv[1]), int(sys.argv[2])

class Answer:
    def __init__(self): self.headers, self.body, self.done = [], [], asyncio.Event()
    def on_header(self, name, value): self.headers.append((name, value))
    def on_body(self, body): self.body.append(body)
    def on_message_complete(self): self.done.set()

async def main():
    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    lock = asyncio.Lock()

    async def serve(reader, writer):
        class Request:
            def __init__(self): self.headers, self.done = [], False
            def on_url(self, url): self.url = url
            def on_header(self, name, value): self.headers.append((name, value))
            def on_message_complete(self): self.done = True
        while True:
            request = Request()
            parser = httptools.HttpRequestParser(request)
            while not request.done:
                data = await reader.read(65536)
                if not data:
                    writer.close()
                    return
                parser.feed_data(data)
            head = [b"GET " + request.url + b" HTTP/1.1\r\n"]
            head += [k + b": " + v + b"\r\n" for k, v in request.headers
                     if k.lower() not in (b"host", b"connection")]
            head.append(b"host: 127.0.0.1\r\n\r\n")
            async with lock:
                up_writer.write(b"".join(head))
                answer = Answer()
                response = httptools.HttpResponseParser(answer)
                while not answer.done.is_set():
                    response.feed_data(await up_reader.read(65536))
            body = b"".join(answer.body)
            out = [b"HTTP/1.1 %d OK\r\n" % response.get_status_code()]
            out += [k + b": " + v + b"\r\n" for k, v in answer.headers
                    if k.lower() not in (b"connection", b"transfer-encoding", b"content-length")]
            out.append(b"content-length: %d\r\n\r\n" % len(body))
            writer.write(b"".join(out) + body)

    server = await asyncio.start_server(serve, "127.0.0.1", PORT)
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def _median_ms(client: httpx.Client, url: str, headers: dict[str, str], count: int) -> float:
    client.get(url, headers=headers).raise_for_status()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        client.get(url, headers=headers).raise_for_status()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(state: Path, rounds: int, count: int) -> dict[str, list[float]]:
    record = json.loads((state / "run" / "daemon.json").read_text())
    base, bearer = record["url"].rstrip("/"), {"Authorization": f"Bearer {record['token']}"}
    secrets = json.loads((state / "run" / "secrets.json").read_text())
    token = {"Authorization": f"token {secrets['jupyter.token']}"}
    with httpx.Client(trust_env=False, timeout=10) as client:
        name = client.get(f"{base}/api/instance", headers=bearer).json()["name"]
        jupyter = next(
            s
            for s in client.get(f"{base}/api/services", headers=bearer).json()
            if s["name"] == "jupyter"
        )
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    front = {**bearer, "Host": f"jupyter.{label}.localhost:{record['port']}"}
    bare_port = free_port_block(1)[0]
    bare = subprocess.Popen(
        [sys.executable, "-c", BARE_PROXY, str(jupyter["port"]), str(bare_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bare.stdout is not None and bare.stdout.readline().strip() == "ready"
        path = "/s/jupyter/api/status"
        targets = {
            "straight to Jupyter": (f"http://127.0.0.1:{jupyter['port']}{path}", token),
            "through the front door": (f"{base}{path}", front),
            "through a bare asyncio proxy": (f"http://127.0.0.1:{bare_port}{path}", token),
        }
        results: dict[str, list[float]] = {name: [] for name in targets}
        clients = {name: httpx.Client(trust_env=False, timeout=10) for name in targets}
        try:
            for _ in range(rounds):
                for name, (url, headers) in targets.items():
                    results[name].append(_median_ms(clients[name], url, headers, count))
        finally:
            for client in clients.values():
                client.close()
    finally:
        bare.terminate()
        bare.wait()
    return results


def markdown(results: dict[str, list[float]], count: int) -> str:
    straight = results["straight to Jupyter"]
    rows = [
        "| Jupyter's api/status, kept alive | median ms per round | ratio to straight, "
        "per round | median ratio |",
        "| --- | --- | --- | ---: |",
    ]
    for name, times in results.items():
        ratios = [t / s for t, s in zip(times, straight, strict=True)]
        rows.append(
            f"| {name} | {' '.join(f'{t:.2f}' for t in times)} | "
            f"{' '.join(f'{r:.2f}' for r in ratios)} | "
            f"{statistics.median(ratios):.2f}x |"
        )
    return (
        f"Rounds alternate; each is the median of {count} requests on one kept-alive "
        "connection.\n\n" + "\n".join(rows) + "\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    ws = Workspace()
    try:
        state = ws.state("proxy")
        ws.up(state)
        try:
            results = measure(state, args.rounds, args.count)
        finally:
            ws.down(state)
    finally:
        ws.cleanup()
    print(markdown(results, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
