"""Editing course.toml for the composer: bytes kept, problems located, careful saves."""

from __future__ import annotations

import contextlib
import copy
import tomllib
import warnings
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coursestack.errors import SpecError
from coursestack.instances import sample_course_source
from coursestack.respec import compare
from coursestack.spec import load_spec, parse_spec
from coursestack.spec_edit import SpecConflict, check_text, compose, read_spec_text, save

with warnings.catch_warnings():
    # Hypothesis imports this (libcst, via mypy_extensions, warns) to print a patch for a
    # failing example; under `filterwarnings = error` that would hide the example.
    warnings.simplefilter("ignore", DeprecationWarning)
    with contextlib.suppress(ImportError):
        import hypothesis.extra._patching  # noqa: F401

HAND_WRITTEN = (
    "# Written by hand: odd spacing, comments everywhere, CRLF line ends.\r\n"
    "[course]\r\n"
    'name   =   "hand"   # the name\r\n'
    "\r\n"
    "[services.db]\r\n"
    "kind = 'postgres'\r\n"
    "port = 5432 # preferred\r\n"
    "\r\n"
    "[services.web]\r\n"
    'kind = "command"\r\n'
    'command = "python3 -m http.server {port}"\r\n'
    "port = 8000\r\n"
    'depends_on = [ "db" ]   # wait for the database\r\n'
)


def write(folder: Path, text: str) -> Path:
    path = folder / "course.toml"
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "text",
    [
        HAND_WRITTEN,
        (sample_course_source() / "course.toml").read_text(encoding="utf-8"),
    ],
)
def test_unchanged_data_gives_the_same_bytes(text: str) -> None:
    assert compose(text, tomllib.loads(text)) == text


def test_an_edit_keeps_comments_and_order() -> None:
    data = tomllib.loads(HAND_WRITTEN)
    data["services"]["db"]["port"] = 5433
    data["services"]["cache"] = {"kind": "mongodb-lite", "depends_on": {"db": "started"}}
    text = compose(HAND_WRITTEN, data)
    assert "port = 5433 # preferred" in text
    assert "# wait for the database" in text and 'name   =   "hand"   # the name' in text
    assert text.index("[services.web]") < text.index("[services.cache]")
    spec = parse_spec(text, Path("course.toml"))
    assert list(spec.services) == ["db", "web", "cache"]
    assert spec.services["cache"].depends_on == {"db": "started"}


def test_removing_a_service_and_a_key() -> None:
    data = tomllib.loads(HAND_WRITTEN)
    del data["services"]["db"]
    del data["services"]["web"]["depends_on"]
    text = compose(HAND_WRITTEN, data)
    assert "[services.db]" not in text and "depends_on" not in text
    assert list(parse_spec(text, Path("course.toml")).services) == ["web"]


