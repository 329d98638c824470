"""Log tails and rotation, and a service that writes without pause: the log stays bounded
and the daemon stays up."""

from __future__ import annotations

import json
import time
from pathlib import Path

from coursestack.logs import rotate_if_large, tail_lines
from support import cli


def test_tail_reads_the_end_of_a_big_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {n}\n" for n in range(100_000)))
    assert tail_lines(log, 3) == ["line 99997", "line 99998", "line 99999"]
    assert tail_lines(tmp_path / "missing.log", 3) == []


def test_rotation_keeps_n_files_and_truncates_in_place(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    with open(log, "ab") as writer:  # a service's open O_APPEND handle
        for round_number in range(5):
            writer.write(f"round {round_number}\n".encode() * 1000)
            writer.flush()
            assert rotate_if_large(log, 1000, keep=2)
        writer.write(b"after\n")
        writer.flush()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc.log", "svc.log.1", "svc.log.2"]
    assert log.read_bytes() == b"after\n"  # the writer went on at the new end
    assert (tmp_path / "svc.log.1").read_text().startswith("round 4")
    assert (tmp_path / "svc.log.2").read_text().startswith("round 3")
    assert not rotate_if_large(log, 1000, keep=2)


def test_a_service_flooding_its_log_is_kept_bounded(workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text('[course]\nname = "noisy"\n[logs]\nmax_size = "2M"\nkeep = 1\n'
                    '[services.flood]\nkind = "command"\n'
                    'command = ["sh", "-c", "yes 0123456789012345678901234567890123456789"]\n'
                    'probe = { type = "none" }\n')
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
