"""`coursestack update` run as root follows no link the service account plants.

The notebooks folder belongs to an unprivileged account (here `nobody`, standing for an
instance's service account). That account swaps each place the update touches for a
symbolic link to a root-only folder or file: a subfolder with files to update, a file to
update, a new subfolder to make, a file the course adds under a name the student uses;
once before the update, once while it is paused half-way (and killed, so the next update
completes its journal). Nothing outside the notebooks folder may change (owner, mode,
content), no backup or report may hold the root-only file's content, and the report
says what was left alone.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from coursestack.content.journal import PAUSE_VARIABLE
from support import cli, open_folder
from victims import SECRET, Victims

if os.geteuid() != 0:
    pytest.skip("the hole exists only when the update runs as root", allow_module_level=True)

ACCOUNT = "nobody"


def as_account(script: str) -> None:
    """Run a shell script as the unprivileged account (the attacker)."""
    entry = pwd.getpwnam(ACCOUNT)
    result = subprocess.run(
        ["/bin/sh", "-ec", script],
        user=entry.pw_uid,
        group=entry.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr


def swap_for_link(path: Path, target: Path) -> str:
    """A script replacing `path` (a file, a folder tree or nothing) by a link."""
    return (
        f"rm -rf {shlex.quote(str(path))}; ln -s {shlex.quote(str(target))} "
        f"{shlex.quote(str(path))}\n"
    )


class Setup:
    def __init__(self) -> None:
        self.base = open_folder("update-links-")
        self.victims = Victims(self.base)
        self.upstream = self.base / "upstream"
        self.course = self.base / "course"
        self.course.mkdir()
        (self.course / "course.toml").write_text(
            '[course]\nname = "links"\n\n[content]\nsource = "../upstream"\n'
            'update = "manual"\n\n[services.jupyter]\nkind = "jupyter"\n',
            encoding="utf-8",
        )
        self.notebooks = self.course / "notebooks"
        self.notebooks.mkdir()
        entry = pwd.getpwnam(ACCOUNT)
        os.chown(self.notebooks, entry.pw_uid, entry.pw_gid)
        self.state = self.base / "state"

    def push(self, name: str, content: str) -> None:
        path = self.upstream / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def command(self) -> list[str]:
        return ["update", str(self.course), "--state", str(self.state), "--json"]

    def update(self) -> dict[str, Any]:
        return dict(json.loads(cli(*self.command()).stdout))

    def assert_no_secret_copied(self, report: dict[str, Any]) -> None:
        assert SECRET.strip() not in json.dumps(report)
        for path in (self.state / "content").rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert SECRET.encode() not in path.read_bytes(), f"{path} holds the secret"


def actions(report: dict[str, Any]) -> dict[str, str]:
    return {entry["path"]: entry["action"] for entry in report["entries"]}


def test_links_planted_before_the_update_are_refused() -> None:
    setup = Setup()
    for name in ("notes.txt", "week1/lab.txt", "week2/lab.txt", "mine.txt"):
        setup.push(name, "v1\n")
    setup.update()
    owner = pwd.getpwnam(ACCOUNT).pw_uid
    assert (setup.notebooks / "week1" / "lab.txt").stat().st_uid == owner

    victims, notebooks = setup.victims, setup.notebooks
    as_account(
        swap_for_link(notebooks / "notes.txt", victims.file)
        + swap_for_link(notebooks / "week1", victims.folder)
        + swap_for_link(notebooks / "week5", victims.folder)
        + swap_for_link(notebooks / "theirs.txt", victims.file)
    )
    for name in ("notes.txt", "week1/lab.txt", "week2/lab.txt"):
        setup.push(name, "v2\n")
    setup.push("week1/inside.txt", "overwritten?\n")  # the root-only folder's file
    setup.push("week5/new.txt", "new\n")  # a new subfolder to make
    setup.push("theirs.txt", "course's\n")  # collides with the student's name
    report = setup.update()

    victims.assert_untouched("before the update")
    assert actions(report) == {
        "notes.txt": "skipped",
        "week1/lab.txt": "skipped",
        "week1/inside.txt": "skipped",
        "week5/new.txt": "skipped",
        "theirs.txt": "skipped",
        "week2/lab.txt": "updated",
        "mine.txt": "unchanged",
    }
    lines = "\n".join(report["lines"])
    assert "notes.txt: not delivered (a link or special file of yours has this name)" in lines
    assert "week1/lab.txt: not delivered" in lines
    assert (notebooks / "week2" / "lab.txt").read_text() == "v2\n"
    assert (notebooks / "week2" / "lab.txt").stat().st_uid == owner
    for name in ("notes.txt", "week1", "week5", "theirs.txt"):
        assert (notebooks / name).is_symlink(), f"{name}: the student's link was replaced"
    setup.assert_no_secret_copied(report)


def test_links_swapped_in_while_the_update_runs_are_refused() -> None:
    """Paused after its first change (journal written, backups taken), the account swaps
    a folder, a file and a new subfolder for links; the update is killed, and the next
    one completes the journal without following them."""
    setup = Setup()
    for name in ("a.txt", "week2/lab.txt", "week3/lab.txt"):
        setup.push(name, "v1\n")
    setup.update()
    for name in ("a.txt", "week2/lab.txt", "week3/lab.txt"):
        setup.push(name, "v2\n")
    setup.push("week6/new.txt", "new\n")

    process = subprocess.Popen(
        [sys.executable, "-m", "coursestack", *setup.command()],
        env={**os.environ, PAUSE_VARIABLE: "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    marker = setup.state / "content" / "journal.paused"
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the update never reached its pause"
        time.sleep(0.05)
    victims, notebooks = setup.victims, setup.notebooks
    as_account(
        swap_for_link(notebooks / "week2", victims.folder)
        + swap_for_link(notebooks / "week3" / "lab.txt", victims.file)
        + swap_for_link(notebooks / "week6", victims.folder)
    )
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    marker.unlink()

    report = setup.update()
    victims.assert_untouched("while the update ran")
    assert report["finished_interrupted"] is True
    notes = "\n".join(report["notes"])
    for name in ("week2/lab.txt", "week3/lab.txt", "week6/new.txt"):
        assert f"{name} (interrupted update): refused" in notes, notes
    assert (notebooks / "a.txt").read_text() == "v2\n"
    assert {name: action for name, action in actions(report).items()} == {
        "a.txt": "unchanged",
        "week2/lab.txt": "skipped",
        "week3/lab.txt": "skipped",
        "week6/new.txt": "skipped",
    }
    for name in ("week2", "week3/lab.txt", "week6"):
        assert (notebooks / name).is_symlink()
    setup.assert_no_secret_copied(report)
