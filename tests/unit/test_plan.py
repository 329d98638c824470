"""`coursestack plan`: expected memory per kind, the course's budget
(measured RSS of a running instance: tests/integration/test_plan.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coursestack.errors import SpecError
from coursestack.instances import sample_course_source
from coursestack.plan import budget_of, make_plan
from coursestack.spec import load_spec
from coursestack.units import MB, parse_size
from support import cli

COURSE = """\
[course]
name = "plan-test"
title = "Plan test"
BUDGET

[services.postgres]
kind = "postgres"
port = 5432

[services.jupyter]
kind = "jupyter"
depends_on = ["postgres"]
"""


def course_with(folder: Path, budget: str | None, extra: str = "") -> Path:
    line = f'memory_budget = "{budget}"' if budget is not None else ""
    spec = folder / "course.toml"
    spec.write_text(COURSE.replace("BUDGET", line) + extra, encoding="utf-8")
    return spec


def test_each_kind_has_its_documented_estimate(workdir: Path) -> None:
    spec = load_spec(course_with(workdir, None))
    plan = make_plan(spec, kernels=2)
    expected = {s.name: s.expected for s in plan.services}
    assert expected == {"postgres": 60 * MB, "jupyter": (120 + 2 * 80) * MB}
    assert make_plan(spec, kernels=0).expected_total == (60 + 120) * MB
    assert plan.budget is None and plan.fits is None
    assert "no memory_budget" in plan.verdict()


def test_a_larger_shared_buffers_raises_the_postgres_estimate(workdir: Path) -> None:
    extra = '\n[services.postgres.settings]\nshared_buffers = "512MB"\n'
    plan = make_plan(load_spec(course_with(workdir, None, extra)))
    postgres = next(s for s in plan.services if s.name == "postgres")
    assert postgres.expected == (60 + 512 - 128) * MB
    assert "shared_buffers" in postgres.basis


def test_services_started_on_request_count_at_peak_only(workdir: Path) -> None:
    extra = '\n[services.refine]\nkind = "openrefine"\nmemory = "512M"\nstart = "on-demand"\n'
    plan = make_plan(load_spec(course_with(workdir, "1G", extra)))
    refine = next(s for s in plan.services if s.name == "refine")
    assert refine.expected == (150 + 512) * MB
    assert plan.expected_total == 340 * MB
    assert plan.expected_peak == (340 + 662) * MB
    assert plan.on_request == ["refine"]
    assert plan.fits is True and plan.fits_at_peak is True
    tight = make_plan(load_spec(course_with(workdir, "900M", extra)))
    assert tight.fits is True and tight.fits_at_peak is False
    assert "refine started too" in tight.verdict() and "over the budget" in tight.verdict()


def test_every_kind_has_an_estimate() -> None:
    from coursestack.plan import ESTIMATES
    from coursestack.spec import SERVICE_MODELS

    assert set(SERVICE_MODELS) <= set(ESTIMATES)


def test_sample_course_budget_is_read() -> None:
    plan = make_plan(load_spec(sample_course_source() / "course.toml"))
    assert plan.budget == parse_size(plan.budget_text or "")
    assert plan.fits is not None


def test_budget_decides_whether_the_course_fits(workdir: Path) -> None:
    fits = make_plan(load_spec(course_with(workdir, "1G")))
    assert fits.budget == 1024**3 and fits.fits is True
    assert fits.verdict().startswith("Fits")
    tight = make_plan(load_spec(course_with(workdir, "200M")))
    assert tight.fits is False and tight.verdict().startswith("Does not fit")
    # Measured memory over the budget also counts, even when the estimate fits.
    busy = make_plan(
        load_spec(course_with(workdir, "1G")), measured={"postgres": 100 * MB, "jupyter": 1000 * MB}
    )
    assert busy.fits is False and "right now" in busy.verdict()


def test_bad_budget_names_file_line_and_key(workdir: Path) -> None:
    spec_path = course_with(workdir, "lots of memory")
    line = spec_path.read_text().splitlines().index('memory_budget = "lots of memory"') + 1
    with pytest.raises(SpecError) as caught:
        budget_of(load_spec(spec_path))
    rendered = caught.value.render()
    assert f"{spec_path}:{line}" in rendered
    assert "memory_budget" in rendered and "hint:" in rendered and '"1G"' in rendered

    result = cli("plan", str(spec_path), check=False)
    assert result.returncode == 2
    assert f"{spec_path}:{line}" in result.stderr and "Traceback" not in result.stderr


def test_plan_command_exit_status_follows_the_budget(workdir: Path) -> None:
    over = cli("plan", str(course_with(workdir, "200M")), check=False)
    assert over.returncode == 1, over.stderr
    assert "Does not fit" in over.stdout and "280 MB" in over.stdout
    fine = cli("plan", str(course_with(workdir, "2G")), "--json")
    data = json.loads(fine.stdout)
    assert data["fits"] is True and data["budget"] == 2 * 1024**3
    assert data["expected_total"] == 340 * MB and data["running"] is False
