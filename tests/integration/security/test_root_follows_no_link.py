"""Issue 9, item 1: root never acts on a path the service account can change.

Code running as an instance's service account (a notebook's kernel, say) swaps each path
the root daemon touches in the account's folders for a symbolic link to a root-only file
or folder, then kills its service; the daemon restarts it. Root must not follow: nothing
outside changes owner, mode, ACL or content. The list below was taken with
`strace -f -e trace=%file,fchown,fchmod,renameat,unlinkat,mkdirat,openat` on a daemon's
cold start (root's own threads only; the services' own accesses run as the account):

    data/<service>                    mkdirat + openat(O_NOFOLLOW), fchown once, at creation
    data/<service>/home[/.runtime]    mkdirat + openat(O_NOFOLLOW) relative to the above
    data/mongo/db                     the same
    data/<service>/seeded.json        openat(O_NOFOLLOW) to read; new file + renameat
    data/postgres/.initdb-password    new file (O_EXCL|O_NOFOLLOW) + unlinkat
    data/postgres/pgdata.init         unlinkat/rmtree by descriptor, renameat to pgdata
    data/postgres/pgdata/PG_VERSION   stat only (is there a cluster?)
    <notebooks folder>/**             ACL entries, each set on a descriptor opened O_NOFOLLOW
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from coursestack.instances import Instance
from coursestack.state import StateFolder
from support import cli, open_folder, wait_for
from victims import Victims

pytestmark = pytest.mark.slow

if os.geteuid() != 0:
    pytest.skip(
        "services run as another account only when coursestack runs as root",
        allow_module_level=True,
    )


def as_account(account: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code as the service account (the attacker here)."""
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


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[Instance, str, Victims]]:
    base = open_folder("nolink-")
    state = StateFolder(base / "state")
    cli("up", "--state", str(state.root))
    account = json.loads((state.run / "account.json").read_text())["name"]
    try:
        yield Instance("sample", state), account, Victims(base)
    finally:
        cli("down", "--state", str(state.root), check=False)


def service(instance: Instance, name: str) -> dict[str, object]:
    client = instance.client()
    try:
        return client.service(name).model_dump()
    finally:
        client.close()


def kill_and_wait_for_restart(instance: Instance, account: str, name: str) -> None:
    """The account kills its own service; wait until the daemon has started it again
    (or refused to)."""
    before = service(instance, name)
    killed_at = time.time()
    killed = as_account(account, f"import os, signal; os.kill({before['pid']}, signal.SIGKILL)")
    assert killed.returncode == 0, killed.stderr

    def started_again() -> bool:
        # An event leaving "starting" after the kill: the daemon prepared and launched it
        # (ready) or refused to (failed, backoff).
        for line in instance.state.events_file.read_text().splitlines():
            event = json.loads(line)
            if (
                event["service"] == name
                and event["time"] > killed_at
                and event.get("previous") == "starting"
            ):
                return True
        return False

    wait_for(started_again, timeout=120, what=f"{name} restarted")


def repair(instance: Instance, account: str, code: str, name: str) -> None:
    assert as_account(account, code).returncode == 0
    cli("restart", name, "--state", str(instance.state.root))
    wait_for(
        lambda: service(instance, name)["state"] == "ready", timeout=120, what=f"{name} ready again"
    )


def test_the_account_cannot_swap_its_data_folder_itself(
    running: tuple[Instance, str, Victims],
) -> None:
    instance, account, _ = running
    data = instance.state.data
    moved = as_account(account, f"import os; os.rename('{data}/mongo', '{data}/mongo.away')")
    assert moved.returncode != 0 and "Permission denied" in moved.stderr
    planted = as_account(account, f"import os; os.symlink('/etc', '{data}/evil')")
    assert planted.returncode != 0 and "Permission denied" in planted.stderr


