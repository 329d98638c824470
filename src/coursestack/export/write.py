"""Export a course spec to a target: load it as `up` does, ask the kinds, write."""

from __future__ import annotations

from pathlib import Path

from coursestack.export import TARGET_NAMES, target
from coursestack.export.common import ExportCourse, ExportWarning, Output
from coursestack.instances import sample_course_source
from coursestack.spec import load_spec


def export_course(
    target_name: str, spec_path: Path | None, output_path: Path, force: bool
) -> tuple[list[Path], list[ExportWarning]]:
    """Write `target_name`'s files for the spec; the paths written and the warnings."""
    assert target_name in TARGET_NAMES
    # The same loader as `up`: a spec error reads exactly as `up` reports it.
    spec = load_spec(spec_path if spec_path is not None else sample_course_source() / "course.toml")
    course = ExportCourse.from_spec(spec)
    module = target(target_name)
    output = Output(output_path, force, module.IS_FOLDER)
    written: list[Path] = module.export(course, output)
    return written, course.warnings