#: case -> (services added to HAND_WRITTEN, key, words of the message, line it points at)
BAD = {
    "cycle": (
        '[services.a]\nkind = "postgres"\ndepends_on = ["b"]\n'
        '[services.b]\nkind = "postgres"\ndepends_on = ["a"]\n',
        "services.a.depends_on",
        "dependency cycle: a -> b -> a",
        'depends_on = ["b"]',
    ),
    "missing dependency": (
        '[services.c]\nkind = "postgres"\ndepends_on = ["cache"]\n',
        "services.c.depends_on",
        "depends on 'cache'",
        'depends_on = ["cache"]',
    ),
    "unknown kind": (
        '[services.c]\nkind = "postgress"\n',
        "services.c.kind",
        "unknown kind 'postgress'",
        'kind = "postgress"',
    ),
    "invalid port": (
        '[services.c]\nkind = "postgres"\nport = 70000\n',
        "services.c.port",
        "less than or equal to 65535",
        "port = 70000",
    ),
    "duplicate name": (
        '[services.web]\nkind = "jupyter"\n',
        "",
        "not valid TOML",
        "[services.web]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_problems_name_the_line_and_key_like_up_does(case: str, workdir: Path) -> None:
    extra, key, message, line_text = BAD[case]
    text = HAND_WRITTEN.replace("\r\n", "\n") + extra
    path = write(workdir, text)
    checked = check_text(text, path)
    assert checked.spec is None
    problem = next(p for p in checked.problems if message in p.message)
    assert problem.key == key
    lines = text.splitlines()
    expected = len(lines) - lines[::-1].index(line_text)  # its last occurrence
    assert problem.line == expected, (problem, lines[problem.line - 1])
    with pytest.raises(SpecError) as raised:  # `up` prints the same words at the same line
        load_spec(path)
    shown = raised.value.render()
    assert f"course.toml:{problem.line}" in shown
    assert message in shown


def test_save_keeps_a_backup_and_refuses_a_stale_version(workdir: Path) -> None:
    path = write(workdir, HAND_WRITTEN)
    _text, version = read_spec_text(path)
    data = tomllib.loads(HAND_WRITTEN)
    data["services"]["db"]["port"] = 5433
    saved = save(path, compose(HAND_WRITTEN, data), version)
    assert saved.changed and saved.backup is not None
    assert saved.backup.read_bytes() == HAND_WRITTEN.encode()
    assert load_spec(path).services["db"].port == 5433
    # Another tab still holds the old version: refused, nothing written.
    before = path.read_bytes()
    with pytest.raises(SpecConflict) as conflict:
        save(path, HAND_WRITTEN, version)
    assert conflict.value.current_version == saved.version
    assert path.read_bytes() == before


def test_save_writes_nothing_while_the_spec_is_invalid(workdir: Path) -> None:
    path = write(workdir, HAND_WRITTEN)
    _text, version = read_spec_text(path)
    broken = HAND_WRITTEN + '[services.db2]\nkind = "postgres"\ndepends_on = ["db2"]\n'
    with pytest.raises(SpecError) as raised:
        save(path, broken, version)
    assert raised.value.problems[0][1] == "services.db2.depends_on"
    assert path.read_bytes() == HAND_WRITTEN.encode()
    assert not (workdir / "course.toml.bak").exists()


def test_saving_unchanged_text_writes_nothing(workdir: Path) -> None:
    path = write(workdir, HAND_WRITTEN)
    text, version = read_spec_text(path)
    assert text == HAND_WRITTEN  # read without newline translation
    saved = save(path, text, version)
    assert not saved.changed and saved.version == version
    assert not (workdir / "course.toml.bak").exists()


def test_compare_sorts_services_by_what_happened() -> None:
    old = parse_spec(HAND_WRITTEN, Path("course.toml"))
    data = copy.deepcopy(tomllib.loads(HAND_WRITTEN))
    data["services"]["web"]["port"] = 8001
    data["services"]["cache"] = {"kind": "mongodb-lite"}
    new = parse_spec(compose(HAND_WRITTEN, data), Path("course.toml"))
    changes = compare(old, new)
    assert (changes.added, changes.removed, changes.changed, changes.unchanged) == (
        ["cache"],
        [],
        ["web"],
        ["db"],
    )


def test_text_nested_too_deeply_is_a_problem_not_a_crash() -> None:
    checked = check_text("x = " + "[" * 20000 + "]" * 20000, Path("course.toml"))
    assert checked.spec is None and checked.data is None
    assert checked.problems[0].message == "not valid TOML: nested too deeply"


# -- properties: whatever the spec, an edit lands exactly, and no edit changes nothing ----

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
SCALARS = st.one_of(
    st.integers(-(10**6), 10**6),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
)
# Tables are never empty here: the composer drops a table it empties ("probe = {}" says
# nothing), and an empty table whose keys were all sub-tables would vanish from the text.
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(SCALARS, max_size=3), st.dictionaries(NAMES, inner, min_size=1, max_size=3)
    ),
    max_leaves=6,
)
SERVICES = st.dictionaries(
    NAMES,
    st.dictionaries(NAMES, VALUES, max_size=4).map(lambda s: {"kind": "command", **s}),
    min_size=1,
    max_size=4,
)
DATA = st.fixed_dictionaries(
    {"course": st.fixed_dictionaries({"name": NAMES}), "services": SERVICES}
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DATA, DATA)
def test_compose_writes_exactly_the_data_and_keeps_what_did_not_change(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    text = tomlkit.dumps(before)
    assert compose(text, before) == text  # nothing changed: the same bytes
    edited = compose(text, after)
    assert tomllib.loads(edited) == after  # every change landed, nothing else crept in
