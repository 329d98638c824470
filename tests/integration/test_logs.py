"""A service that writes without pause: the log stays bounded and the daemon stays up."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support import cli


def test_a_service_flooding_its_log_is_kept_bounded(workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text(
        '[course]\nname = "noisy"\n[logs]\nmax_size = "2M"\nkeep = 1\n'
        '[services.flood]\nkind = "command"\n'
        'command = ["sh", "-c", "yes 0123456789012345678901234567890123456789"]\n'
        'probe = { type = "none" }\n'
    )
    state = workdir / "state"
    cli("up", str(spec), "--state", str(state))
    try:
        log = state / "logs" / "flood.log"
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # `yes` alone writes gigabytes in that time
            time.sleep(1)
            assert log.stat().st_size <= 2 * 2**20 + 65536
        assert (state / "logs" / "flood.log.1").exists()
        assert not (state / "logs" / "flood.log.2").exists()
        folder_size = sum(p.stat().st_size for p in (state / "logs").glob("flood.log*"))
        assert folder_size <= 2 * (2 * 2**20 + 65536)  # without limits: gigabytes by now
        data = json.loads(cli("status", "--json", "--state", str(state)).stdout)
        assert data["services"][0]["state"] == "ready"
    finally:
        cli("down", "--state", str(state), check=False)
