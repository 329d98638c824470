"""plan on a running instance shows measured memory."""

from __future__ import annotations

import json
import re

import pytest

from coursestack.instances import Instance
from coursestack.plan import MB
from support import cli


@pytest.mark.slow
def test_plan_shows_measured_memory_of_a_running_instance(sample_instance: Instance) -> None:
    result = cli("plan", "--state", str(sample_instance.state.root), "--json")
    data = json.loads(result.stdout)
    assert data["running"] is True
    measured = {s["name"]: s["measured"] for s in data["services"]}
    # Real processes: PostgreSQL and Jupyter each use some megabytes.
    assert measured["postgres"] > 5 * MB and measured["jupyter"] > 20 * MB
    assert data["measured_total"] == sum(v for v in measured.values() if v)
    table = cli("plan", "--state", str(sample_instance.state.root)).stdout
    assert re.search(r"postgres\s+postgres\s+60 MB\s+\d+ MB", table), table
