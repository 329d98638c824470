"""The `coursestack` command: typed subcommands, clients of the daemon's HTTP API.

Over 600 lines on purpose: every command is a short function (parse, call the API or a
library module, print), and keeping them in one place keeps the shared options, the
table rendering and the error printing in one place too. The work itself lives in the
modules each command imports lazily (start-up time of the CLI matters).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from coursestack import __version__
from coursestack.content import command as content_command
from coursestack.errors import UserError
from coursestack.export.cli import register as _register_export
from coursestack.up_options import INSTANCE_HELP, STATE_HELP, UP_OPTIONS
from coursestack.up_options import SPEC_HELP as UP_SPEC_HELP

if TYPE_CHECKING:
    from coursestack.api_types import ServiceView
    from coursestack.daemon_start import StartedDaemon
    from coursestack.instances import Instance
    from coursestack.readiness import Outcome
    from coursestack.up_flow import PreparedUp

app = typer.Typer(
    name="coursestack",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Run a course's data-science environment from one course.toml.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(width=None if sys.stdout.isatty() else 120)
errors = Console(stderr=True)

InstanceOption = Annotated[str | None, typer.Option("--instance", "-i", help=INSTANCE_HELP)]
StateOption = Annotated[Path | None, typer.Option("--state", help=STATE_HELP)]

STATE_STYLES = {
    "ready": "green",
    "starting": "yellow",
    "backoff": "yellow",
    "unhealthy": "dark_orange",
    "failed": "bold red",
    "stopping": "yellow",
    "stopped": "dim",
}
EXIT_NOT_RUNNING = 3


def print_error(message: str) -> None:
    """Print an error for a person (no markup: messages may hold [brackets])."""
    errors.print("error:", style="bold red", end=" ")
    errors.print(message, markup=False, highlight=False, soft_wrap=True)


def _instance(instance: str | None, state: Path | None) -> Instance:
    from coursestack.instances import resolve_instance

    return resolve_instance(instance, state)


def _services_table(services: list[ServiceView]) -> Table:
    from coursestack.units import format_duration, format_size

    table = Table(box=None, header_style="bold")
    for column in (
        "SERVICE",
        "KIND",
        "STATE",
        "PORT",
        "PID",
        "UPTIME",
        "RESTARTS",
        "MEMORY",
        "NOTE",
    ):
        table.add_column(column, no_wrap=column != "NOTE", overflow="fold")
    for service in services:
        state = service.state
        note = service.reason if state in ("failed", "backoff") else service.detail
        if state == "backoff" and service.detail:
            note = f"{service.detail}: {service.reason}"
        if service.note:
            note = f"{note} ({service.note})" if note else service.note
        # The kind's own label says what the service is, e.g. a stand-in for another.
        kind = service.kind + (f" ({service.label})" if service.label else "")
        table.add_row(
            service.name,
            kind,
            f"[{STATE_STYLES.get(state, '')}]{state}[/]",
            str(service.port or "-"),
            str(service.pid or "-"),
            format_duration(service.uptime),
            str(service.restarts),
            format_size(service.memory or None),
            note.splitlines()[0] if note else "",
        )
    return table


@app.command()
def up(
    spec: Annotated[Path | None, typer.Argument(help=UP_SPEC_HELP, show_default=False)] = None,
    instance: InstanceOption = None,
    state: StateOption = None,
    only: Annotated[list[str] | None, typer.Option("--only", help=UP_OPTIONS["only"].help)] = None,
    timeout: Annotated[float, typer.Option(help=UP_OPTIONS["timeout"].help)] = 300.0,
    open_browser: Annotated[
        bool, typer.Option("--open", help=UP_OPTIONS["open_browser"].help)
    ] = False,
) -> None:
    """Start the instance's daemon and wait until its services are ready."""
    from coursestack.up_flow import prepare_up
    from coursestack.up_options import UpRequest

    # entry.py usually runs `up` itself, forking the daemon before typer loads; here typer
    # is loaded already, so the daemon is spawned (COURSESTACK_DAEMON_START=spawn, Windows).
    request = UpRequest(spec, instance, state, tuple(only or ()), timeout, open_browser)
    code = run_up(prepare_up(request), None)
    if code:
        raise typer.Exit(code)


