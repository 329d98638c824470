"""Kinds found through the `coursestack.kinds` entry points: built-ins, broken targets,
unknown kinds (the venv with kinds from other packages is in tests/integration/)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from coursestack import registry
from coursestack.kinds import KINDS
from coursestack.registry import BUILTIN, Registry

ROOT = Path(__file__).resolve().parents[2]


def test_builtin_kinds_are_the_entry_points_in_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["coursestack.kinds"] == BUILTIN
    assert set(BUILTIN) == set(KINDS)
    for name, target in BUILTIN.items():
        module, _, attribute = target.partition(":")
        assert KINDS[name].__module__ == module and KINDS[name].__name__ == attribute


def test_a_broken_target_is_a_problem_and_the_others_load() -> None:
    found = Registry(
        targets={**BUILTIN, "nope": "no_such_module_anywhere:Kind"}, packages={"nope": "nope-kind"}
    )
    loaded = found.load_all()
    assert set(loaded) == set(BUILTIN)
    assert [problem.package for problem in found.problems] == ["nope-kind"]
    assert "ModuleNotFoundError" in found.problems[0].line()


def test_the_shared_environment_registers_no_foreign_kind() -> None:
    # What the venv test below adds must never leak into the shared environment.
    assert [name for name in registry.discover().names() if name not in BUILTIN] == []


@pytest.mark.parametrize("kind", ["echo", "broken"])
def test_a_kind_nobody_registers_is_an_unknown_kind(kind: str, tmp_path: Path) -> None:
    from coursestack.errors import SpecError
    from coursestack.spec import load_spec

    spec = tmp_path / "course.toml"
    spec.write_text(f'[course]\nname = "x"\n[services.a]\nkind = "{kind}"\n')
    with pytest.raises(SpecError) as error:
        load_spec(spec)
    assert f"unknown kind {kind!r}" in str(error.value) + str(error.value.hint or "")
