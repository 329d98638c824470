"""Kinds from other packages: registered through the `coursestack.kinds` entry points.

The real test builds three tiny packages (as wheels) in a temporary folder (a working kind "echo", a
kind whose module fails to import, and one that registers "postgres" a second time),
installs them into a NEW virtual environment (created with --system-site-packages, so it
sees coursestack and its dependencies, and leaves the shared test environment alone),
and runs `coursestack up`, `doctor` and `down` from it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import httpx
import pytest

from coursestack import registry
from support import open_folder

ROOT = Path(__file__).resolve().parents[2]

ECHO_MODULE = '''
"""A kind another package ships: a small HTTP server that says its message."""

from __future__ import annotations

import sys
from typing import ClassVar

from pydantic import Field

from coursestack.kinds import Connection, Kind
from coursestack.kinds.base import LOCALHOST
from coursestack.plan import KindEstimate
from coursestack.probes import http_probe
from coursestack.procs import LaunchSpec
from coursestack.spec import ServiceSpec

SERVER = (
    "import http.server, sys\\n"
    "message = sys.argv[2].encode()\\n"
    "class Echo(http.server.BaseHTTPRequestHandler):\\n"
    "    def do_GET(self):\\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(message)\\n"
    "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Echo).serve_forever()\\n"
)


class EchoService(ServiceSpec):
    """Settings of an echo service."""

    KIND: ClassVar[str] = "echo"
    WEB: ClassVar[bool] = True
    message: str = Field(default="hello", description="What the server answers.")


class EchoKind(Kind[EchoService]):
    KIND = "echo"
    default_port = 8790
    settings_model = EchoService
    memory_estimate = KindEstimate(20, basis="~20 MB (a tiny Python server)")

    def launch_spec(self) -> LaunchSpec:
        return self._launch([sys.executable, "-c", SERVER, str(self.port), self.spec.message])

    async def probe(self) -> bool:
        return await http_probe(f"http://{LOCALHOST}:{self.port}/", 200)

    def connection(self) -> Connection:
        return Connection(self.name, self.KIND, LOCALHOST, self.port,
                          f"http://{LOCALHOST}:{self.port}/", web=True)

    def program_version(self) -> str:
        return "echo 1.0"
'''


def _wheel(root: Path, name: str, entry_points: dict[str, str], module: str, text: str) -> Path:
    """A one-module wheel (what `python -m build` would make, written directly so the
    test needs neither the network nor build tools)."""
    dist = name.replace("-", "_")
    info = f"{dist}-1.0.dist-info"
    points = "[coursestack.kinds]\n" + "".join(
        f"{kind} = {target}\n" for kind, target in entry_points.items()
    )
    files = {
        f"{module}.py": text,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": points,
    }
    record = (
        "".join(
            f"{path},sha256={_digest(body)},{len(body.encode())}\n" for path, body in files.items()
        )
        + f"{info}/RECORD,,\n"
    )
    wheel = root / f"{dist}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, body in {**files, f"{info}/RECORD": record}.items():
            archive.writestr(path, body)
    return wheel


def _digest(body: str) -> str:
    raw = hashlib.sha256(body.encode()).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _venv(root: Path, wheels: list[Path]) -> Path:
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    python = venv / "bin" / "python"
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            *map(str, wheels),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return python


@pytest.mark.slow
def test_a_kind_from_another_package_runs_and_broken_ones_are_reported() -> None:
    root = open_folder("kind-packages-")
    packages = root / "packages"
    packages.mkdir()
    wheels = [
        _wheel(
            packages,
            "coursestack-echo-kind",
            {"echo": "echo_kind:EchoKind"},
            "echo_kind",
            ECHO_MODULE,
        ),
        _wheel(
            packages,
            "coursestack-broken-kind",
            {"broken": "broken_kind:Kind"},
            "broken_kind",
            "import no_such_module_anywhere  # fails on purpose\n",
        ),
        _wheel(
            packages,
            "coursestack-twice-kind",
            {"postgres": "twice_kind:Kind"},
            "twice_kind",
            "from coursestack.kinds import Kind  # a second 'postgres'\n",
        ),
    ]
    python = _venv(root, wheels)
    course = root / "course"
    course.mkdir()
    (course / "course.toml").write_text(
        textwrap.dedent("""\
        [course]
        name = "echo-course"

        [services.echo]
        kind = "echo"
        message = "hello from a kind package"

        [services.helper]
        kind = "command"
        command = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
        port = 8791
        probe = { type = "http" }
        """)
    )
    state = root / "state"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(python), "-m", "coursestack", *args],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result

    try:
        up = run("up", str(course / "course.toml"), "--state", str(state), "--timeout", "120")
        said = " ".join(up.stdout.split())
        assert "package 'coursestack-broken-kind': kind 'broken' cannot be loaded" in said
        assert (
            "package 'coursestack-twice-kind': kind 'postgres' is already registered by "
            "package 'coursestack'"
        ) in said
        services = json.loads(run("status", "--state", str(state), "--json").stdout)["services"]
        assert {s["name"]: s["state"] for s in services} == {"echo": "ready", "helper": "ready"}
        port = next(s["port"] for s in services if s["name"] == "echo")

        assert httpx.get(f"http://127.0.0.1:{port}/").text == "hello from a kind package"
        connections = json.loads((state / "connections.json").read_text())
        assert connections["services"]["echo"]["driver"] == "http"
        doctor = run("doctor", "--state", str(state), check=False)
        said = " ".join(doctor.stdout.split())
        assert "coursestack-broken-kind" in said and "coursestack-twice-kind" in said
        assert "echo (echo): echo 1.0" in said
    finally:
        run("down", "--state", str(state), check=False)
    # The shared environment never saw the packages.
    assert "echo" not in registry.discover().names()
