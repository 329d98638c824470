"""A service over its memory_limit: killed by the kernel where a cgroup can be made (and
said so), or restarted by the supervisor's own sampling elsewhere."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from coursestack import cgroups
from support import cli

pytestmark = pytest.mark.slow

HOG = ("import time\nblocks = []\nfor _ in range(60):\n"
       "    blocks.append(bytearray(16 * 2**20))\n    time.sleep(0.05)\ntime.sleep(120)\n")


def test_a_service_over_its_memory_limit_is_stopped_with_that_reason(workdir: Path) -> None:
    (workdir / "hog.py").write_text(HOG)
    spec = workdir / "course.toml"
    spec.write_text('[course]\nname = "hog"\n[services.hog]\nkind = "command"\n'
                    f'command = ["python3", "{workdir / "hog.py"}"]\n'
                    'probe = { type = "none" }\nmemory_limit = "128M"\nmax_restarts = 0\n'
                    'probe_interval = 0.5\n')
    state = workdir / "state"
    kernel = cgroups._hierarchy() is not None
    try:
        cli("up", str(spec), "--state", str(state))
        deadline = time.monotonic() + 60
        while True:
            data = json.loads(cli("status", "--json", "--state", str(state)).stdout)
            hog = data["services"][0]
            if hog["state"] == "failed" or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert hog["state"] == "failed", hog
        if kernel:
            assert hog["reason"] == ("killed by the kernel: it went over its memory_limit "
                                     "of 128M")
        else:
            assert "above its memory_limit of 128M" in hog["reason"]
    finally:
        cli("down", "--state", str(state), check=False)
    if kernel:  # the daemon gives its cgroups back
        leftovers = list(Path("/sys/fs/cgroup").glob("**/coursestack/*/hog"))
        assert not leftovers