@pytest.mark.parametrize(
    "inside, target",
    [("home", "folder"), ("home/.runtime", "folder"), ("db", "folder"), ("seeded.json", "file")],
)
def test_mongo_folders_swapped_for_links(
    running: tuple[Instance, str, Victims], inside: str, target: str
) -> None:
    instance, account, victims = running
    folder = instance.state.data / "mongo"
    path = folder / inside
    link_to = victims.folder if target == "folder" else victims.file
    swap = (
        f"import os, shutil; p = {str(path)!r}\n"
        f"os.rename(p, p + '.away')\n"
        f"os.symlink({str(link_to)!r}, p)"
    )
    result = as_account(account, swap)
    assert result.returncode == 0, result.stderr
    kill_and_wait_for_restart(instance, account, "mongo")
    victims.assert_untouched(f"in {path}")
    repair(
        instance,
        account,
        f"import os; p = {str(path)!r}\nos.unlink(p) if os.path.islink(p) "
        f"else None\nos.path.exists(p) or os.rename(p + '.away', p)",
        "mongo",
    )


def test_postgres_cluster_moved_and_initdb_paths_planted(
    running: tuple[Instance, str, Victims],
) -> None:
    """The original attack: pgdata moved away, the initdb password file and staging
    folder made links to root's; root used to write the superuser password through."""
    instance, account, victims = running
    folder = instance.state.data / "postgres"
    plant = (
        f"import os; d = {str(folder)!r}\n"
        f"os.rename(d + '/pgdata', d + '/pgdata.away')\n"
        f"os.symlink({str(victims.file)!r}, d + '/.initdb-password')\n"
        f"os.symlink({str(victims.folder)!r}, d + '/pgdata.init')\n"
        f"os.rename(d + '/seeded.json', d + '/seeded.away')\n"
        f"os.symlink({str(victims.file)!r}, d + '/seeded.json')"
    )
    result = as_account(account, plant)
    assert result.returncode == 0, result.stderr
    kill_and_wait_for_restart(instance, account, "postgres")
    victims.assert_untouched(f"in {folder}")
    # Root removed the links (never what they point to) and made a new cluster.
    assert not (folder / ".initdb-password").exists()
    assert (folder / "pgdata" / "PG_VERSION").is_file()


def test_notebooks_folder_entries_swapped_for_links(running: tuple[Instance, str, Victims]) -> None:
    instance, account, victims = running
    notebooks = instance.state.course / "notebooks"
    plant = (
        f"import os; d = {str(notebooks)!r}\n"
        f"os.symlink({str(victims.file)!r}, d + '/evil.ipynb')\n"
        f"os.symlink({str(victims.folder)!r}, d + '/evil-folder')"
    )
    result = as_account(account, plant)
    assert result.returncode == 0, result.stderr
    # As on a first start: the folder has no ACL yet, so the daemon walks it all.
    subprocess.run(["setfacl", "-b", str(notebooks)], check=True)
    kill_and_wait_for_restart(instance, account, "jupyter")
    victims.assert_untouched(f"in {notebooks}")
    entry = pwd.getpwnam(account)
    acl = subprocess.run(
        ["getfacl", "-p", "-c", str(notebooks / "01-anscombe.ipynb")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"user:{entry.pw_name}:rw-" in acl, "the walk did give the account its notebooks"


def test_moving_from_the_shared_account_follows_no_link() -> None:
    """An instance of an older version ran as the shared `coursestack` account: its files
    move to the instance's own account once, and a link planted by the old account (to a
    file the old account owns elsewhere, another instance's) is not followed."""
    base = open_folder("migrate-")
    state = StateFolder(base / "state")
    cli("up", "--state", str(state.root))
    cli("down", "--state", str(state.root))
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--user-group", "coursestack"],
        check=False,
        capture_output=True,
    )
    legacy = pwd.getpwnam("coursestack")
    for path in [state.data, *state.data.rglob("*")]:
        os.lchown(path, legacy.pw_uid, legacy.pw_gid)
    (state.run / "account.json").unlink()
    elsewhere = base / "another-instance.txt"
    elsewhere.write_text("another instance's file\n")
    os.chown(elsewhere, legacy.pw_uid, legacy.pw_gid)
    os.symlink(elsewhere, state.data / "mongo" / "planted")
    try:
        cli("up", "--state", str(state.root))
        account = pwd.getpwnam(json.loads((state.run / "account.json").read_text())["name"])
        assert os.stat(elsewhere).st_uid == legacy.pw_uid, "the link was followed"
        assert os.stat(state.data).st_uid == 0
        owners = {os.lstat(p).st_uid for p in state.data.rglob("*") if not p.is_symlink()}
        assert owners <= {account.pw_uid, 0}, owners
    finally:
        cli("down", "--state", str(state.root), check=False)
