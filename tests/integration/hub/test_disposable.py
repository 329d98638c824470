"""Disposable sessions: /hub/tmplogin gives every visitor a fresh environment made from
an already-seeded template, and culling deletes it completely (account, files,
processes, port block)."""

from __future__ import annotations

import json
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kernel import run_cell
from support import cli, open_folder, wait_for
from support_hub import hub_missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PREFIX = "cstest-"


@pytest.fixture
def disposable_hub() -> Iterator[tuple[Path, str]]:
    from coursestack.ports import ephemeral_port

    reason = hub_missing()
    if reason:
        pytest.skip(reason)
    folder = open_folder("hub-tmp-")
    url = f"http://127.0.0.1:{ephemeral_port()}/"
    try:
        cli(
            "hub",
            "up",
            "--hub-dir",
            str(folder),
            "--port",
            url.rsplit(":", 1)[1].strip("/"),
            "--disposable",
            "--cull-idle",
            "20",
            "--cull-every",
            "5",
            "--activity-interval",
            "5",
            "--unix-prefix",
            PREFIX,
        )
        yield folder, url
    finally:
        cli("hub", "down", "--hub-dir", str(folder), check=False)
        from coursestack.hub.users import remove_student

        names = (
            json.loads((folder / "users.json").read_text())
            if (folder / "users.json").exists()
            else {}
        )
        for unix_name in [*names.values(), PREFIX + "template"]:
            assert unix_name.startswith(PREFIX)
            remove_student(unix_name)
        subprocess.run(
            ["nft", "delete", "table", "inet", "coursestack_hub"], check=False, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


def _visit(url: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(
        base_url=url.rstrip("/"), trust_env=False, timeout=120, follow_redirects=True
    )
    reply = client.get("/hub/tmplogin")
    match = re.search(r"/user/([^/]+)/", str(reply.url)) or re.search(
        r"/spawn-pending/([^/?]+)", str(reply.url)
    )
    assert match, reply.url
    return client, match.group(1)


def test_a_visitor_gets_a_seeded_environment_and_leaves_nothing(
    disposable_hub: tuple[Path, str],
) -> None:
    folder, url = disposable_hub
    assert (folder / "template" / "instance.json").exists()
    client, name = _visit(url)
    try:
        wait_for(
            lambda: (
                client.get(f"/user/{name}/").status_code == 200
                and "Services" in client.get(f"/user/{name}/").text
            ),
            timeout=240,
            what="the visitor's environment",
        )
        unix_name = json.loads((folder / "users.json").read_text())[name]
        account = pwd.getpwnam(unix_name)
        xsrf = client.cookies.get("_xsrf", path="/hub/") or ""
        token = client.post(
            f"/hub/api/users/{name}/tokens", json={"expires_in": 600}, headers={"X-XSRFToken": xsrf}
        ).json()["token"]
        base = f"{url}user/{name}/s/jupyter/"
        wait_for(
            lambda: (
                httpx.get(
                    f"{base}api/status",
                    trust_env=False,
                    headers={"Authorization": f"token {token}"},
                ).status_code
                == 200
            ),
            timeout=240,
            what="Jupyter",
        )
        seeded = run_cell(
            base,
            token,
            "import os, psycopg\n"
            "with psycopg.connect(os.environ['DATABASE_URL']) as db:\n"
            "    print(db.execute('select count(*) from coursestack.seed')"
            ".fetchone()[0])",
            timeout=120,
            origin=url.rstrip("/"),
        )
        assert int(seeded.strip()) >= 1
    finally:
        client.close()

    # Idle: culled, and the user deleted with everything it had.
    def status() -> list[dict[str, object]]:
        result = cli("hub", "status", "--json", "--hub-dir", str(folder))
        return json.loads(result.stdout)["students"]

    wait_for(
        lambda: all(s["name"] != name for s in status()),
        timeout=240,
        what="the culler to delete the visitor",
    )

    def gone() -> bool:
        try:
            pwd.getpwnam(unix_name)
        except KeyError:
            return True
        return False

    wait_for(gone, timeout=60, what="the visitor's unix user to be removed")
    assert not Path(account.pw_dir).exists()
    assert not [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid_of(p) == account.pw_uid
    ]
    assert unix_name not in json.loads((folder / "ports.json").read_text())


def _uid_of(proc: Path) -> int:
    try:
        return proc.stat().st_uid
    except OSError:
        return -1
