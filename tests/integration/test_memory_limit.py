"""A service over its memory_limit: killed by the kernel where a cgroup can be made (and
said so), or restarted by the supervisor's own sampling elsewhere.

The hog only starts eating memory once the test says so (a file appears): `up` then
returns with the service ready, whatever the machine's load. (A hog that blew its limit
before `up` returned would make `up` report the failure and exit 1, which is right, but
not what this test is about.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coursestack import cgroups
from support import cli, wait_for

pytestmark = pytest.mark.slow

HOG = (
    "import os, sys, time\nwhile not os.path.exists(sys.argv[1]):\n    time.sleep(0.05)\n"
    "blocks = []\nfor _ in range(60):\n"
    "    blocks.append(bytearray(16 * 2**20))\n    time.sleep(0.05)\ntime.sleep(120)\n"
)


def test_a_service_over_its_memory_limit_is_stopped_with_that_reason(workdir: Path) -> None:
    (workdir / "hog.py").write_text(HOG)
    go = workdir / "go"
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "hog"\n[services.hog]\nkind = "command"\n'
        f'command = ["python3", "{workdir / "hog.py"}", "{go}"]\n'
        'probe = { type = "none" }\nmemory_limit = "128M"\nrestart = "never"\n'
        "probe_interval = 0.5\n"
    )
    state = workdir / "state"
    kernel = cgroups._hierarchy() is not None
    hog: dict[str, object] = {}

    def failed() -> bool:
        data = json.loads(cli("status", "--json", "--state", str(state)).stdout)
        hog.update(data["services"][0])
        return hog["state"] == "failed"

    try:
        cli("up", str(spec), "--state", str(state))
        go.touch()
        wait_for(failed, timeout=60, what="the hog to be stopped")
        if kernel:
            assert hog["reason"] == ("killed by the kernel: it went over its memory_limit of 128M")
        else:
            assert "above its memory_limit of 128M" in str(hog["reason"])
    finally:
        cli("down", "--state", str(state), check=False)
    if kernel:  # the daemon gives its cgroups back
        leftovers = list(Path("/sys/fs/cgroup").glob("**/coursestack/*/hog"))
        assert not leftovers
