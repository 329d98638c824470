"""`coursestack diagram`: the course spec drawn as SVG, DOT or Mermaid."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class DiagramFormat(StrEnum):
    """What `coursestack diagram` writes."""

    SVG = "svg"
    DOT = "dot"
    MERMAID = "mermaid"


def diagram(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="Path of a course.toml (or its folder). Without it: the embedded sample course.",
            show_default=False,
        ),
    ] = None,
    format: Annotated[
        DiagramFormat,
        typer.Option(
            "--format",
            "-f",
            help="svg (drawn by coursestack, or Graphviz with --graphviz), "
            "dot (Graphviz text) or mermaid (for Markdown docs).",
        ),
    ] = DiagramFormat.SVG,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of standard output.")
    ] = None,
    graphviz: Annotated[
        bool,
        typer.Option("--graphviz", help="Draw the SVG with Graphviz's `dot` when it is installed."),
    ] = False,
) -> None:
    """Draw the course: one box per service, one arrow per dependency, the front door."""
    from coursestack.diagram import graphviz_available, render
    from coursestack.instances import sample_course_source
    from coursestack.spec import load_spec

    course = load_spec(spec if spec is not None else sample_course_source() / "course.toml")
    if graphviz and format is DiagramFormat.SVG and not graphviz_available():
        typer.echo("Graphviz's `dot` is not installed: drawn by coursestack instead.", err=True)
    text = render(course, str(format), graphviz=graphviz)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}", err=True)
