"""`coursestack autostart enable|disable|status`: start an instance at login.

Linux: a systemd user unit in ~/.config/systemd/user, enabled by the same link
`systemctl --user enable` makes (so it works before the user manager runs, and is tested
without one). macOS: a launchd agent in ~/Library/LaunchAgents, loaded at next login.
Neither starts the instance now: `coursestack up` does that, and two daemons cannot share
an instance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from coursestack.errors import UsageError

if TYPE_CHECKING:
    from coursestack.export.common import ExportCourse

autostart_app = typer.Typer(no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 120)

PlatformOption = Annotated[
    str | None,
    typer.Option("--platform", help="systemd or launchd (default: this computer's).", hidden=True),
]
InstanceOption = Annotated[
    str | None, typer.Option("--instance", "-i", help="Instance name (default: the course's name).")
]
SpecArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Path of a course.toml (or its folder). Without it: the sample course.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class LoginItem:
    """Where an instance's login item lives, and how it is switched on."""

    platform: str
    file: Path
    enabled_link: Path | None

    def enabled(self) -> bool:
        if self.enabled_link is not None:
            return self.enabled_link.is_symlink() or self.enabled_link.exists()
        return self.file.exists()


def _platform(chosen: str | None) -> str:
    if chosen is None:
        return "launchd" if sys.platform == "darwin" else "systemd"
    if chosen not in ("systemd", "launchd"):
        raise UsageError(f"unknown platform {chosen!r}", hint="use systemd or launchd")
    return chosen


def login_item(instance: str, platform: str) -> LoginItem:
    from coursestack.export import launchd, systemd

    if platform == "launchd":
        folder = Path.home() / "Library" / "LaunchAgents"
        return LoginItem(platform, folder / f"{launchd.label(instance)}.plist", None)
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    folder = config / "systemd" / "user"
    unit = systemd.unit_name(instance)
    return LoginItem(platform, folder / unit, folder / "default.target.wants" / unit)


def _course(spec: Path | None) -> ExportCourse:
    from coursestack.export.common import ExportCourse
    from coursestack.instances import sample_course_source
    from coursestack.spec import load_spec

    return ExportCourse.from_spec(load_spec(spec or sample_course_source() / "course.toml"))


def _reload_systemd() -> str:
    """Tell a running user manager; say so when there is none (it reads the unit at login)."""
    if shutil.which("systemctl") is None:
        return "no systemctl here: the unit is read at the next login"
    result = subprocess.run(
        ["systemctl", "--user", "daemon-reload"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return "no systemd user manager reachable now: the unit is read at the next login"
    return ""


@autostart_app.command()
def enable(
    spec: SpecArgument = None, instance: InstanceOption = None, platform: PlatformOption = None
) -> None:
    """Start the instance at every login (from the next one on)."""
    from coursestack.export import launchd, systemd

    course = _course(spec)
    name = instance or course.name
    item = login_item(name, _platform(platform))
    item.file.parent.mkdir(parents=True, exist_ok=True)
    if item.platform == "launchd":
        item.file.write_bytes(launchd.agent_bytes(course, name))
        now = f"launchctl bootstrap gui/{os.getuid()} {item.file}"
    else:
        item.file.write_text(systemd.unit_text(course, name), encoding="utf-8")
        assert item.enabled_link is not None
        item.enabled_link.parent.mkdir(parents=True, exist_ok=True)
        item.enabled_link.unlink(missing_ok=True)
        item.enabled_link.symlink_to(item.file)
        note = _reload_systemd()
        if note:
            console.print(note, markup=False)
        now = f"systemctl --user start {systemd.unit_name(name)}"
    console.print(f"{name} starts at login ({item.file}).", markup=False, highlight=False)
    console.print(
        f"To start it this way now (after `coursestack down`): {now}", markup=False, highlight=False
    )


@autostart_app.command()
def disable(
    instance: InstanceOption = None, platform: PlatformOption = None, spec: SpecArgument = None
) -> None:
    """Stop starting the instance at login (a running instance keeps running)."""
    name = instance or _course(spec).name
    item = login_item(name, _platform(platform))
    if item.enabled_link is not None:
        item.enabled_link.unlink(missing_ok=True)
    existed = item.file.exists()
    item.file.unlink(missing_ok=True)
    if item.platform == "systemd" and existed:
        _reload_systemd()
    console.print(
        f"{name} no longer starts at login."
        if existed
        else f"{name} was not set to start at login.",
        markup=False,
    )


@autostart_app.command()
def status(
    instance: InstanceOption = None, platform: PlatformOption = None, spec: SpecArgument = None
) -> None:
    """Say whether the instance starts at login (exit status 3 if not)."""
    name = instance or _course(spec).name
    item = login_item(name, _platform(platform))
    if item.file.exists() and item.enabled():
        console.print(
            f"{name} starts at login ({item.platform}: {item.file}).", markup=False, highlight=False
        )
        return
    console.print(f"{name} does not start at login (`coursestack autostart enable`).", markup=False)
    raise typer.Exit(3)
