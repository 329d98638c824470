"""Root-only things outside every instance that a planted link could point root at."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

SECRET = "root's secret\n"


class Victims:
    """A root-only folder (with a file) and a root-only file, and what they look like."""

    def __init__(self, base: Path) -> None:
        self.folder = base / "root-only"
        self.folder.mkdir(mode=0o700)
        (self.folder / "inside.txt").write_text("root's own\n")
        os.chmod(self.folder / "inside.txt", 0o600)
        self.file = base / "root-only.txt"
        self.file.write_text(SECRET)
        os.chmod(self.file, 0o600)
        self.before = self.snapshot()

    def snapshot(self) -> dict[str, tuple[object, ...]]:
        """Owner, mode, ACL and content of each: what a followed link would change."""
        found: dict[str, tuple[object, ...]] = {}
        for path in (self.folder, self.file, *self.folder.iterdir()):
            info = os.lstat(path)
            acl = subprocess.run(
                ["getfacl", "-p", "-c", str(path)], capture_output=True, text=True, check=False
            ).stdout
            content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path)] = (info.st_uid, info.st_gid, info.st_mode, acl, content)
        return found

    def assert_untouched(self, when: str) -> None:
        assert self.snapshot() == self.before, f"root followed a link planted {when}"
