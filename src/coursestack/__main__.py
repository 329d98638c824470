"""`python -m coursestack` is the same as the `coursestack` command.

Except for `python -m coursestack daemon`, which is how `up` starts the daemon: it goes
straight to the daemon without importing the CLI's libraries (typer, rich: 0.1-0.3 s and
4 MB of the daemon's start-up and memory, see docs/benchmarks-core.md).
"""

import sys

if sys.argv[1:2] == ["daemon"]:
    from coursestack.daemon import main as run_daemon_command

    sys.exit(run_daemon_command(sys.argv[2:]))
else:
    from coursestack.cli import main

    main()
