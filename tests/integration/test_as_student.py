"""A student's machine: coursestack run by an ordinary user, not root. The services run
as that user, the state folder is in their home, nothing needs privileges.

When the suite itself runs as an ordinary user this is what every test does; as root
(CI, containers) this test makes an ordinary user and runs the sample course as them."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

USER = "cs-student"


@pytest.fixture
def student() -> Iterator[pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("already an ordinary user: every other test covers this path")
    created = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True)
        created = True
    account = pwd.getpwnam(USER)
    # The student must be able to run this Python, as on their own machine.
    granted = [
        folder
        for folder in Path(sys.executable).resolve().parents
        if not os.stat(folder).st_mode & 0o001
    ]
    for folder in granted:
        subprocess.run(["setfacl", "-m", f"u:{USER}:x", str(folder)], check=True)
    try:
        yield account
    finally:
        run_as(account, "down", check=False)
        for folder in granted:
            subprocess.run(["setfacl", "-x", f"u:{USER}", str(folder)], check=False)
        if created:
            subprocess.run(["userdel", "--remove", USER], check=False, capture_output=True)


def run_as(
    account: pwd.struct_passwd, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": account.pw_dir,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
    }
    result = subprocess.run(
        ["runuser", "-u", account.pw_name, "--", sys.executable, "-m", "coursestack", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=account.pw_dir,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def test_a_student_runs_the_sample_course_without_privileges(student: pwd.struct_passwd) -> None:
    if shutil.which("runuser") is None:
        pytest.skip("runuser is missing (util-linux)")
    run_as(student, "up", "--only", "postgres", "--only", "mongo")
    status = json.loads(run_as(student, "status", "--json").stdout)
    state = Path(status["state_folder"])
    assert state.is_relative_to(Path(student.pw_dir) / ".local" / "share" / "coursestack")
    assert psutil.Process(status["pid"]).uids().real == student.pw_uid
    for service in status["services"]:
        if service["pid"]:
            assert psutil.Process(service["pid"]).uids().real == student.pw_uid
    assert {s["name"] for s in status["services"] if s["state"] == "ready"} == {"postgres", "mongo"}
    owners = {path.stat().st_uid for path in (state / "data").rglob("*")}
    assert owners == {student.pw_uid}
