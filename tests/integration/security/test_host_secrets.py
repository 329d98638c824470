"""Issue 9, item 2 (host side): no secret of an instance on any command line or in any
file another local user can read, through a cold `up`, a `backup` and a `restore`.

Every local user sees every process's arguments (`ps`), so the sampler in
tests/cmdline_sampler.py watches /proc/*/cmdline the whole time, short-lived children
(initdb, pg_dump, pg_restore, psql) included."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from cmdline_sampler import CommandLineSampler
from coursestack.state import StateFolder, read_json
from support import cli, open_folder

pytestmark = pytest.mark.slow


def instance_secrets(state: StateFolder) -> list[str]:
    values = read_json(state.run / "secrets.json", {})
    assert values, "the instance has no secrets file"
    return [str(value) for value in values.values()]


def test_the_sampler_sees_short_lived_children() -> None:
    """The test below can fail: a 50 ms child with a secret in its arguments is seen."""
    with CommandLineSampler() as sampler:
        subprocess.run(["sh", "-c", "sleep 0.05", "canary-b1f6"], check=True)
    assert sampler.containing("canary-b1f6")
    with pytest.raises(AssertionError, match="secrets on command lines"):
        sampler.assert_free_of(["canary-b1f6"])


def readable_by_others(path: Path, top: Path) -> bool:
    """True if a user other than the owner and group could open `path` for reading."""
    if not os.lstat(path).st_mode & stat.S_IROTH:
        return False
    folder = path.parent
    while True:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return False
        if folder == top:
            return True
        folder = folder.parent


def test_no_secret_on_a_command_line_or_in_a_world_readable_file() -> None:
    root = open_folder("secrets-")
    state = StateFolder(root / "state")
    archive = root / "sample.coursestack.tar.gz"
    with CommandLineSampler() as sampler:
        try:
            cli("up", "--state", str(state.root))
            cli("backup", "--state", str(state.root), "--output", str(archive))
            cli("restore", str(archive), "--state", str(state.root))
            secrets = instance_secrets(state)
            leaking_files = [
                str(path)
                for path in state.root.rglob("*")
                if path.is_file()
                and not path.is_symlink()
                and readable_by_others(path, state.root)
                and any(secret.encode() in path.read_bytes() for secret in secrets)
            ]
        finally:
            cli("down", "--state", str(state.root), check=False)
    sampler.assert_free_of(secrets)
    assert not leaking_files, f"secrets in files every local user can read: {leaking_files}"
    # The folders that hold them are closed, not just their files.
    for private in (state.run, state.logs, state.root / "backups"):
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o700, private
    for log in state.logs.iterdir():
        assert stat.S_IMODE(os.stat(log).st_mode) & 0o077 == 0, log
