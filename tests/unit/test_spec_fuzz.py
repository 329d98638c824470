"""Property-based tests: random and mutated TOML fed to the spec loader.

Whatever the text, `parse_spec` / `load_spec` either return a valid spec or raise a
SpecError that names the file and a line and carries a hint; never another exception.

Runs are random (`derandomize=False`): on a failure Hypothesis prints the failing example
and the seed. Replay a run with `pytest tests/unit/test_spec_fuzz.py --hypothesis-seed=N`, or
paste the printed `@reproduce_failure(...)` decorator onto the test.
"""

from __future__ import annotations

import contextlib
import math
import re
import string
import tempfile
import warnings
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coursestack.errors import SpecError
from coursestack.instances import sample_course_source
from coursestack.spec import CourseSpec, load_spec, parse_spec

with warnings.catch_warnings():
    # Hypothesis imports this (libcst, via mypy_extensions, warns) to print a patch for a
    # failing example; under `filterwarnings = error` that would hide the example.
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

PATH = Path("/courses/fuzz/course.toml")
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)

GOOD: dict[str, Any] = {
    "course": {"name": "tm351", "title": "Data management", "memory_budget": "1G"},
    "dashboard": {"port": 8700, "host": "127.0.0.1"},
    "services": {
        "db": {
            "kind": "postgres",
            "port": 5432,
            "database": "teaching",
            "seed": ["seed/teaching.sql"],
            "settings": {"shared_buffers": "64MB"},
        },
        "notebooks": {
            "kind": "jupyter",
            "depends_on": ["db"],
            "app": "lab",
            "args": ["--ServerApp.log_level=INFO"],
        },
        "api": {
            "kind": "command",
            "command": "python -m http.server {port}",
            "port": 9000,
            "depends_on": {"db": "started"},
            "probe": {"type": "http", "path": "/"},
            "env": {"MODE": "test"},
            "restart": "always",
            "start": "manual",
        },
    },
}
SAMPLE_TEXT = (sample_course_source() / "course.toml").read_text(encoding="utf-8")

# -- a small TOML writer (enough for the values the strategies make) --------------------


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            ch
            if ch.isprintable() and ch not in '"\\'
            else f"\\u{ord(ch):04x}"
            if ord(ch) < 0x10000
            else f"\\U{ord(ch):08x}"
            for ch in value
        )
        return f'"{escaped}"'
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def dump_toml(document: dict[str, Any]) -> str:
    """Top-level scalars, then [table] per dict, [services.NAME] per service."""
    lines = [
        f"{toml_key(k)} = {toml_value(v)}" for k, v in document.items() if not isinstance(v, dict)
    ]
    for key, table in document.items():
        if not isinstance(table, dict):
            continue
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines.append(f"\n[{toml_key(key)}]")
        lines += [
            f"{toml_key(k)} = {toml_value(v)}" for k, v in table.items() if not isinstance(v, dict)
        ]
        for name, sub in nested.items():
            if key == "services":
                lines.append(f"\n[{toml_key(key)}.{toml_key(name)}]")
                lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in sub.items()]
            else:
                lines.append(f"{toml_key(name)} = {toml_value(sub)}")
    return "\n".join(lines) + "\n"


# -- strategies -----------------------------------------------------------------------------

keys = st.one_of(
    st.sampled_from(
        [
            "name",
            "title",
            "kind",
            "port",
            "depends_on",
            "start",
            "restart",
            "env",
            "command",
            "probe",
            "type",
            "path",
            "status",
            "seed",
            "settings",
            "binaries",
            "notebooks",
            "app",
            "args",
            "memory_budget",
            "host",
            "start_timeout",
            "stop_timeout",
            "max_restarts",
            "probe_interval",
            "liveness_failures",
            "stop_signal",
            "web",
            "cwd",
            "database",
            "user",
            "burst",
            "interval",
            "stable_after",
            "down_timeout",
            "db",
            "api",
            "notebooks",
            "postgres",
            "jupyter",
            "command",
        ]
    ),
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12),
    st.text(min_size=1, max_size=8),
)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "postgres",
            "jupyter",
            "command",
            "ready",
            "started",
            "always",
            "manual",
            "on-demand",
            "never",
            "tcp",
            "http",
            "exec",
            "none",
            "db",
            "{port}",
            "{db.port}",
            "{nope.port}",
            "lab",
            "server",
            "SIGINT",
            "",
            "1G",
            "-1",
            "system",
            "pgserver",
        ]
    ),
    st.datetimes(),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=8,
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


