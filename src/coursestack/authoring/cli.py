"""`coursestack author`: draft progress, OU-XML export and the OU-XML checker.

Every command prints problems as `file (place): severity: message`, prints UserErrors
without a traceback, and exits 1 when anything failed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from coursestack.authoring.metadata import parse_overrides
from coursestack.authoring.model import Problem
from coursestack.errors import UsageError, UserError

author_app = typer.Typer(
    name="author",
    no_args_is_help=True,
    help="Course production tools: draft progress and export to OU-XML.",
)

T = TypeVar("T")
MetaOption = Annotated[
    list[str] | None,
    typer.Option("--meta", "-m", help="Metadata override KEY=VALUE (repeatable); wins over files."),
]


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def _guard(fn: Callable[[], T]) -> T:
    """Run a command body, turning UserErrors into a message and an exit status."""
    try:
        return fn()
    except UserError as err:
        _console(stderr=True).print(Text(err.render(), style="red"))
        raise typer.Exit(err.exit_code) from None


def _overrides(meta: list[str] | None) -> dict[str, str]:
    try:
        return parse_overrides(meta or [])
    except ValueError as exc:
        raise UsageError(str(exc), hint="write --meta courseCode=TM351") from None


def _print_problems(problems: list[Problem]) -> None:
    err = _console(stderr=True)
    for p in problems:
        err.print(Text(p.render(), style="red" if p.severity == "error" else "yellow"))


@author_app.command()
def ouxml(
    target: Annotated[Path, typer.Argument(help="A .docx/.md/.odt document or a folder.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output folder (one document) or .zip (a folder)."),
    ] = None,
    meta: MetaOption = None,
    check: Annotated[
        bool, typer.Option(help="Check the XML against the schema and VLE rules.")
    ] = True,
    schema: Annotated[Path | None, typer.Option(help="OU-XML .xsd to check against.")] = None,
) -> None:
    """Convert a document, or every draft in a folder (to one zip), to OU-XML."""

    def run() -> None:
        from coursestack.authoring.export import export_path

        if not target.exists():
            raise UsageError("no such file or folder", where=str(target))
        report = export_path(target, output, _overrides(meta), check, schema)
        problems = [*report.problems]
        for exp in report.exports:
            problems.extend(exp.problems)
        _print_problems(sorted(set(problems), key=lambda p: (p.file, p.severity, p.where)))
        done = len(report.exports) - len(report.failed)
        out = _console()
        out.print(f"exported {done} of {len(report.exports)} document(s) to {report.output}")
        for exp in report.failed:
            out.print(Text(f"failed: {exp.name}", style="red"))
        if not report.ok:
            raise typer.Exit(1)

    _guard(run)


@author_app.command()
def check(
    file: Annotated[Path, typer.Argument(help="An OU-XML file, or a .zip made by `ouxml`.")],
    schema: Annotated[Path | None, typer.Option(help="OU-XML .xsd to check against.")] = None,
) -> None:
    """Check OU-XML against the OU schema and the VLE's further rules."""

    def run() -> None:
        from coursestack.authoring.ouxml_check import check_path

        problems = check_path(file, schema)
        _print_problems(problems)
        if problems:
            _console().print(f"{file}: {len(problems)} problem(s)")
            raise typer.Exit(1)
        _console().print(f"{file}: valid OU-XML")

    _guard(run)


def _bar(percent: float | None, overrun: bool, width: int = 20) -> Text:
    if percent is None:
        return Text("(no target)", style="dim")
    cells = round(min(max(percent, 0.0), 100.0) / 100 * width)
    bar = Text("\u2588" * cells, style="green" if percent >= 100 else "blue")
    bar.append("\u2591" * (width - cells), style="dim")
    if percent > 100:
        extra = max(1, round((min(percent, 150.0) - 100) / 100 * width))
        bar.append("\u2588" * extra, style="red" if overrun else "yellow")
    return bar


def _table(report: object) -> Table:
    from coursestack.authoring.progress import ProgressReport

    assert isinstance(report, ProgressReport)
    table = Table(title=f"Draft progress {report.course}".strip())
    for col in ("Draft", "Progress", "%", "Amount", "Status", "Deadline"):
        # The bar must never wrap or be cut: it is the point of the table.
        table.add_column(
            col,
            justify="right" if col in {"%", "Amount"} else "left",
            no_wrap=col in {"Draft", "Progress", "%", "Status"},
            min_width=30 if col == "Progress" else None,
        )
    for item in report.items:
        amount = (
            "task"
            if item.task
            else (
                f"{item.value:g}"
                + (f"/{item.target:g}" if item.target else "")
                + f" {item.measure}"
            )
        )
        due = ""
        if item.days_left is not None:
            due = (
                f"{item.days_left}d left" if item.days_left >= 0 else f"overdue {-item.days_left}d"
            )
            if item.per_day is not None:
                due += f", {item.per_day:g} {item.measure}/day"
        status_style = {"done": "green", "overrun": "red", "failed": "red"}.get(item.status, "")
        table.add_row(
            item.path,
            _bar(item.percent, item.overrun),
            "" if item.percent is None else f"{item.percent:g}%",
            amount,
            Text(item.status, style=status_style),
            due,
        )
    return table


@author_app.command()
def progress(
    folder: Annotated[Path, typer.Argument(help="Folder of drafts.")],
    by: Annotated[str | None, typer.Option(help="Measure: words, lines or pages.")] = None,
    words_per_page: Annotated[float | None, typer.Option(help="Words per page.")] = None,
    deadline: Annotated[str | None, typer.Option(help="Deadline YYYY-MM-DD for all.")] = None,
    alert_command: Annotated[
        str | None, typer.Option(help="Program to run per alert (message on stdin).")
    ] = None,
    alerts: Annotated[bool, typer.Option(help="Raise threshold alerts.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    html: Annotated[Path | None, typer.Option(help="Write the HTML progress page here.")] = None,
    watch: Annotated[bool, typer.Option(help="Refresh until interrupted.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 30.0,
    iterations: Annotated[int, typer.Option(hidden=True)] = 0,
    today: Annotated[str | None, typer.Option(hidden=True)] = None,
    meta: MetaOption = None,
) -> None:
    """Show how far along every draft in a folder is (table, --json, --html)."""

    def run() -> None:
        from coursestack.authoring.progress import progress_report
        from coursestack.authoring.progress_html import render_html

        if not folder.is_dir():
            raise UsageError("not a folder", where=str(folder))
        overrides = _overrides(meta)
        for key, value in (
            ("measure", by),
            ("words_per_page", words_per_page),
            ("deadline", deadline),
            ("alert_command", alert_command),
        ):
            if value is not None:
                overrides[key] = str(value)
        try:
            day = date.fromisoformat(today) if today else None
        except ValueError:
            raise UsageError(f"--today {today!r} is not YYYY-MM-DD") from None
        out = _console()
        count = 0
        failed = False
        while True:
            report = progress_report(folder, overrides, day, alerts)
            failed = report.failed
            if html is not None:
                html.write_text(render_html(report, interval if watch else None), encoding="utf-8")
            if as_json:
                typer.echo(report.to_json())
            else:
                if watch:
                    out.clear()
                out.print(_table(report))
                for alert in report.alerts:
                    out.print(Text(f"ALERT {alert}", style="bold magenta"))
            _print_problems(report.problems)
            count += 1
            if not watch or (iterations and count >= iterations):
                break
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                break
        if failed:
            raise typer.Exit(1)

    _guard(run)
