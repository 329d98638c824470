"""`coursestack export`, `coursestack run` and `coursestack autostart`."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from coursestack.export import TARGET_NAMES

console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

Target = StrEnum("Target", {name: name for name in TARGET_NAMES})  # type: ignore[misc]

SpecArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Path of a course.toml (or its folder). Without it: the embedded sample course.",
        show_default=False,
    ),
]


def export(
    target: Annotated[Target, typer.Argument(help="Runtime to export to.", show_default=False)],
    spec: SpecArgument = None,
    *,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write (a folder; a file for z2jh, systemd and launchd).",
        ),
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")] = False,
) -> None:
    """Write the course as another runtime's configuration: image, z2jh, compose, binder,
    systemd or launchd. Says what a runtime cannot express, and what it did instead."""
    from coursestack.export.write import export_course

    written, warnings = export_course(str(target.value), spec, output, force)
    for warning in warnings:
        errors.print("warning:", style="bold yellow", end=" ")
        errors.print(warning.render(), markup=False, highlight=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False)


def run(
    spec: SpecArgument = None,
    instance: Annotated[str | None, typer.Option("--instance", "-i", help="Instance name.")] = None,
    state: Annotated[Path | None, typer.Option("--state", help="State folder.")] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Start only these services (and what they depend on)."),
    ] = None,
) -> None:
    """Run the course in the foreground until SIGTERM or Ctrl-C, then stop it cleanly
    (for containers, systemd and launchd; `up` runs it in the background)."""
    from coursestack.daemon import run_daemon
    from coursestack.instances import set_up_instance

    chosen, _ = set_up_instance(spec, instance, state, list(only or []))
    raise typer.Exit(run_daemon(chosen.state.root))


def register(app: typer.Typer) -> None:
    """Add these commands to the `coursestack` app."""
    from coursestack.export.autostart import autostart_app

    app.command("export")(export)
    app.command("run")(run)
    app.add_typer(
        autostart_app,
        name="autostart",
        help="Start the course's instance at login (systemd user unit or launchd agent).",
    )