def run_up(prepared: PreparedUp, started: StartedDaemon | None) -> int:
    """The rest of `up` once the instance is set up: start the daemon unless `started`
    (entry.py forked it) or it runs already, show progress until every service is ready
    or one failed; the exit status."""
    for line in prepared.warnings:  # a broken kind package: the other kinds still work
        console.print(f"[yellow]warning:[/] {line}; its kinds cannot be used")
    chosen, course = prepared.instance, prepared.course
    if prepared.running:
        client = chosen.client()
        console.print(
            f"[bold]{chosen.name}[/] is already running (dashboard {client.url}); nothing changed."
        )
        console.print(_services_table(client.services()))
        console.print("Start one service with `coursestack start NAME`.")
        if prepared.request.open_browser:
            from coursestack.open_dashboard import open_dashboard

            open_dashboard(client, chosen.state.run)
        return 0
    if started is None:
        from coursestack.content.command import update_before_start
        from coursestack.daemon_start import start_daemon_for_up

        course = update_before_start(course, chosen.state, console)
        started = start_daemon_for_up(
            chosen.state.root, course, chosen.state.daemon_log, method="spawn"
        )
    console.print(
        f"Starting [bold]{course.course.title or course.course.name}[/] "
        f"(instance {chosen.name}, state in {chosen.state.root})"
    )
    try:
        outcome = _wait_for_up(chosen, started, prepared.wanted(course), prepared.request.timeout)
    finally:
        started.close()
    problem = _report_not_ready(outcome, prepared.request.timeout)
    # The record, not an API client (whose TLS set-up alone takes 20+ ms); no record: the
    # client says the daemon is not running.
    record = chosen.state.daemon() or chosen.client().record
    console.print(f"Dashboard: {record['url']}login?token={record['token']}")
    if prepared.request.open_browser:  # no secret on the browser's command line
        from coursestack.open_dashboard import open_dashboard

        open_dashboard(chosen.client(), chosen.state.run)
    return 1 if problem else 0


def _wait_for_up(chosen: Any, started: StartedDaemon, names: list[str], timeout: float) -> Outcome:
    """Progress until the named services are ready or one failed: read from the daemon's
    readiness pipe, or from its API where there is no pipe (or it was lost)."""
    from coursestack.instances import until_daemon_listens
    from coursestack.readiness import (
        PipeLost,
        Verdict,
        notifications,
        polled_services,
        wait_until_ready,
    )

    deadline = time.monotonic() + timeout
    with Live(console=console, auto_refresh=False) as live:

        def show(views: list[dict[str, Any]]) -> None:
            live.update(_services_table(_typed(views)), refresh=True)

        if started.notify_fd is not None:
            try:
                outcome = wait_until_ready(notifications(started.notify_fd, timeout), names, show)
                if outcome.verdict is not Verdict.WAITING or time.monotonic() >= deadline:
                    return outcome
            except PipeLost:
                pass
        until_daemon_listens(chosen, started.pid, started.exit_code, deadline)
        return wait_until_ready(
            polled_services(chosen.client(), max(0.0, deadline - time.monotonic())), names, show
        )


def _typed(views: list[dict[str, Any]]) -> list[ServiceView]:
    """Views from the readiness pipe or the wait as the API's type."""
    from coursestack.api_types import ServiceView

    return [ServiceView.model_validate(view) for view in views]


def _report_not_ready(outcome: Outcome, timeout: float) -> bool:
    """Say which named services are not ready and why; True if one is not."""
    console.print()
    problem = False
    for service in _typed(outcome.views):
        if service.state == "failed":
            problem = True
            print_error(f"{service.name} failed: {service.reason}")
            for line in service.last_log[-8:]:
                print(f"    {line}", file=sys.stderr)
        elif service.state != "ready":
            problem = True
            waiting = service.detail if service.detail.startswith("waiting for") else ""
            print_error(
                f"{service.name} not started: {waiting}, which failed"
                if waiting
                else f"{service.name} not ready after {timeout:g} s "
                f"({service.state}: {service.detail})"
            )
    if problem:
        errors.print("hint: `coursestack logs NAME` shows what the service said")
    return problem


