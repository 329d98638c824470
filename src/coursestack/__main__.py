"""`python -m coursestack` is the same as the `coursestack` command."""

from coursestack.cli import main

main()
