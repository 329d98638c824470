"""Where each file of a release goes, and whose it is once there.

A release that holds a `course.toml` is a whole course folder: the spec and its seed
files go to the instance's course folder (the spec's folder), and the release's notebooks
folder goes to the target (the jupyter service's notebooks folder unless
`[content] target` says otherwise). A release without one is only material: all of it
goes into the target.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from coursestack.content.anchored import Place
from coursestack.content.sources import Release, SourceError
from coursestack.errors import SpecError
from coursestack.spec import CourseSpec, JupyterService, parse_spec

SPEC_NAME = "course.toml"


@dataclass(frozen=True)
class Layout:
    """Maps release paths to destinations."""

    course_folder: Path
    target: Path
    #: The release's notebooks folder ("notebooks/"), when the release is a course folder.
    notebooks_prefix: str | None
    #: Release paths of the release spec's seed files (a changed seed never re-seeds).
    seeds: dict[str, str]

    def destination(self, path: str) -> Path:
        if self.notebooks_prefix is None:
            return self.target / path
        if path.startswith(self.notebooks_prefix):
            return self.target / path[len(self.notebooks_prefix) :]
        return self.course_folder / path

    def place(self, destination: Path) -> Place:
        """`destination` as reached from the notebooks or the course folder, without
        following links (see coursestack.content.anchored)."""
        return Place.of(destination, (self.target, self.course_folder))

    def shown(self, destination: Path) -> str:
        """A destination as the student knows it: relative to the notebooks folder, or
        to the course folder."""
        for root, prefix in ((self.target, ""), (self.course_folder, "")):
            try:
                return prefix + destination.relative_to(root).as_posix()
            except ValueError:
                continue
        return str(destination)

    def owner_of(self, destination: Path) -> tuple[int, int]:
        """The uid and gid files at `destination` must belong to: the notebooks folder's
        owner for material, the course folder's owner for the rest."""
        try:
            destination.relative_to(self.target)
            root = self.target
        except ValueError:
            root = self.course_folder
        while not root.exists() and root != root.parent:
            root = root.parent
        info = os.stat(root)
        return info.st_uid, info.st_gid


def target_folder(spec: CourseSpec) -> Path:
    """`[content] target`, else the first jupyter service's notebooks folder, else the
    course folder."""
    if spec.content is not None and spec.content.target:
        return spec.resolve(spec.content.target)
    for service in spec.services.values():
        if isinstance(service, JupyterService):
            return spec.resolve(service.notebooks)
    return spec.folder


def layout_for(spec: CourseSpec, release: Release) -> Layout:
    """The layout of `release` for the instance whose spec is `spec`.

    The release's own course.toml must be valid: delivering a broken spec would stop
    the student's next `up`.
    """
    target = target_folder(spec)
    if SPEC_NAME not in release.files:
        return Layout(spec.folder, target, None, {})
    destination = spec.folder / SPEC_NAME
    try:
        release_spec = parse_spec(release.files[SPEC_NAME].decode("utf-8"), destination)
    except (SpecError, UnicodeDecodeError) as error:
        detail = error.render() if isinstance(error, SpecError) else "not UTF-8 text"
        raise SourceError(
            f"the course's new course.toml is not valid:\n{detail}",
            where=release.source,
            hint="nothing was changed; tell the course team",
        ) from None
    prefix: str | None = None
    seeds: dict[str, str] = {}
    for name, service in release_spec.services.items():
        if isinstance(service, JupyterService) and prefix is None:
            prefix = _inside(service.notebooks)
        for seed in getattr(service, "seed", []) or []:
            inside = _inside(seed)
            if inside:
                seeds[inside.rstrip("/")] = name
    return Layout(spec.folder, target, "notebooks/" if prefix is None else prefix, seeds)


def _inside(relative: str) -> str | None:
    """A relative path inside the release as "folder/" (None if it leaves it)."""
    path = PurePosixPath(relative.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        return None
    parts = [part for part in path.parts if part not in ("", ".")]
    return "/".join(parts) + "/" if parts else ""
