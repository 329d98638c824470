"""The `coursestack` command's entry point: `up` and `daemon` before the CLI's libraries.

`coursestack up` forks its daemon (daemon_start.py) so the daemon needs no interpreter
and no imports of its own beyond what `up` had loaded; the fork must come before typer
and rich are imported, or the daemon would carry them (0.1-0.3 s and ~4 MB). So `up` is
recognised here and parsed by the option description it shares with typer's `up`
(up_options.py); everything else, `up --help` and any `up` this parser does not accept
included, goes to the full CLI (cli.py), which explains usage errors as before.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coursestack.up_options import UpRequest


def main() -> None:
    """Console entry point (`coursestack`, `python -m coursestack`)."""
    arguments = sys.argv[1:]
    if arguments[:1] == ["daemon"]:
        from coursestack.daemon import main as run_daemon_command

        sys.exit(run_daemon_command(arguments[1:]))
    if arguments[:1] == ["up"]:
        from coursestack.lean_imports import keep_out_unused_imports

        keep_out_unused_imports()  # httpx would bring click and rich into the daemon
        from coursestack.daemon_start import start_method
        from coursestack.up_options import parse_up

        request = parse_up(arguments[1:])
        if request is not None and start_method() == "fork":
            try:
                code = forked_up(request)
            except KeyboardInterrupt:
                code = 130
            sys.exit(code)
    from coursestack.cli import main as cli_main

    cli_main()


def yield_to_the_services() -> None:
    """Lower this process's priority: from now on it only watches and prints, and its
    imports (typer, rich) must not take a core from the services while they start (on a
    2-core machine Jupyter started 0.1-0.3 s slower beside them)."""
    import contextlib
    import os

    with contextlib.suppress(OSError, AttributeError):
        os.nice(10)


def until_first_news(fd: int | None, timeout: float) -> None:
    """Wait until the daemon first writes to the readiness pipe (or closes it).

    Until then the daemon imports what it needs and launches the services: the CLI's own
    imports (typer, rich: 0.1-0.3 s of CPU) would compete with it for the cores, on the
    way to the first launch. They load while the services start instead.
    """
    import select

    if fd is not None:
        select.select([fd], [], [], timeout)


def forked_up(request: UpRequest) -> int:
    """`up` with its daemon forked from this process before the CLI's libraries load."""
    from coursestack.daemon_start import fork_daemon
    from coursestack.errors import UserError
    from coursestack.up_flow import prepare_up

    try:
        prepared = prepare_up(request)
    except UserError as error:
        from coursestack.cli import print_error

        print_error(error.render())
        return error.exit_code
    started = None
    if not prepared.running and not prepared.update_due:
        state = prepared.instance.state
        started = fork_daemon(state.root, prepared.course, state.daemon_log)
        if not request.open_browser:  # a browser started by us would inherit it
            yield_to_the_services()
        until_first_news(started.notify_fd, request.timeout)
    from coursestack.cli import print_error, run_up

    try:
        return run_up(prepared, started)
    except UserError as error:
        print_error(error.render())
        return error.exit_code
    except KeyboardInterrupt:
        return 130
