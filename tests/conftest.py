"""Shared fixtures: a private COURSESTACK_HOME, the CLI, and a running sample instance.

Instances started here are real: a real PostgreSQL and a real Jupyter Server. Folders are
made traversable because, when the tests run as root, services run as an unprivileged
user who must reach them (pytest's own temp folders are private to root).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from coursestack.instances import Instance
from coursestack.state import StateFolder
from support import ACCOUNTS_SEEN, MADE, cli, open_folder


@pytest.fixture(scope="session", autouse=True)
def coursestack_home() -> Iterator[Path]:
    """Every test works in its own COURSESTACK_HOME, never the user's real instances."""
    home = open_folder("home-")
    previous = os.environ.get("COURSESTACK_HOME")
    os.environ["COURSESTACK_HOME"] = str(home)
    accounts_before = _instance_accounts()
    yield home
    _remove_accounts_made_here(accounts_before)
    if previous is None:
        os.environ.pop("COURSESTACK_HOME", None)
    else:
        os.environ["COURSESTACK_HOME"] = previous


def _instance_accounts() -> set[str]:
    import pwd

    from coursestack.privileges import is_instance_account

    return {entry.pw_name for entry in pwd.getpwall() if is_instance_account(entry.pw_name)}


def _remove_accounts_made_here(before: set[str]) -> None:
    """As root every instance a test starts gets a system account: remove the ones this
    session made (with `coursestack remove`'s own steps), so runs do not pile them up."""
    if os.geteuid() != 0:
        return
    from coursestack import nofollow
    from coursestack.instances import Instance
    from coursestack.privileges import lookup, remove_account, revoke_reachable
    from coursestack.removal import remove_instance
    from coursestack.state import registered_instances

    # Only accounts of state folders this session made: other sessions run meanwhile.
    made = set()
    for folder in MADE:
        for pattern in ("run/account.json", "*/run/account.json", "*/*/run/account.json"):
            for record in folder.glob(pattern):
                with contextlib.suppress(OSError, ValueError, KeyError):
                    made.add(str(json.loads(record.read_text())["name"]))
    made = ((made | ACCOUNTS_SEEN) & _instance_accounts()) - before
    if not made:
        return
    for name, state in registered_instances():
        account = state.run / "account.json"
        if account.exists() and any(made_name in account.read_text() for made_name in made):
            with contextlib.suppress(Exception):
                remove_instance(Instance(name, state))
    for name in made:
        account = lookup(name)
        if account is None:
            continue
        with contextlib.suppress(Exception):
            running = [
                process
                for process in psutil.process_iter(["uids"])
                if process.info["uids"] and process.info["uids"].real == account.uid
            ]
            for process in running:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(running, timeout=10)  # userdel refuses while they live
            revoke_reachable([Path(sys.executable)], account)
            for folder in MADE:  # what tests left: to root, never to a freed uid
                if folder.is_dir():
                    with nofollow.folder(folder) as top:
                        nofollow.chown_owned_by(top, account.uid, 0, 0)
            remove_account(name)


@pytest.fixture
def workdir() -> Path:
    """A traversable scratch folder for one test."""
    return open_folder("work-")


@pytest.fixture(scope="session")
def sample_instance() -> Iterator[Instance]:
    """The embedded sample course, up (PostgreSQL + Jupyter), shared by a session."""
    state = open_folder("sample-")
    cli("up", "--state", str(state))
    instance = Instance("sample", StateFolder(state))
    yield instance
    cli("down", "--state", str(state), check=False)
