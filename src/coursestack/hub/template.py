"""The template state folder of disposable sessions: initialised and seeded once.

A visitor's environment starts from a copy of it, so their first start skips `initdb`
and seeding (the slow part) and only starts the services. It is made by running the
course once, as a unix user of its own in its own port block, then stopping it cleanly,
so PostgreSQL's files are consistent when copied.

Every copy shares the template's generated secrets (database passwords, tokens). That
is acceptable because isolation between visitors does not rest on them: each copy is
owned by the visitor's own unix user (home 0700) and its ports are closed to other
users by the firewall.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from coursestack.errors import UserError
from coursestack.hub import network, users
from coursestack.state import StateFolder

TEMPLATE_DIR = "template"


def template_path(hub_dir: Path) -> Path:
    return hub_dir / TEMPLATE_DIR


def prepare(hub_dir: Path, spec: str, unix_prefix: str, timeout: float = 300.0) -> Path:
    """Make the template state folder (once); return it."""
    target = template_path(hub_dir)
    if StateFolder(target).instance_file.exists():
        return target
    unix_name = users.normalise("template", unix_prefix)
    student = users.ensure_student("(template)", unix_name)
    block = network.PortBlocks(hub_dir / "ports.json").block_for(unix_name)
    users.grant_traverse(
        [
            Path(sys.executable),
            Path(__file__),
            *(Path(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p),
        ]
    )
    building = student.home / "template"
    env = {
        "HOME": str(student.home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "COURSESTACK_PORT_RANGE": block.as_env(),
        "COURSESTACK_HOME": str(student.home / ".coursestack"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
    }
    base = ["runuser", "-u", unix_name, "--", sys.executable, "-m", "coursestack"]
    try:
        up = subprocess.run(
            [
                *base,
                "up",
                *([spec] if spec else []),
                "--state",
                str(building),
                "--timeout",
                str(timeout),
            ],
            env=env,
            cwd=student.home,
            capture_output=True,
            text=True,
            timeout=timeout + 60,
            check=False,
        )
        subprocess.run(
            [*base, "down", "--state", str(building)],
            env=env,
            cwd=student.home,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if up.returncode != 0:
            raise UserError(
                "the template of disposable sessions could not be made",
                where=str(building),
                hint=(up.stderr or up.stdout)[-800:],
            )
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(building, target, symlinks=True)
        os.chmod(target, 0o700)
    finally:
        users.remove_student(unix_name)
        network.PortBlocks(hub_dir / "ports.json").release(unix_name)
    return target


def copy_for(template: Path, state: Path, uid: int, gid: int) -> None:
    """A visitor's state folder: the template's files, owned by the visitor."""
    subprocess.run(["cp", "-a", f"{template}/.", str(state)], check=True, capture_output=True)
    for folder, dirs, files in os.walk(state):
        for name in [
            folder,
            *(os.path.join(folder, d) for d in dirs),
            *(os.path.join(folder, f) for f in files),
        ]:
            os.lchown(name, uid, gid)
    # Runtime leftovers of the template run are not the visitor's.
    for leftover in StateFolder(state).runtime_files:
        leftover.unlink(missing_ok=True)
