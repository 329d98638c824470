"""`coursestack export launchd`: a launchd agent (macOS) that runs the instance at login.

launchd sends SIGTERM on logout or `launchctl bootout`, and SIGKILL after `ExitTimeOut`
seconds: long enough for coursestack to stop every service in reverse order.
"""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any

from coursestack.export.common import ExportCourse, Output
from coursestack.export.login_start import log_file, run_command, search_path, stop_seconds

IS_FOLDER = False
HELP = "a launchd agent (macOS) starting the instance at login"


def label(instance: str) -> str:
    return f"org.coursestack.{instance}"


def agent(course: ExportCourse, instance: str | None = None) -> dict[str, Any]:
    """The agent's property list, as a dictionary."""
    name = instance or course.name
    return {
        "Label": label(name),
        "ProgramArguments": run_command(course, name),
        "RunAtLoad": True,
        # Restart after a crash, not after a clean stop.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 10,
        "ExitTimeOut": stop_seconds(course),
        "EnvironmentVariables": {"PATH": search_path()},
        "StandardOutPath": str(log_file(name)),
        "StandardErrorPath": str(log_file(name)),
        "ProcessType": "Interactive",
    }


def agent_bytes(course: ExportCourse, instance: str | None = None) -> bytes:
    return plistlib.dumps(agent(course, instance))


def export(course: ExportCourse, output: Output) -> list[Path]:
    path = output.file()
    path.write_bytes(agent_bytes(course))
    return [path]
