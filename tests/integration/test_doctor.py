"""Doctor on a running instance: every check passes."""

from __future__ import annotations

import pytest

from coursestack.doctor import (
    run_doctor,
)
from coursestack.instances import Instance
from support import cli, wait_ready


@pytest.mark.slow
def test_doctor_on_a_running_instance(sample_instance: Instance) -> None:
    wait_ready(sample_instance)
    findings = run_doctor(sample_instance)
    by_check = {f.check: f for f in findings}
    assert by_check["daemon"].status == "ok"
    for name in ("postgres", "jupyter"):
        assert by_check[f"service:{name}"].status == "ok", by_check[f"service:{name}"]
        port = by_check[f"port:{name}"]
        # The preferred port is ours, or somebody else's and then the program is named.
        assert (
            "used by this instance" in port.what
            or "is free" in port.what
            or "is taken by" in port.what
        ), port
    assert "the running course uses" in by_check["memory"].what
    result = cli("doctor", "--state", str(sample_instance.state.root), check=False)
    failures = [f for f in findings if f.status == "fail"]
    assert result.returncode == (1 if failures else 0), result.stdout
    assert "postgres is ready" in result.stdout
