"""Errors a user can cause: each says what happened, where, and what to do next.

They are caught at the CLI edge and printed without a traceback (exit code 2 for a bad
spec or bad arguments, 1 for a runtime failure).
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; `hint` says how."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "", where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def render(self) -> str:
        """The message as shown to a person: where, what, and what to do."""
        lines = []
        lines.append(f"{self.where}: {self.message}" if self.where else self.message)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


class SpecError(UserError):
    """The course spec is invalid; nothing was started."""

    exit_code = 2
    #: Each problem as (line, dotted key, message, hint): editors point at the key.
    problems: tuple[tuple[int, str, str, str], ...] = ()


class UsageError(UserError):
    """The command line asked for something that cannot be done as asked."""

    exit_code = 2


class MissingBinaryError(UserError):
    """A program a service needs is not installed."""


class DaemonError(UserError):
    """The instance's daemon is not running or did not answer."""
