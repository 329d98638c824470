"""Many students on one host: `coursestack hub` vs. JupyterHub's LocalProcessSpawner.

N students (default 20) log in at once, through /hub/login like a browser:
- first logins (unix users and environments created, PostgreSQL initialised and seeded),
  then, after `hub down` + `hub up`, returning logins (environments start again on
  their kept data): seconds from the login POST until the student's environment is
  ready (every always-started service `ready`), p50 / p95 / max;
- idle memory per student environment (RSS of the whole process tree), and the same for
  one environment whose kernel ran the sample notebook 01 (pandas + plotnine);
- the same N students on a plain JupyterHub with LocalProcessSpawner starting
  `jupyterhub-singleuser` (JupyterLab alone, no databases): start time and memory;
- from these, how many registered students a 24 GB host serves at 10 % and 30 % active.

Run as root (users are made with the prefix `csbench-` and removed at the end):
    python bench/bench_hub.py --markdown docs/benchmarks-hub.md
"""

from __future__ import annotations

import argparse
import contextlib
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
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
PREFIX = "csbench-"
PASSWORD = "bench-password"
HOST_GB = 24
RESERVED_GB = 2  # the OS, the Hub, its proxy


def cs(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "coursestack", *args], capture_output=True, text=True, timeout=1800
    )
    if check and result.returncode != 0:
        raise SystemExit(f"coursestack {' '.join(args)} failed:\n{result.stderr}")
    return result


def log_in(base: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=base, trust_env=False, timeout=600, follow_redirects=True)
    page = client.get("/hub/login")
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert xsrf, page.text[:300]
    client.post("/hub/login", data={"username": name, "password": PASSWORD, "_xsrf": xsrf.group(1)})
    return client


def coursestack_ready(client: httpx.Client, name: str) -> bool:
    reply = client.get(f"/user/{name}/api/services")
    if reply.status_code != 200 or "json" not in reply.headers.get("content-type", ""):
        return False
    return all(s["state"] == "ready" for s in reply.json() if s["start"] == "always")


def lab_ready(client: httpx.Client, name: str) -> bool:
    reply = client.get(f"/user/{name}/lab")
    return (
        reply.status_code == 200
        and str(reply.url).endswith(f"/user/{name}/lab")
        and "jupyter-config-data" in reply.text
    )


