"""`coursestack update`, and the update `up` runs before Jupyter starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:  # imported when used: the CLI starts faster without them
    from coursestack.content.report import Report
    from coursestack.spec import CourseSpec
    from coursestack.state import StateFolder


def update(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="Path of a course.toml (or its folder). Default: the instance's course.",
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Show what would happen; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    instance: Annotated[
        str | None,
        typer.Option(
            "--instance",
            "-i",
            help="Instance name (default: the only running one, else the course's name).",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="State folder of the instance (overrides --instance)."),
    ] = None,
) -> None:
    """Fetch the course's new material and deliver it without overwriting your work.

    Works whether the instance runs or not. Files you changed are kept (notebooks are
    merged cell by cell); every file is listed with what was done to it.
    """
    from coursestack.content.update import run_update

    course, folder = _course_and_state(spec, instance, state)
    report = run_update(course, folder, check=check)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return
    print_report(report, Console())


def print_report(report: Report, console: Console) -> None:
    """The report as plain lines (no markup: file names may hold [brackets])."""
    for line in report.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _course_and_state(
    spec: Path | None, instance: str | None, state: Path | None
) -> tuple[CourseSpec, StateFolder]:
    from coursestack.instances import resolve_instance
    from coursestack.spec import load_spec

    if spec is None:
        chosen = resolve_instance(instance, state)
        return chosen.spec(), chosen.state
    course = load_spec(spec)
    return course, resolve_instance(instance or course.course.name, state).state


def update_before_start(course: CourseSpec, folder: StateFolder, console: Console) -> CourseSpec:
    """With `update = "on-up"`: update before the services start, and return the spec
    this start must use (the course's new one if the update delivered one). A failure
    (offline, say) is a warning: the course starts with the material it has."""
    from coursestack.content.update import run_update
    from coursestack.errors import UserError
    from coursestack.spec import load_spec

    if course.content is None or course.content.update != "on-up":
        return course
    try:
        with console.status("Updating the course material…"):
            report = run_update(course, folder)
    except UserError as error:
        console.print(
            f"warning: the course material was not updated: {error.render()}",
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return course
    if any(entry.changed for entry in report.entries) or report.notes:
        print_report(report, console)
    # The daemon reads the spec file when it starts: the CLI must agree with it.
    return load_spec(course.path)
