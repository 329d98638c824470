"""Binder's `start` script, run for real: it brings the course's services up, then execs
the command it was given; the launcher entries reach the dashboard through the front
door with the instance's token. Then `coursestack run` in the foreground, stopped by
SIGTERM as systemd, launchd and container engines stop it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

from coursestack.export.write import export_course
from export_readback import COURSES
from support import cli, open_folder, wait_for


@pytest.mark.slow
def test_binder_start_brings_services_up_then_execs_the_command() -> None:
    repository = open_folder("binder-repo-")
    shutil.copytree(COURSES["sample"].parent, repository, dirs_exist_ok=True)
    export_course("binder", repository / "course.toml", repository / ".binder", force=False)
    state = open_folder("binder-state-")
    env = {**os.environ, "COURSESTACK_STATE": str(state)}
    try:
        started = subprocess.run(
            [
                str(repository / ".binder" / "start"),
                sys.executable,
                "-c",
                "import os; print('notebook server, state in', os.environ['COURSESTACK_STATE'])",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert started.returncode == 0, started.stderr
        assert f"notebook server, state in {state}" in started.stdout
        status = json.loads(cli("status", "--state", str(state), "--json").stdout)
        states = {service["name"]: service["state"] for service in status["services"]}
        assert states["postgres"] == "ready" and states["mongo"] == "ready"
        # Binder's own Jupyter replaces the course's; OpenRefine waits for its first request.
        assert states["jupyter"] == "stopped" and states["openrefine"] == "stopped"

        loader = PyFileConfigLoader("jupyter_server_config.py", path=str(repository / ".binder"))
        os.environ["COURSESTACK_STATE"] = str(state)
        try:
            config: Config = loader.load_config()
        finally:
            os.environ.pop("COURSESTACK_STATE")
        servers = config.ServerProxy.servers
        assert set(servers) == {"coursestack", "openrefine"}
        # Each web service is reached on its own origin, never under the dashboard's.
        refine_host = servers["openrefine"]["request_headers_override"]["Host"]
        assert refine_host.startswith("openrefine.") and ".localhost:" in refine_host
        assert "mappath" not in servers["openrefine"]
        from jupyter_server_proxy.config import make_server_process

        for name, entry in servers.items():
            process = make_server_process(name, entry, None)
            assert process.launcher_entry.enabled
        dashboard = servers["coursestack"]
        answer = httpx.get(
            f"http://127.0.0.1:{dashboard['port']}/api/services",
            headers=dashboard["request_headers_override"],
        )
        assert answer.status_code == 200
        _through_a_real_jupyter_server(repository, state)
    finally:
        cli("down", "--state", str(state), check=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _through_a_real_jupyter_server(repository: Path, state: Path) -> None:
    """Binder's Jupyter server with the generated config: the launcher's entries reach
    the dashboard (its links rewritten under the proxy path) and the front door."""
    port, token = _free_port(), "export-test-token"
    config_dir = open_folder("jupyter-config-")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter_server",
            "--no-browser",
            "--allow-root",
            f"--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={repository}",
            f"--config={repository / '.binder' / 'jupyter_server_config.py'}",
        ],
        env={**os.environ, "COURSESTACK_STATE": str(state), "JUPYTER_CONFIG_DIR": str(config_dir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def server_up() -> bool:
            try:
                return httpx.get(f"{base}/api/status?token={token}").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(server_up, what="Jupyter Server")
        with httpx.Client(base_url=base, params={"token": token}, timeout=60) as client:
            page = client.get("/coursestack/", headers={"Accept": "text/html"})
            assert page.status_code == 200, page.text[:500]
            assert 'src="/coursestack/static/dashboard.js"' in page.text
            assert 'src="/static/' not in page.text
            script = client.get("/coursestack/static/dashboard.js")
            assert script.status_code == 200
            assert '"/api/' not in script.text
            services = client.get("/coursestack/api/services")
            assert {s["name"] for s in services.json()} >= {"postgres", "mongo"}
            # OpenRefine's entry goes through the front door, which starts it on demand.
            refine = client.get("/openrefine/", headers={"Accept": "text/html"})
            assert refine.status_code in (200, 503), refine.text[:500]
            if refine.status_code == 503:
                assert "Starting openrefine" in refine.text
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.mark.slow
def test_run_stays_in_the_foreground_and_stops_cleanly_on_sigterm() -> None:
    folder = open_folder("run-course-")
    (folder / "course.toml").write_text(
        '[course]\nname = "run-test"\n\n[services.web]\nkind = "command"\n'
        'command = ["python3", "-m", "http.server", "{port}", "--bind", "{host}"]\n'
        'port = 8765\nprobe = { type = "http" }\n'
    )
    state = open_folder("run-state-")
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coursestack",
            "run",
            str(folder / "course.toml"),
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def web_ready() -> bool:
            result = cli("status", "--state", str(state), "--json", check=False)
            if result.returncode != 0:
                return False
            services = json.loads(result.stdout)["services"]
            return services[0]["state"] == "ready"

        wait_for(web_ready, what="the command service to be ready")
        service_pid = json.loads(cli("status", "--state", str(state), "--json").stdout)["services"][
            0
        ]["pid"]
        assert daemon.poll() is None  # still in the foreground
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0, daemon.stderr.read() if daemon.stderr else ""
        assert (
            not psutil.pid_exists(service_pid)
            or psutil.Process(service_pid).status() == psutil.STATUS_ZOMBIE
        )
        assert cli("status", "--state", str(state), check=False).returncode == 3
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.communicate()