def logins_at_once(
    base: str, names: list[str], ready: Any, timeout: float = 1500
) -> tuple[list[float], dict[str, httpx.Client]]:
    """Everyone logs in at the same moment; seconds until each one's environment is ready."""
    times: dict[str, float] = {}
    clients: dict[str, httpx.Client] = {}
    barrier = threading.Barrier(len(names))

    def one(name: str) -> None:
        barrier.wait()
        began = time.monotonic()
        client = log_in(base, name)
        clients[name] = client
        while time.monotonic() - began < timeout:
            try:
                if ready(client, name):
                    times[name] = time.monotonic() - began
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

    threads = [threading.Thread(target=one, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missing = [n for n in names if n not in times]
    if missing:
        raise SystemExit(f"not ready within {timeout:g} s: {missing}")
    return [times[n] for n in names], clients


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def tree_pss(pid: int) -> int:
    """Proportional set size of a process tree: pages shared between processes (such as
    PostgreSQL's shared buffers) are split between them instead of counted in each."""
    import psutil

    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += process.memory_full_info().pss
    return total


def singleuser_pids(marker: str) -> dict[str, int]:
    """unix user -> pid of each environment's top process (`marker` in its command)."""
    import psutil

    found: dict[str, int] = {}
    for process in psutil.process_iter(["cmdline", "username"]):
        user = str(process.info["username"])
        if user.startswith(PREFIX) and marker in " ".join(process.info["cmdline"] or []):
            found[user] = process.pid
    return found


def user_token(client: httpx.Client, name: str) -> str:
    xsrf = client.cookies.get("_xsrf", path="/hub/") or ""
    reply = client.post(
        f"/hub/api/users/{name}/tokens", json={"expires_in": 3600}, headers={"X-XSRFToken": xsrf}
    )
    reply.raise_for_status()
    token: str = reply.json()["token"]
    return token


def notebook_code() -> str:
    from coursestack.instances import sample_course_source

    book = json.loads((sample_course_source() / "notebooks" / "01-anscombe.ipynb").read_text())
    cells = [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in book["cells"]
        if c["cell_type"] == "code"
    ]
    # Relative paths in the notebook are relative to its own folder.
    return "import os\nos.chdir(os.environ.get('NOTEBOOK_DIR', '.'))\n" + "\n".join(cells)


def active_memory(base: str, jupyter: str, token: str, pid: int, notebook_dir: str) -> int:
    """RSS of the environment while a kernel that ran sample notebook 01 is alive."""
    from websockets.sync.client import connect

    from kernel import _collect, _execute_request

    headers = {"Authorization": f"token {token}"}
    kernel = httpx.post(
        f"{jupyter}api/kernels",
        headers=headers,
        json={"name": "python3"},
        trust_env=False,
        timeout=60,
    ).json()
    try:
        ws = jupyter.replace("http://", "ws://") + f"api/kernels/{kernel['id']}/channels"
        with connect(ws, additional_headers={**headers, "Origin": base}, open_timeout=60) as socket:
            msg_id = uuid.uuid4().hex
            code = notebook_code().replace(
                "os.environ.get('NOTEBOOK_DIR', '.')", repr(notebook_dir)
            )
            socket.send(json.dumps(_execute_request(msg_id, code)))
            _collect(socket, msg_id, 600)
            time.sleep(3)
            return tree_pss(pid)
    finally:
        httpx.delete(
            f"{jupyter}api/kernels/{kernel['id']}", headers=headers, trust_env=False, timeout=60
        )


def free_port() -> int:
    from coursestack.ports import ephemeral_port

    return ephemeral_port()


def run_coursestack(names: list[str], work: Path) -> dict[str, Any]:
    hub_dir = work / "hub"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    up = [
        "hub",
        "up",
        "--hub-dir",
        str(hub_dir),
        "--port",
        str(port),
        "--password",
        PASSWORD,
        "--unix-prefix",
        PREFIX,
    ]
    result: dict[str, Any] = {}
    try:
        cs(*up)
        first, clients = logins_at_once(base, names, coursestack_ready)
        result["first"] = first
        time.sleep(15)
        status = json.loads(cs("hub", "status", "--json", "--hub-dir", str(hub_dir)).stdout)
        pids = singleuser_pids("coursestack singleuser")
        result["idle"] = [tree_pss(pid) for pid in pids.values()]
        name = names[0]
        token = user_token(clients[name], name)
        student = next(s for s in status["students"] if s["name"] == name)
        pid = pids[student["unix_user"]]
        notebooks = f"{student['state_dir']}/course/notebooks"
        result["active"] = active_memory(
            base, f"{base}/user/{name}/s/jupyter/", token, pid, notebooks
        )
        for client in clients.values():
            client.close()
        cs("hub", "down", "--hub-dir", str(hub_dir))
        cs(*up)
        returning, clients = logins_at_once(base, names, coursestack_ready)
        result["returning"] = returning
        for client in clients.values():
            client.close()
    finally:
        cs("hub", "down", "--hub-dir", str(hub_dir), check=False)
    return result


BASELINE_CONFIG = """
import pwd
from jupyterhub.spawner import LocalProcessSpawner

class BenchSpawner(LocalProcessSpawner):
    # The coursestack run made these unix users (csbench-<name>); use them as they are.
    def make_preexec_fn(self, name):
        return super().make_preexec_fn({prefix!r} + name)

    def user_env(self, env):
        entry = pwd.getpwnam({prefix!r} + self.user.name)
        env.update(USER=entry.pw_name, HOME=entry.pw_dir, SHELL=entry.pw_shell)
        return env

c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_port}"
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/cookie_secret"
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = BenchSpawner
c.Spawner.default_url = "/lab"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.start_timeout = 1500
c.Spawner.http_timeout = 1500
"""


def run_baseline(names: list[str], work: Path) -> dict[str, Any]:
    folder = work / "baseline"
    folder.mkdir()
    port = free_port()
    (folder / "jupyterhub_config.py").write_text(
        BASELINE_CONFIG.format(
            prefix=PREFIX,
            port=port,
            hub_port=free_port(),
            proxy_port=free_port(),
            folder=folder,
            password=PASSWORD,
            python=sys.executable,
        )
    )
    log = open(folder / "jupyterhub.log", "ab")  # noqa: SIM115
    hub = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(folder / "jupyterhub_config.py")],
        cwd=folder,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/hub/health", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        first, clients = logins_at_once(base, names, lab_ready)
        result["first"] = first
        time.sleep(15)
        pids = singleuser_pids("jupyterhub.singleuser")
        result["idle"] = [tree_pss(pid) for pid in pids.values()]
        name = names[0]
        token = user_token(clients[name], name)
        home = Path(f"/home/{PREFIX}{name}")
        pid = pids[PREFIX + name]
        result["active"] = active_memory(
            base,
            f"{base}/user/{name}/",
            token,
            pid,
            str(home / "coursestack" / "course" / "notebooks"),
        )
        for client in clients.values():
            client.close()
    finally:
        hub.terminate()
        try:
            hub.wait(60)
        except subprocess.TimeoutExpired:
            hub.kill()
        import psutil

        for process in psutil.process_iter(["cmdline", "username"]):
            if "jupyterhub.singleuser" in " ".join(process.info["cmdline"] or []) and str(
                process.info["username"]
            ).startswith(PREFIX):
                process.terminate()
        log.close()
    return result


def capacity(idle: float, active: float, share: float) -> tuple[int, int]:
    """Registered students per host: (all environments running, idle ones culled)."""
    budget = (HOST_GB - RESERVED_GB) * 2**30
    running_all = budget / (share * active + (1 - share) * idle)
    culled = budget / (share * active)
    return int(running_all), int(culled)


def report(ours: dict[str, Any], base: dict[str, Any], count: int) -> str:
    mb = 2**20
    ours_idle = statistics.median(ours["idle"])
    base_idle = statistics.median(base["idle"])
    lines = [
        "# Benchmark: many students on one host (`coursestack hub`)",
        "",
        f"`python bench/bench_hub.py` on this machine ({os.cpu_count()} cores, shared with "
        "other work). "
        f"{count} students log in at the same moment through `/hub/login` (httpx); "
        "coursestack's `CoursestackSpawner` gives each a unix user and a whole course "
        "environment (PostgreSQL seeded, MongoDB stand-in, JupyterLab, dashboard), "
        "JupyterHub's `LocalProcessSpawner` starts `jupyterhub-singleuser` (JupyterLab "
        "alone) for the same unix users.",
        "",
        "## Time until every environment is ready (s, from the login POST)",
        "",
        "| logins | coursestack p50 | p95 | max | LocalProcessSpawner p50 | p95 | max | "
        "ratio (max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, key in (
        ("first (environments created)", "first"),
        ("returning (data kept)", "returning"),
    ):
        ours_spread = spread(ours[key])
        base_spread = spread(base["first"])
        lines.append(
            f"| {label} | {ours_spread['p50']:.1f} | {ours_spread['p95']:.1f} | "
            f"{ours_spread['max']:.1f} | {base_spread['p50']:.1f} | "
            f"{base_spread['p95']:.1f} | {base_spread['max']:.1f} | "
            f"{ours_spread['max'] / base_spread['max']:.2f}x |"
        )
    lines += [
        "",
        "LocalProcessSpawner has no returning case of its own (nothing to initialise): "
        "its first-login figures stand for both.",
        "",
        "## Memory per student environment (PSS of the whole process tree, MB)",
        "",
        "| | coursestack | LocalProcessSpawner (JupyterLab alone) | ratio |",
        "| --- | --- | --- | --- |",
        f"| idle (median of {count}) | {ours_idle / mb:.0f} | {base_idle / mb:.0f} | "
        f"{ours_idle / base_idle:.2f}x |",
        f"| active (kernel ran notebook 01) | {ours['active'] / mb:.0f} | "
        f"{base['active'] / mb:.0f} | {ours['active'] / base['active']:.2f}x |",
        "",
        f"## Registered students per {HOST_GB} GB host ({RESERVED_GB} GB kept for the "
        "system and the Hub)",
        "",
        "| active share | coursestack, idle environments running | coursestack, idle "
        "culled | LocalProcessSpawner, idle running | LocalProcessSpawner, idle culled |",
        "| --- | --- | --- | --- | --- |",
    ]
    for share in (0.10, 0.30):
        ours_all, ours_culled = capacity(ours_idle, ours["active"], share)
        base_all, base_culled = capacity(base_idle, base["active"], share)
        lines.append(f"| {share:.0%} | {ours_all} | {ours_culled} | {base_all} | {base_culled} |")
    lines += ["", "Aim: at least 100 registered students per 24 GB host with 30 % active.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the hub makes a unix user per student")
    work = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    os.chmod(work, 0o755)
    names = [f"s{n:02d}" for n in range(1, args.students + 1)]
    try:
        ours = run_coursestack(names, work)
        print(json.dumps(ours, indent=1), flush=True)
        base = run_baseline(names, work)
        print(json.dumps(base, indent=1), flush=True)
        text = report(ours, base, args.students)
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
    finally:
        if not args.keep:
            from coursestack.hub.users import remove_student

            for name in names:
                remove_student(PREFIX + name)
            subprocess.run(
                ["nft", "delete", "table", "inet", "coursestack_hub"],
                capture_output=True,
                check=False,
            )
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
