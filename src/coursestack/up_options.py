"""The options of `coursestack up`, described once.

Two parsers read this description: typer's `up` in cli.py (help, errors, `--help`) and
the fast entry (entry.py), which recognises `up` and parses it with argparse before the
CLI's libraries are imported, so that the daemon can be forked without them. A test
checks that both accept the same options.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPEC_HELP = "Path of a course.toml (or its folder). Without it: the embedded sample course."
INSTANCE_HELP = "Instance name (default: the only running one, else 'sample')."
STATE_HELP = "State folder of the instance (overrides --instance)."


@dataclass(frozen=True)
class UpOption:
    """One option of `up`: its flags, the Python type of its value, its help text."""

    dest: str
    flags: tuple[str, ...]
    type: type
    help: str
    default: Any = None
    multiple: bool = False

    @property
    def is_flag(self) -> bool:
        return self.type is bool


UP_OPTIONS: dict[str, UpOption] = {
    option.dest: option
    for option in (
        UpOption("instance", ("--instance", "-i"), str, INSTANCE_HELP),
        UpOption("state", ("--state",), Path, STATE_HELP),
        UpOption(
            "only",
            ("--only",),
            str,
            "Start only these services (and what they depend on).",
            multiple=True,
        ),
        UpOption("timeout", ("--timeout",), float, "Seconds to wait for readiness.", 300.0),
        UpOption("open_browser", ("--open",), bool, "Open the dashboard.", False),
    )
}


@dataclass(frozen=True)
class UpRequest:
    """What `up` was asked to do (from either parser)."""

    spec: Path | None = None
    instance: str | None = None
    state: Path | None = None
    only: tuple[str, ...] = ()
    timeout: float = 300.0
    open_browser: bool = False


class _NotForUs(Exception):
    """argparse could not parse the arguments: typer will, with its own messages."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        raise _NotForUs(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="coursestack up", add_help=False, allow_abbrev=False)
    parser.add_argument("spec", nargs="?", type=Path, default=None)
    for option in UP_OPTIONS.values():
        if option.is_flag:
            parser.add_argument(*option.flags, dest=option.dest, action="store_true")
        elif option.multiple:
            parser.add_argument(
                *option.flags, dest=option.dest, type=option.type, action="append", default=[]
            )
        else:
            parser.add_argument(
                *option.flags, dest=option.dest, type=option.type, default=option.default
            )
    return parser


def parse_up(arguments: list[str]) -> UpRequest | None:
    """`up`'s arguments (after the word `up`) as a request; None for `--help` or anything
    this parser does not accept, which the full CLI then handles (and explains)."""
    if any(argument in ("-h", "--help") for argument in arguments):
        return None
    try:
        parsed = _parser().parse_args(arguments)
    except (_NotForUs, ValueError):
        return None
    return UpRequest(
        spec=parsed.spec,
        instance=parsed.instance,
        state=parsed.state,
        only=tuple(parsed.only),
        timeout=parsed.timeout,
        open_browser=parsed.open_browser,
    )
