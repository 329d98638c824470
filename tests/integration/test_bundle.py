"""The diagnostics bundle of the running sample course holds no secret."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bundle_secrets import assert_no_secret, secrets_of, unpack
from coursestack.instances import Instance
from support import cli, wait_ready


@pytest.mark.slow
def test_bundle_of_the_running_sample_course_holds_no_secret(
    sample_instance: Instance, workdir: Path
) -> None:
    wait_ready(sample_instance)
    state = sample_instance.state
    secrets = secrets_of(state)
    assert len(secrets) >= 3
    # The secrets really are in the state folder's files (the daemon logs Jupyter's token),
    # so the bundle has something to hide.
    raw = "".join(p.read_text(errors="replace") for p in state.logs.iterdir())
    raw += state.connections_file.read_text()
    assert any(secret in raw for secret in secrets)

    destination = workdir / "support.zip"
    result = cli("doctor", "--bundle", str(destination), "--state", str(state.root), check=False)
    assert result.returncode in (0, 1), result.stderr
    assert f"Diagnostics bundle: {destination}" in result.stdout.replace("\n", "")
    files = unpack(destination, workdir / "unpacked")
    assert_no_secret(files, secrets)
    names = {Path(name).relative_to(Path(name).parts[0]).as_posix() for name in files}
    assert {
        "doctor.txt",
        "course/course.toml",
        "services.json",
        "events.jsonl",
        "logs/postgres.log",
        "logs/daemon.log",
        "versions.json",
        "os.json",
    } <= names
    services = json.loads(next(t for n, t in files.items() if n.endswith("/services.json")))
    states = {s["name"]: s["state"] for s in services["instance"]["services"]}
    assert states["postgres"] == "ready" and states["jupyter"] == "ready"
    events = next(t for n, t in files.items() if n.endswith("/events.jsonl"))
    assert '"state": "ready"' in events
