"""What the systemd unit and the launchd agent share: the command that runs an instance
in the foreground, and how long it may take to stop."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from coursestack.export.common import ExportCourse
from coursestack.instances import sample_course_source


def run_command(course: ExportCourse, instance: str | None = None) -> list[str]:
    """`coursestack run` for the course's instance, with this machine's Python."""
    argv = [sys.executable, "-m", "coursestack", "run"]
    # The sample course: the instance's own copy (the student's edited notebooks).
    if course.spec.path.parent != sample_course_source().resolve():
        argv.append(str(course.spec.path))
    return [*argv, "--instance", instance or course.name]


def stop_seconds(course: ExportCourse) -> int:
    """Time for a clean stop: every service's grace period in turn, plus a margin."""
    from coursestack.kinds import KINDS

    total = sum(
        service.stop_timeout or KINDS[service.kind].default_stop_timeout
        for service in course.spec.services.values()
    )
    return int(total) + 15


def search_path() -> str:
    """PATH for the service manager (its own is minimal): this shell's, as exported."""
    return os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")


def log_file(instance: str) -> Path:
    return Path.home() / "Library" / "Logs" / f"coursestack-{instance}.log"