def copy(document: Any) -> Any:
    if isinstance(document, dict):
        return {k: copy(v) for k, v in document.items()}
    if isinstance(document, list):
        return [copy(v) for v in document]
    return document


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """The good spec with 1-4 random edits: delete, replace, add or rename a key."""
    document: dict[str, Any] = copy(GOOD)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(paths(document)[1:]))
        parent: Any = document
        for part in where[:-1]:
            parent = parent[part]
        last = where[-1]
        action = draw(st.sampled_from(["delete", "replace", "add", "rename"]))
        if action == "delete":
            del parent[last]
        elif action == "replace":
            parent[last] = draw(values)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(keys)] = draw(values)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(keys)] = parent.pop(last)
        if not document:
            break
    return document


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """The sample course's text with random character- and line-level damage."""
    text = SAMPLE_TEXT
    for _ in range(draw(st.integers(1, 5))):
        lines = text.splitlines(keepends=True) or [""]
        action = draw(
            st.sampled_from(["insert", "delete", "dup-line", "drop-line", "swap-lines", "truncate"])
        )
        position = draw(st.integers(0, max(len(text) - 1, 0)))
        if action == "insert":
            snippet = draw(
                st.one_of(
                    st.text(max_size=5),
                    st.sampled_from(
                        ['"', "[", "]", "=", "\n", "{", "}", "#", "'''", '"""', "\\", ".", "\x00"]
                    ),
                )
            )
            text = text[:position] + snippet + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + draw(st.integers(1, 10)) :]
        elif action in ("dup-line", "drop-line", "swap-lines"):
            index = draw(st.integers(0, len(lines) - 1))
            other = draw(st.integers(0, len(lines) - 1))
            if action == "dup-line":
                lines.insert(index, lines[index])
            elif action == "drop-line":
                del lines[index]
            else:
                lines[index], lines[other] = lines[other], lines[index]
            text = "".join(lines)
        else:
            text = text[:position]
    return text


# -- the property ---------------------------------------------------------------------------


def assert_spec_or_clear_error(text: str) -> None:
    try:
        spec = parse_spec(text, PATH)
    except SpecError as error:
        assert_clear(error)
    else:
        assert_usable(spec)


def assert_clear(error: SpecError) -> None:
    rendered = error.render()
    if "at end of document" in rendered:
        # tomllib gives no line for this one; see test_toml_error_at_end_names_a_line.
        assert "/courses/fuzz/course.toml" in rendered, rendered
    else:
        assert re.search(r"/courses/fuzz/course\.toml:\d+", rendered), rendered
    assert error.hint.strip(), rendered
    assert "Traceback" not in rendered


def assert_usable(spec: CourseSpec) -> None:
    assert isinstance(spec, CourseSpec)
    waves = spec.start_order()
    assert sorted(name for wave in waves for name in wave) == sorted(spec.services)


@FUZZ
@given(st.text(max_size=400))
def test_random_text_gives_a_spec_or_a_clear_error(text: str) -> None:
    assert_spec_or_clear_error(text)


@FUZZ
@given(st.dictionaries(keys, values, max_size=4).map(dump_toml))
def test_random_toml_documents_give_a_spec_or_a_clear_error(text: str) -> None:
    assert_spec_or_clear_error(text)


@FUZZ
@given(mutated_documents().map(dump_toml))
def test_mutated_good_spec_gives_a_spec_or_a_clear_error(text: str) -> None:
    assert_spec_or_clear_error(text)


@FUZZ
@given(mutated_text())
def test_damaged_sample_text_gives_a_spec_or_a_clear_error(text: str) -> None:
    assert_spec_or_clear_error(text)


@FUZZ
@given(st.binary(max_size=300) | mutated_text().map(lambda t: t.encode("utf-8")))
def test_bytes_on_disk_give_a_spec_or_a_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "course.toml"
        path.write_bytes(data)
        try:
            spec = load_spec(path)
        except SpecError as error:
            rendered = error.render()
            assert str(path) in rendered and error.hint.strip(), rendered
        else:
            assert_usable(spec)


def test_the_writer_round_trips_the_good_spec() -> None:
    """The fuzzers' starting point is valid, so their mutations test the loader."""
    spec = parse_spec(dump_toml(GOOD), PATH)
    assert set(spec.services) == {"db", "notebooks", "api"}
    assert spec.course.memory_budget == "1G"


def test_toml_error_at_end_names_a_line() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec('[course]\nname = "x"\n0', PATH)
    assert re.search(r"course\.toml:\d+", caught.value.render())
