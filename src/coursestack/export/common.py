"""What every exporter shares: the course with each service's hints, warnings, output files.

An exporter gets an `ExportCourse` (the validated spec plus each kind's `ExportHints`) and
an `Output` to write into. It reports what its target cannot express as an
`ExportWarning` naming the service and the key, and what it did instead.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from coursestack.errors import UsageError, UserError
from coursestack.kinds import KINDS
from coursestack.kinds.export_hints import ExportHints
from coursestack.seeding import seed_checksum
from coursestack.spec import CourseSpec, ServiceSpec, StartPolicy, parse_spec
from coursestack.spec_errors import locate_key


@dataclass(frozen=True)
class ExportWarning:
    """A setting the target cannot express as the spec says, and what was done instead."""

    service: str
    key: str
    message: str

    def render(self) -> str:
        where = f"services.{self.service}.{self.key}" if self.service else self.key
        return f"{where}: {self.message}"


@dataclass
class ExportCourse:
    """A course spec as exporters see it: services with their kinds' hints."""

    spec: CourseSpec
    hints: dict[str, ExportHints]
    warnings: list[ExportWarning] = field(default_factory=list)

    @classmethod
    def from_spec(cls, spec: CourseSpec) -> ExportCourse:
        for name, service in spec.services.items():
            # A missing or unreadable seed file: the error `up` gives when it seeds.
            seed_checksum([spec.resolve(seed) for seed in getattr(service, "seed", ())], name)
        hints = {
            name: KINDS[service.kind].export_hints(name, service, spec)
            for name, service in spec.services.items()
        }
        course = cls(spec, hints)
        for name, hint in hints.items():
            for note in hint.notes:
                course.warn(name, "kind", note)
            if hint.local_program:
                course.warn(
                    name,
                    "command",
                    f"{hint.local_program} exists only on this "
                    "machine (outside the course folder): exported as is; the "
                    "target must provide that program at that path",
                )
        return course

    @property
    def name(self) -> str:
        return self.spec.course.name

    @property
    def title(self) -> str:
        return self.spec.course.title or self.spec.course.name

    def service(self, name: str) -> ServiceSpec:
        return self.spec.services[name]

    def warn(self, service: str, key: str, message: str) -> None:
        """Record a warning once."""
        warning = ExportWarning(service, key, message)
        if warning not in self.warnings:
            self.warnings.append(warning)

    def in_start_order(self) -> list[str]:
        return [name for wave in self.spec.start_order() for name in wave]

    def started_with_course(self) -> list[str]:
        """Services `coursestack up` starts (start = "always")."""
        return [
            name for name in self.in_start_order() if self.service(name).start is StartPolicy.ALWAYS
        ]

    def notebook_servers(self) -> list[str]:
        return [name for name, hint in self.hints.items() if hint.notebook_server]

    def packages(self, attribute: str) -> list[str]:
        """A hint's tuple attribute (apt_packages, pip_packages...) over all services,
        in order, without repeats."""
        seen: dict[str, None] = {}
        for hint in self.hints.values():
            for item in getattr(hint, attribute):
                seen.setdefault(item, None)
        return list(seen)


def spec_text_with_real_kinds(course: ExportCourse) -> str | None:
    """The spec's text with each stand-in's `kind` set to the real thing it stands in for
    (`runs_as_kind`), for an image that installs the real program; None if none.

    Only the `kind` value changes, so the course team's comments and layout stay.
    """
    changes = {name: hint.runs_as_kind for name, hint in course.hints.items() if hint.runs_as_kind}
    if not changes:
        return None
    text = course.spec.path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    for name, kind in changes.items():
        number = locate_key(text, ("services", name, "kind")) - 1
        line = _KIND_VALUE.sub(rf'\g<1>"{kind}"', lines[number], count=1)
        if "#" not in line:
            line = (
                line.rstrip("\n") + f"  # {course.hints[name].kind} exported as the "
                "real thing (coursestack export)\n"
            )
        lines[number] = line
    changed = "".join(lines)
    rewritten = parse_spec(changed, course.spec.path)
    if any(rewritten.services[name].kind != kind for name, kind in changes.items()):
        raise UserError(
            "could not set the real kind of a stand-in in the spec's text",
            where=str(course.spec.path),
            hint='write each service\'s kind as `kind = "..."` on its own line',
        )
    return changed


_KIND_VALUE = re.compile(r"""(\bkind\s*=\s*)(["'])[^"']*\2""")


class Output:
    """Where an export writes: refuses to overwrite an existing path without --force."""

    def __init__(self, path: Path, force: bool, is_folder: bool) -> None:
        self.path = path.expanduser().resolve()
        self.is_folder = is_folder
        if self.path.exists() and not force:
            raise UsageError(
                f"{self.path} exists; nothing was written",
                hint="choose another -o path, or add --force to overwrite it",
            )
        if self.path.exists() and is_folder and not self.path.is_dir():
            raise UsageError(
                f"{self.path} is a file, and this target writes a folder",
                hint="choose another -o path",
            )
        if self.path.is_dir() and not is_folder:
            raise UsageError(
                f"{self.path} is a folder, and this target writes one file",
                hint="give the file's path, e.g. -o config.yaml",
            )
        if is_folder:
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def file(self, relative: str = "") -> Path:
        """The path of a file of the output (the output itself for a one-file target)."""
        if not self.is_folder:
            return self.path
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write(self, relative: str, text: str, mode: int = 0o644) -> Path:
        target = self.file(relative)
        target.write_text(text, encoding="utf-8")
        os.chmod(target, mode)
        return target

    def copy_tree(self, source: Path, relative: str, ignore: Iterable[str] = ()) -> Path:
        target = self.file(relative)
        if target.exists():
            shutil.rmtree(target)
        patterns = shutil.ignore_patterns(*ignore)
        output_root = self.path if self.is_folder else self.path.parent

        def skip(folder: str, names: list[str]) -> set[str]:
            # An output written inside the course folder is not part of the course.
            inside = {name for name in names if (Path(folder) / name).resolve() == output_root}
            return set(patterns(folder, names)) | inside

        shutil.copytree(source, target, ignore=skip)
        return target


#: Files never copied into an image or a Binder repository.
IGNORED = ("__pycache__", "*.pyc", ".ipynb_checkpoints", ".git", ".coursestack*")
