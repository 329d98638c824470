"""`python -m coursestack` is the same as the `coursestack` command (see entry.py: `up`
and `python -m coursestack daemon` go their way before the CLI's libraries load)."""

from coursestack.entry import main

main()
