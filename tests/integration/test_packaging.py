"""The release path: `python -m build` gives a wheel and an sdist that `twine check` accepts,
and the wheel installed in a brand-new virtual environment, away from the repository,
runs the sample course (the README's first command, as a student would get it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from support import open_folder

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], cwd: Path, timeout: float = 900, **env: str) -> str:
    """Run a command away from the repository; fail the test with its output."""
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        argv,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **env},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.mark.slow
def test_wheel_in_a_fresh_environment_runs_the_sample_course() -> None:
    work = open_folder("release-")
    dist = work / "dist"
    run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=work)
    built = sorted(p.name for p in dist.iterdir())
    assert any(n.endswith(".whl") for n in built) and any(n.endswith(".tar.gz") for n in built)
    run([sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())], cwd=work)

    environment = work / "venv"
    venv.EnvBuilder(with_pip=True).create(environment)
    python = environment / "bin" / "python"
    wheel = next(dist.glob("*.whl"))
    run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-c",
            str(ROOT / "constraints.txt"),
            str(wheel),
        ],
        cwd=work,
    )
    # Nothing of the repository may leak in: the installed package is the wheel's.
    where = run([str(python), "-c", "import coursestack; print(coursestack.__file__)"], cwd=work)
    assert str(environment) in where and str(ROOT) not in where

    coursestack = str(environment / "bin" / "coursestack")
    state = work / "state"
    home = {"COURSESTACK_HOME": str(work / "home")}
    try:
        run([coursestack, "up", "--state", str(state)], cwd=work, timeout=600, **home)
        report = json.loads(
            run([coursestack, "status", "--json", "--state", str(state)], cwd=work, **home)
        )
        states = {s["name"]: s["state"] for s in report["services"]}
        assert states.get("postgres") == "ready" and states.get("jupyter") == "ready", states
        # The console script forks the daemon (entry.py), with no second interpreter.
        assert json.loads((state / "run" / "daemon.json").read_text())["start_method"] == "fork"
    finally:
        subprocess.run(
            [coursestack, "down", "--state", str(state)],
            cwd=work,
            capture_output=True,
            timeout=300,
            check=False,
            env={**os.environ, **home},
        )
