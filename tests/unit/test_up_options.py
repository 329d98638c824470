"""`up`'s options are described once (up_options.py): typer's `up` and the fast entry's
parser accept the same options with the same meaning."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer.main

from coursestack.cli import app
from coursestack.up_options import UP_OPTIONS, UpRequest, parse_up


def _typer_up() -> Any:
    """typer's `up` as the click command it builds (typer >= 0.26 vendors click)."""
    return typer.main.get_command(app).commands["up"]  # type: ignore[attr-defined]


def _options() -> dict[str, Any]:
    return {
        p.name: p
        for p in _typer_up().params
        if type(p).__name__ == "TyperOption" and p.name != "help"
    }


def _python_type(parameter: Any) -> type:
    """The type of one value of the option (list[str] for a repeated one: str)."""
    annotation = parameter.type_descriptor.annotation
    arguments = getattr(annotation, "__args__", None)
    return arguments[0] if parameter.multiple and arguments else annotation  # type: ignore[no-any-return]


def test_typer_up_has_exactly_the_described_options() -> None:
    options = _options()
    assert set(options) == set(UP_OPTIONS)
    for name, described in UP_OPTIONS.items():
        option = options[name]
        assert set(option.opts) == set(described.flags), name
        assert not option.secondary_opts, name  # no --no-open either side
        assert option.multiple == described.multiple, name
        assert option.is_flag == described.is_flag, name
        assert _python_type(option) is described.type, name
        assert option.help == described.help, name
        if not described.multiple:
            assert option.default == described.default, name
    arguments = [p for p in _typer_up().params if type(p).__name__ == "TyperArgument"]
    assert [a.name for a in arguments] == ["spec"]


@pytest.mark.parametrize(
    "arguments",
    [
        [],
        ["course.toml"],
        ["course.toml", "--state", "/tmp/s", "--only", "jupyter", "--only", "postgres"],
        ["-i", "demo", "--timeout", "12.5", "--open"],
        ["--instance=demo", "--only=postgres", "folder"],
        ["-idemo", "--state", "relative/state"],
    ],
)
def test_both_parsers_read_the_same_arguments_the_same_way(arguments: list[str]) -> None:
    context = _typer_up().make_context("up", list(arguments))
    params: dict[str, Any] = context.params
    ours = parse_up(arguments)
    assert ours == UpRequest(
        spec=params["spec"],
        instance=params["instance"],
        state=params["state"],
        only=tuple(params["only"] or ()),
        timeout=params["timeout"],
        open_browser=params["open_browser"],
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ["--help"],
        ["-h"],
        ["--bogus"],
        ["--timeout", "soon"],
        ["a", "b"],
        ["--inst", "x"],
        ["--open=yes"],
    ],
)
def test_what_the_fast_parser_does_not_take_goes_to_typer(arguments: list[str]) -> None:
    assert parse_up(arguments) is None


def test_up_help_and_usage_errors_still_come_from_typer() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "coursestack", "up", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    for option in UP_OPTIONS.values():
        assert option.flags[0] in shown.stdout
    wrong = subprocess.run(
        [sys.executable, "-m", "coursestack", "up", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert wrong.returncode == 2
    assert "No such option" in wrong.stderr and "Traceback" not in wrong.stderr