@app.command()
def down(
    instance: InstanceOption = None,
    state: StateOption = None,
    timeout: Annotated[
        float | None,
        typer.Option(help="Seconds to wait (default: the course's down_timeout + 15)."),
    ] = None,
) -> None:
    """Stop every service and the daemon (data is kept)."""
    from coursestack.instances import stop_leftovers, wait_for_exit

    chosen = _instance(instance, state)
    if not chosen.daemon_alive():
        cleaned = stop_leftovers(chosen) if chosen.state.root.exists() else []
        if cleaned:
            console.print(f"Stopped processes a crashed daemon left: {', '.join(cleaned)}")
        console.print(f"{chosen.name} is not running.")
        return
    client = chosen.client()
    pid = client.pid
    if timeout is None:  # the daemon ends by its own deadline; a margin for its exit
        timeout = float(client.record.get("down_timeout", 45.0)) + 15.0
    client.shutdown()
    with console.status(f"Stopping {chosen.name}…"):
        if not wait_for_exit(pid, timeout):
            raise UserError(
                f"the daemon did not stop within {timeout:g} s",
                hint=f"kill it with `kill {pid}`; the next up cleans up",
            )
    console.print(f"{chosen.name} stopped; data kept in {chosen.state.root}")


@app.command()
def status(
    instance: InstanceOption = None,
    state: StateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Show each service's state (exit status 3 if the instance is not running)."""
    chosen = _instance(instance, state)
    if not chosen.daemon_alive():
        if as_json:
            print(json.dumps({"name": chosen.name, "running": False}))
        else:
            console.print(f"{chosen.name} is not running (start it with `coursestack up`).")
        raise typer.Exit(EXIT_NOT_RUNNING)
    data = chosen.client().instance_view()
    if as_json:
        print(json.dumps({**data.model_dump(), "running": True}, indent=2))
        return
    console.print(
        f"[bold]{data.title or data.course}[/] — instance {data.name}, dashboard {data.url}"
    )
    console.print(_services_table(data.services))


def _action(
    verb: Literal["start", "stop", "restart"], name: str, instance: str | None, state: Path | None
) -> None:
    from coursestack.readiness import polled_services, wait_until_ready

    chosen = _instance(instance, state)
    client = chosen.client()
    result = client.act(name, verb)
    if verb == "stop":
        console.print(f"{name}: {result.state}")
        return
    with console.status(f"{verb} {name}…"):
        outcome = wait_until_ready(polled_services(client, 300, interval=0.1), [name])
    service = _typed(outcome.views)[0]
    style = STATE_STYLES.get(service.state, "")
    console.print(
        f"{name}: [{style}]{service.state}[/]"
        + (f" — {service.reason}" if service.state == "failed" else "")
    )
    if not outcome.ready:
        raise typer.Exit(1)


ServiceArgument = Annotated[str, typer.Argument(help="Service name.", show_default=False)]


@app.command()
def start(
    name: ServiceArgument, instance: InstanceOption = None, state: StateOption = None
) -> None:
    """Start one service (and what it depends on)."""
    _action("start", name, instance, state)


@app.command()
def stop(name: ServiceArgument, instance: InstanceOption = None, state: StateOption = None) -> None:
    """Stop one service."""
    _action("stop", name, instance, state)


@app.command()
def restart(
    name: ServiceArgument, instance: InstanceOption = None, state: StateOption = None
) -> None:
    """Restart one service."""
    _action("restart", name, instance, state)


@app.command()
def logs(
    name: ServiceArgument,
    instance: InstanceOption = None,
    state: StateOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 50,
) -> None:
    """Print a service's log (works when the instance is down too)."""
    from coursestack.logs import tail_lines

    chosen = _instance(instance, state)
    known = set(chosen.spec().services) | {"daemon", "events"}
    if name not in known:
        raise UserError(f"no service named {name!r}", hint=f"services: {', '.join(sorted(known))}")
    path = chosen.state.events_file if name == "events" else chosen.state.log_file(name)
    for line in tail_lines(path, lines):
        print(line)
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    position = path.stat().st_size if path.exists() else 0
    try:
        while True:
            size = path.stat().st_size if path.exists() else 0
            if size < position:  # truncated or rotated
                position = 0
            if size > position:
                with open(path, "rb") as handle:
                    handle.seek(position)
                    chunk = handle.read()
                    position += len(chunk)
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
            time.sleep(0.25)
    except KeyboardInterrupt:
        pass


def _connections(chosen: Any) -> dict[str, Any]:
    from coursestack.state import read_json

    document = read_json(chosen.state.connections_file)
    if not document:
        raise UserError(
            f"instance {chosen.name!r} has no connection info yet",
            hint="run `coursestack up` first",
        )
    result: dict[str, Any] = document
    return result


@app.command()
def env(instance: InstanceOption = None, state: StateOption = None) -> None:
    """Print the environment variables notebooks see, as `export` lines for a shell."""
    import shlex

    chosen = _instance(instance, state)
    document = _connections(chosen)
    values: dict[str, str] = {
        "COURSESTACK_CONNECTIONS": str(chosen.state.connections_file),
        "COURSESTACK_INSTANCE": chosen.name,
    }
    for service in document["services"].values():
        for key, value in service["env"].items():
            values.setdefault(key, value)
    for key, value in values.items():
        print(f"export {key}={shlex.quote(str(value))}")


@app.command()
def connections(
    instance: InstanceOption = None,
    state: StateOption = None,
    reveal: Annotated[bool, typer.Option(help="Show passwords and tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Show where each service is, as notebooks see it (connections.json)."""
    from coursestack.connections import masked

    chosen = _instance(instance, state)
    document = _connections(chosen)
    shown = document if reveal else masked(document)
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for column in ("SERVICE", "KIND", "URL", "USER", "PASSWORD/TOKEN"):
        table.add_column(column)
    for service in shown["services"].values():
        table.add_row(
            service["service"],
            service["kind"],
            service["url"],
            service.get("user") or "-",
            service.get("password") or "-",
        )
    console.print(table)
    if not reveal:
        console.print("[dim]Secrets are masked; --reveal shows them.[/]")


@app.command("list")
def list_instances(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Every instance on this host for this user: course, spec, state, dashboard."""
    from coursestack.instances import Instance
    from coursestack.state import registered_instances

    rows = []
    for name, folder in registered_instances():
        record = folder.instance()
        found = Instance(name, folder)
        alive = found.daemon_alive()
        daemon = folder.daemon() if alive else None
        ready = total = 0
        if alive:
            try:
                services = found.client().services()
                total = len(services)
                ready = sum(1 for s in services if s.state == "ready")
            except UserError:
                pass
        rows.append(
            {
                "name": name,
                "course": record.get("course", ""),
                "spec": record.get("spec", ""),
                "state_folder": str(folder.root),
                "running": alive,
                "ready": ready,
                "services": total,
                "dashboard": daemon["url"] if daemon else None,
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("No instances yet; `coursestack up` starts the sample course.")
        return
    table = Table(box=None, header_style="bold")
    for column in ("INSTANCE", "COURSE", "STATE", "DASHBOARD", "SPEC", "STATE FOLDER"):
        table.add_column(column)
    for row in rows:
        state_text = (
            f"[green]running[/] ({row['ready']}/{row['services']} ready)"
            if row["running"]
            else "[dim]stopped[/]"
        )
        table.add_row(
            row["name"],
            row["course"],
            state_text,
            row["dashboard"] or "-",
            row["spec"],
            row["state_folder"],
        )
    console.print(table)


@app.command(hidden=True)
def daemon(state: Annotated[Path, typer.Option("--state", help="State folder.")]) -> None:
    """Run an instance's daemon in the foreground (`up` starts it in the background)."""
    from coursestack.daemon import run_daemon

    raise typer.Exit(run_daemon(state))


@app.command()
def version() -> None:
    """Print coursestack's version."""
    print(__version__)


DOCTOR_MARKS = {"ok": "[green]ok[/]  ", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


@app.command()
def doctor(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[PATH]",
            show_default=False,
            help="With --bundle: the zip file or folder to write (default: a dated file "
            "in the current folder).",
        ),
    ] = None,
    bundle: Annotated[
        bool,
        typer.Option(
            "--bundle",
            help="Also write a diagnostics zip for the support desk (passwords "
            "and tokens redacted).",
        ),
    ] = False,
    instance: InstanceOption = None,
    state: StateOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Check this computer and the instance; say what is wrong and what to do next.

    `coursestack doctor --bundle [PATH]` also writes a diagnostics zip. Exit status 1
    when something is wrong.
    """
    from rich.markup import escape

    from coursestack.doctor import run_doctor, summary, worst
    from coursestack.errors import UsageError

    if path is not None and not bundle:
        raise UsageError(
            f"{path} is where --bundle writes its zip",
            hint=f"run `coursestack doctor --bundle {path}`",
        )
    chosen = _instance(instance, state)
    findings = run_doctor(chosen)
    written = None
    if bundle:
        from coursestack.bundle import write_bundle

        written = write_bundle(chosen.state, path, findings)
    if as_json:
        print(
            json.dumps(
                {
                    "instance": chosen.name,
                    "status": worst(findings),
                    "findings": [f.as_dict() for f in findings],
                    "bundle": str(written) if written else None,
                },
                indent=2,
            )
        )
    else:
        for finding in findings:
            console.print(f"{DOCTOR_MARKS[finding.status]} {escape(finding.what)}", highlight=False)
            if finding.next_step and finding.status != "ok":
                console.print(f"      [bold]next:[/] {escape(finding.next_step)}", highlight=False)
        console.print()
        console.print(escape(summary(findings)), highlight=False)
        if written:
            console.print(
                f"Diagnostics bundle: {escape(str(written))} (passwords and "
                "tokens removed); send this file to your support desk.",
                highlight=False,
            )
    if worst(findings) == "fail":
        raise typer.Exit(1)


@app.command()
def plan(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="Path of a course.toml (default: the instance's course).", show_default=False
        ),
    ] = None,
    instance: InstanceOption = None,
    state: StateOption = None,
    kernels: Annotated[
        int, typer.Option(min=0, help="Open notebook kernels to plan for, per Jupyter service.")
    ] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Memory each service is expected to use, and whether the course fits its
    memory_budget (exit status 1 if not). Shows measured memory when running."""
    from rich.markup import escape

    from coursestack.plan import make_plan
    from coursestack.spec import load_spec
    from coursestack.units import format_size

    measured: dict[str, int | None] | None = None
    if spec is not None:
        course = load_spec(spec)
    else:
        from coursestack.instances import SAMPLE_INSTANCE, sample_course_source

        chosen = _instance(instance, state)
        if "spec" not in chosen.state.instance() and chosen.name == SAMPLE_INSTANCE:
            course = load_spec(sample_course_source() / "course.toml")  # what `up` runs
        else:
            course = chosen.spec()
        if chosen.daemon_alive():
            client = chosen.client()
            try:
                measured = {s.name: s.memory for s in client.services()}
            finally:
                client.close()
    result = make_plan(course, measured, kernels)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        table = Table(box=None, header_style="bold")
        for column in ("SERVICE", "KIND", "EXPECTED", "MEASURED", "BASIS"):
            table.add_column(column, no_wrap=column != "BASIS")
        for service in result.services:
            table.add_row(
                service.name,
                service.kind,
                format_size(service.expected),
                format_size(service.measured) if measured is not None else "-",
                escape(service.basis),
            )
            if service.start != "always":
                table.add_row("", "", "", "", f"[dim](starts on request: {service.start})[/]")
        table.add_row(
            "[bold]up starts[/]",
            "",
            f"[bold]{format_size(result.expected_total)}[/]",
            format_size(result.measured_total) if measured is not None else "-",
            f"budget {escape(result.budget_text)}" if result.budget_text else "no budget",
        )
        console.print(table)
        console.print(result.verdict(), markup=False, highlight=False)
    if result.fits is False:
        raise typer.Exit(1)


@app.command()
def passwd(
    instance: InstanceOption = None,
    state: StateOption = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the password (the token link still logs in).")
    ] = False,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the password from standard input (for scripts).")
    ] = False,
) -> None:
    """Set the dashboard password (stored hashed, owner-only, in the state folder)."""
    from coursestack.web.auth import clear_password, set_password

    chosen = _instance(instance, state)
    if clear:
        removed = clear_password(chosen.state)
        console.print("Password removed." if removed else "No password was set.")
        return
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New dashboard password", hide_input=True, confirmation_prompt=True)
    path = set_password(chosen.state, password)
    console.print(
        f"Dashboard password set for [bold]{chosen.name}[/] (hash in {path}); "
        "log in at the dashboard with it."
    )


def _backup_progress(task: Any) -> Any:
    """Run `task(reporter)` under a spinner; notes are printed as they come."""
    from rich.markup import escape

    from coursestack.backup import Reporter

    with console.status("working…") as spinner:
        reporter = Reporter(
            step=lambda message: spinner.update(escape(message)),
            note=lambda message: console.print(f"  {escape(message)}", highlight=False),
        )
        return task(reporter)


@app.command()
def backup(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Archive to write (a file or a folder). Default: "
            "<state>/backups/<instance>-<date>-<time>.coursestack.tar.gz.",
        ),
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Back up only these services.")
    ] = None,
    instance: InstanceOption = None,
    state: StateOption = None,
) -> None:
    """Write one archive with the instance's notebooks, databases and OpenRefine projects."""
    from coursestack.backup import create_backup
    from coursestack.units import format_size

    chosen = _instance(instance, state)
    result = _backup_progress(
        lambda reporter: create_backup(
            chosen, output.expanduser().resolve() if output else None, only or None, reporter
        )
    )
    for line in result.lines():
        console.print(f"  {line}", markup=False, highlight=False)
    console.print(
        f"Backup written: {result.path} ({format_size(result.size)}, {result.seconds:.1f} s)",
        markup=False,
        highlight=False,
    )
    console.print(
        f"Restore it with `coursestack restore {result.path}`.", markup=False, highlight=False
    )


@app.command()
def restore(
    archive: Annotated[
        Path,
        typer.Argument(
            help="A .coursestack.tar.gz archive written by `coursestack backup`.",
            show_default=False,
        ),
    ],
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Only check the archive (checksums, completeness); change nothing."
        ),
    ] = False,
    instance: InstanceOption = None,
    state: StateOption = None,
) -> None:
    """Rebuild an instance's data from a backup (the current data is backed up first)."""
    from coursestack.backup import check_archive, restore_backup
    from coursestack.backup.service import describe

    if check:
        with console.status("checking the archive…"):
            manifest = check_archive(archive.expanduser().resolve())
        console.print(
            f"{archive}: complete and intact — course {manifest.course}, instance "
            f"{manifest.instance}, made {manifest.created} by coursestack "
            f"{manifest.coursestack_version}",
            markup=False,
            highlight=False,
        )
        for name, entry in manifest.services.items():
            console.print(f"  {name}: {describe(entry)}", markup=False, highlight=False)
        return
    chosen = _instance(instance, state)
    result = _backup_progress(lambda reporter: restore_backup(chosen, archive, reporter))
    for line in result.restored:
        console.print(f"  restored {line}", markup=False, highlight=False)
    if result.untouched:
        console.print(
            f"  not in the backup, untouched: {', '.join(result.untouched)}",
            markup=False,
            highlight=False,
        )
    console.print(
        f"Restored {result.archive.name} into instance {chosen.name} in "
        f"{result.seconds:.1f} s; it is running.",
        markup=False,
        highlight=False,
    )
    if result.before is not None:
        console.print(
            f"The data it replaced is in {result.before.path}.", markup=False, highlight=False
        )


