"""The course spec: valid specs load; every kind of mistake is refused with file, line,
key and a hint, before anything starts (exit status 2, no traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coursestack.errors import SpecError
from coursestack.instances import sample_course_source
from coursestack.spec import (
    CommandService,
    DependencyCondition,
    JupyterService,
    PostgresService,
    dependency_waves,
    load_spec,
    parse_spec,
)
from support import cli

GOOD = """\
[course]
name = "tm351"
title = "Data management"

[services.db]
kind = "postgres"
port = 5432

[services.notebooks]
kind = "jupyter"
depends_on = ["db"]

[services.api]
kind = "command"
command = "python -m http.server {port}"
port = 9000
depends_on = { db = "started" }
"""


def problems_of(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, Path("/courses/c/course.toml"))
    return caught.value.render()


def test_sample_course_loads() -> None:
    spec = load_spec(sample_course_source() / "course.toml")
    assert spec.course.name == "sample"
    assert isinstance(spec.services["postgres"], PostgresService)
    assert isinstance(spec.services["jupyter"], JupyterService)
    assert spec.start_order() == [["mongo", "openrefine", "postgres"], ["jupyter"]]


def test_good_spec_types_and_defaults() -> None:
    spec = parse_spec(GOOD, Path("/courses/c/course.toml"))
    api = spec.services["api"]
    assert isinstance(api, CommandService)
    assert api.command == ["python", "-m", "http.server", "{port}"]
    assert api.depends_on == {"db": DependencyCondition.STARTED}
    assert spec.services["notebooks"].depends_on == {"db": DependencyCondition.READY}
    assert spec.start_order() == [["db"], ["api", "notebooks"]]
    assert spec.resolve("notebooks") == Path("/courses/c/notebooks")
    assert spec.with_dependencies(["notebooks"]) == {"notebooks", "db"}


def test_bad_toml_names_the_line() -> None:
    text = GOOD.replace("port = 9000", "port = 9000 oops")
    message = problems_of(text)
    line = text.splitlines().index("port = 9000 oops") + 1
    assert f"course.toml:{line}" in message
    assert "not valid TOML" in message


def test_unknown_key_suggests_the_right_one() -> None:
    text = GOOD.replace("port = 5432", "prot = 5432")
    message = problems_of(text)
    line = text.splitlines().index("prot = 5432") + 1
    assert f"course.toml:{line}: services.db.prot: unknown key 'prot'" in message
    assert "did you mean 'port'?" in message


def test_wrong_type_names_key_and_value() -> None:
    text = GOOD.replace("port = 5432", 'port = "fifty"')
    message = problems_of(text)
    line = text.splitlines().index('port = "fifty"') + 1
    assert f"course.toml:{line}: services.db.port" in message
    assert "'fifty'" in message
    assert "Preferred port" in message  # the setting's own help text is the hint


def test_unknown_kind_lists_known_kinds() -> None:
    message = problems_of(GOOD.replace('kind = "postgres"', 'kind = "postgress"'))
    assert "unknown kind 'postgress'" in message
    assert "did you mean 'postgres'?" in message
    assert "known kinds: command, jupyter, mongodb, mongodb-lite, openrefine, postgres" in message


def test_dependency_on_missing_service() -> None:
    message = problems_of(GOOD.replace('depends_on = ["db"]', 'depends_on = ["dbb"]'))
    assert "depends on 'dbb', which is not a service here" in message
    assert "did you mean 'db'?" in message


def test_dependency_cycle() -> None:
    text = GOOD.replace("port = 5432", 'port = 5432\ndepends_on = ["notebooks"]')
    message = problems_of(text)
    assert "dependency cycle: db -> notebooks -> db" in message


def test_several_problems_reported_together() -> None:
    text = GOOD.replace("port = 5432", "prot = 5432").replace('kind = "jupyter"', 'kind = "x"')
    message = problems_of(text)
    assert "2 problem(s)" in message
    assert "prot" in message and "unknown kind 'x'" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[course]\nname = "Bad Name"\n[services.a]\nkind = "jupyter"\n', "course.name"),
        ('[course]\nname = "c"\n', "missing key 'services'"),
        ('[course]\nname = "c"\n[services.Bad_Name]\nkind = "jupyter"\n', "not allowed"),
        ('[course]\nname = "c"\n[services.a]\nport = 1\n', "missing key 'kind'"),
        (
            '[course]\nname = "c"\n[services.a]\nkind = "command"\ncommand = []\n',
            "command must name a program",
        ),
        (
            '[course]\nname = "c"\n[services.a]\nkind = "command"\ncommand = "x"\n',
            'a "tcp" probe needs a port',
        ),
        (
            '[course]\nname = "c"\n[services.a]\nkind = "jupyter"\nstart = "sometimes"\n',
            "services.a.start",
        ),
        (
            '[course]\nname = "c"\n[services.a]\nkind = "jupyter"\nport = 70000\n',
            "less than or equal to 65535",
        ),
        (
            '[course]\nname = "c"\n[services.a]\nkind = "jupyter"\ndepends_on = ["a"]\n',
            "depends on itself",
        ),
        (
            '[course]\nname = "c"\nflavour = 1\n[services.a]\nkind = "jupyter"\n',
            "unknown key 'flavour'",
        ),
    ],
)
def test_mistakes_a_hurried_course_team_makes(text: str, expected: str) -> None:
    assert expected in problems_of(text)


def test_missing_file_and_folder_argument(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no course spec here"):
        load_spec(tmp_path / "nope.toml")
    (tmp_path / "course.toml").write_text(GOOD)
    assert load_spec(tmp_path).course.name == "tm351"


def test_dependency_waves_are_levels() -> None:
    assert dependency_waves({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}) == [
        ["a"],
        ["b", "c"],
        ["d"],
    ]
    with pytest.raises(ValueError, match="x -> y -> x"):
        dependency_waves({"x": ["y"], "y": ["x"]})


def test_cli_refuses_bad_spec_with_exit_2_and_no_traceback(workdir: Path) -> None:
    spec = workdir / "course.toml"
    spec.write_text(GOOD.replace("port = 5432", "prot = 5432"))
    result = cli("up", str(spec), "--state", str(workdir / "state"), check=False)
    assert result.returncode == 2
    assert "unknown key 'prot'" in result.stderr
    assert f"{spec}:7" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (workdir / "state" / "run" / "daemon.json").exists()


def test_every_setting_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "spec.md").read_text(encoding="utf-8")
    from coursestack.spec import (
        SERVICE_MODELS,
        CourseInfo,
        DashboardSettings,
        LogSettings,
        ProbeSettings,
    )

    models = [CourseInfo, DashboardSettings, LogSettings, ProbeSettings, *SERVICE_MODELS.values()]
    missing = sorted(
        {f"{m.__name__}.{f}" for m in models for f in m.model_fields if f"`{f}`" not in doc}
    )
    assert not missing, f"docs/spec.md does not document: {missing}"
