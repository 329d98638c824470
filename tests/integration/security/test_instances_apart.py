"""Issue 9, item 4: one service account per instance, so instances on one host are apart.

Two instances of the sample course run as root. Code running as instance B's account
(what B's notebook kernels run as) tries A's files and processes and is refused; the same
code as A's own account succeeds, so the refusals are the accounts', not the test's.
`coursestack remove` then deletes B: its state folder, its account, and no file is left
owned by its freed uid."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coursestack import privileges
from coursestack.errors import UserError
from coursestack.privileges import RunAs, account_name, ensure_reachable
from coursestack.state import StateFolder
from support import cli, open_folder

pytestmark = pytest.mark.slow

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="per-instance accounts exist only when run as root"
)


def as_account(account: str, code: str) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(account)
    return subprocess.run(
        [sys.executable, "-c", code],
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


def account_of(state: StateFolder) -> str:
    return str(json.loads((state.run / "account.json").read_text())["name"])


def service_pids(state: StateFolder) -> dict[str, int]:
    record = json.loads((state.run / "pids.json").read_text())
    return {name: int(entry["pid"]) for name, entry in record.items()}


@pytest.fixture(scope="module")
def two() -> Iterator[tuple[StateFolder, StateFolder]]:
    base = open_folder("apart-")
    first, second = StateFolder(base / "a"), StateFolder(base / "b")
    try:
        cli("up", "--state", str(first.root), "--instance", "alpha")
        cli("up", "--state", str(second.root), "--instance", "beta")
        yield first, second
    finally:
        cli("down", "--state", str(first.root), check=False)
        if second.root.exists():
            cli("down", "--state", str(second.root), check=False)


ATTEMPTS = {
    "read connections.json": "open({a}/'connections.json').read()",
    "list pgdata": "os.listdir({a}/'data'/'postgres'/'pgdata')",
    "read a service's environment": "open(f'/proc/{pid}/environ', 'rb').read()",
    "write into the notebooks folder": "open({a}/'course'/'notebooks'/'mine.txt', 'w').write('x')",
    "read the secrets": "open({a}/'run'/'secrets.json').read()",
    "read a log": "open({a}/'logs'/'postgres.log').read()",
}


@needs_root
@pytest.mark.parametrize("what", sorted(ATTEMPTS))
def test_another_instance_cannot(two: tuple[StateFolder, StateFolder], what: str) -> None:
    first, second = two
    assert account_of(first) != account_of(second)
    code = (
        "import os; from pathlib import Path; "
        f"a = Path({str(first.root)!r}); pid = {service_pids(first)['postgres']}; "
        + ATTEMPTS[what].format(a="a", pid="{pid}")
    )
    refused = as_account(account_of(second), code)
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, (
        f"instance B could {what} of instance A: {refused.stdout}{refused.stderr}"
    )
    if what not in ("read the secrets", "read a log"):  # root's own files: nobody else's
        allowed = as_account(account_of(first), code)
        assert allowed.returncode == 0, f"A's own account cannot {what}: {allowed.stderr}"


@needs_root
def test_account_names_are_unique_per_state_folder_and_short() -> None:
    one = account_name("a-very-long-course-instance-name", Path("/srv/one"))
    other = account_name("a-very-long-course-instance-name", Path("/srv/two"))
    assert one != other and len(one) <= 32 and len(other) <= 32
    assert privileges.is_instance_account(one)
    assert account_name("Ünïcode name!", Path("/x")).startswith("cs-n-code-name-")


@needs_root
def test_remove_deletes_the_instance_and_its_account_leaving_no_file_to_its_uid(
    two: tuple[StateFolder, StateFolder],
) -> None:
    first, second = two
    name = account_of(second)
    uid = pwd.getpwnam(name).pw_uid
    # What a kernel might leave behind in shared places.
    leftover = as_account(name, "open('/tmp/beta-kernel-leftover', 'w').write('x')")
    assert leftover.returncode == 0, leftover.stderr
    result = cli("remove", "--state", str(second.root), "--yes")
    assert "removed" in result.stdout
    assert not second.root.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
    assert not Path("/tmp/beta-kernel-leftover").exists()
    # The other instance is untouched.
    assert account_of(first) and (first.data / "postgres" / "pgdata").is_dir()
    assert cli("status", "--state", str(first.root)).returncode == 0
    places = [*second.root.parent.rglob("*"), *Path("/tmp").iterdir(), *Path("/dev/shm").iterdir()]
    owned = [
        str(p) for p in places if not p.is_symlink() and p.exists() and p.lstat().st_uid == uid
    ]
    assert owned == [], f"files left to the freed account {name}: {owned[:5]}"


def test_missing_setfacl_is_an_error_that_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without setfacl coursestack used to make a closed folder 0701 and log "ACL"."""
    closed = open_folder("closed-") / "inner"
    closed.mkdir(mode=0o700)
    target = closed / "python"
    target.touch()
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "setfacl" else real_which(name)
    )
    nobody = RunAs("nobody", 65534, 65534)
    with pytest.raises(UserError) as raised:
        ensure_reachable([target], nobody)
    assert "apt-get install acl" in raised.value.render()
    assert (closed.stat().st_mode & 0o777) == 0o700, "the folder's mode was changed"


@needs_root
def test_notebooks_folder_access_is_an_acl_given_and_taken_back() -> None:
    """A course team's folder is never chowned: the account gets ACL entries, and on
    removal what it made there goes to the folder's owner and its entries go."""
    base = open_folder("acl-")
    team = base / "team-notebooks"
    team.mkdir(mode=0o755)
    (team / "lesson.ipynb").write_text("{}")
    os.chmod(team / "lesson.ipynb", 0o644)
    for number in range(450):  # more than one batch of descriptors
        (team / f"data-{number:03}.csv").write_text("a,b\n")
    account = privileges.service_account(base / "state", "acl-test")
    assert account is not None
    try:
        privileges.ensure_reachable([Path(sys.executable), team], account)
        assert privileges.grant_folder(team, account)
        wrote = as_account(
            account.name,
            f"open({str(team / 'mine.ipynb')!r}, 'w').write('x');"
            f"open({str(team / 'lesson.ipynb')!r}, 'a').write(' ')",
        )
        assert wrote.returncode == 0, wrote.stderr
        # Owner and mode stay (the group bits show the ACL mask, as `ls` does).
        assert os.stat(team).st_uid == 0 and os.stat(team).st_mode & 0o707 == 0o705
        assert (team / "mine.ipynb").stat().st_uid == account.uid
        last = subprocess.run(
            ["getfacl", "-p", "-c", str(team / "data-449.csv")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert f"user:{account.name}:rw-" in last
        privileges.revoke_folder(team, account)
        assert {p.stat().st_uid for p in team.iterdir()} == {0}
        acl = subprocess.run(
            ["getfacl", "-R", "-p", "-c", str(team)], capture_output=True, text=True, check=True
        ).stdout
        assert account.name not in acl
        privileges.revoke_reachable([Path(sys.executable)], account)
        above = subprocess.run(
            ["getfacl", "-p", "-c", *map(str, Path(sys.executable).parents)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert account.name not in above, "a traverse entry outlives the account"
    finally:
        privileges.remove_account(account.name)