@app.command()
def reset(
    name: ServiceArgument, instance: InstanceOption = None, state: StateOption = None
) -> None:
    """Start one service again from its seed: back it up, wipe its data, start it."""
    from coursestack.backup import reset_service

    chosen = _instance(instance, state)
    result = _backup_progress(lambda reporter: reset_service(chosen, name, reporter))
    style = STATE_STYLES.get(result.state, "")
    console.print(f"{name} reset: [{style}]{result.state}[/]")
    raw = any(entry.get("format") == "raw" for entry in result.backup.manifest.services.values())
    undo = (
        f"a raw copy of its data folder: to go back, `coursestack down` and unpack "
        f"services/{name}/raw/ of it into data/{name}/"
        if raw
        else f"undo with `coursestack restore {result.backup.path}`"
    )
    console.print(
        f"Its previous data is in {result.backup.path} ({undo}).", markup=False, highlight=False
    )


@app.command()
def remove(
    instance: InstanceOption = None,
    state: StateOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Stop an instance and delete it: its state folder (data, backups) and its service
    account."""
    from coursestack.removal import remove_instance

    chosen = _instance(instance, state)
    if not yes:
        typer.confirm(
            f"Delete instance {chosen.name} and everything in {chosen.state.root}?", abort=True
        )
    done = remove_instance(chosen)
    console.print(
        f"Removed {chosen.name}: {done.state} deleted"
        + (f", account {done.account} removed" if done.account else ""),
        markup=False,
        highlight=False,
    )


def _register_author() -> None:
    try:
        from coursestack.authoring.cli import author_app
    except ImportError:  # the authoring tools are optional at runtime
        return
    app.add_typer(
        author_app, name="author", help="Course production tools: draft progress and OU-XML export."
    )


_register_author()
app.command("update")(content_command.update)
_register_export(app)
app.command()(__import__("coursestack.diagram_cli", fromlist=["diagram"]).diagram)
from coursestack.hub.cli import hub_app, singleuser  # noqa: E402 (typer-only imports)

app.add_typer(hub_app, name="hub")
app.command()(singleuser)


def main() -> None:
    """Console entry point: user errors are printed without a traceback."""
    try:
        app()
    except UserError as error:
        print_error(error.render())
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
