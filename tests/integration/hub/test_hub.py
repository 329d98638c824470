"""Many students on one host: the real JupyterHub + configurable-http-proxy in front of
one coursestack instance per student, each as their own unix user.

Needs root (it creates unix users, all named with the test-only prefix `cstest-` and
removed afterwards), `configurable-http-proxy` (npm) and `nft` (Debian nftables).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernel import run_cell
from support import cli, open_folder, wait_for
from support_hub import hub_missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PREFIX = "cstest-"
PASSWORD = "hub-test-pw"
CHROMIUM = "/usr/bin/chromium"


@dataclass
class Hub:
    folder: Path
    url: str

    def up(self, *extra: str) -> None:
        cli(
            "hub",
            "up",
            "--hub-dir",
            str(self.folder),
            "--port",
            self.url.rsplit(":", 1)[1].strip("/"),
            "--password",
            PASSWORD,
            "--unix-prefix",
            PREFIX,
            "--poll-interval",
            "3",
            *extra,
        )

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(
            cli("hub", "status", "--json", "--hub-dir", str(self.folder)).stdout
        )
        return result

    def student(self, name: str) -> dict[str, Any]:
        return next(s for s in self.status()["students"] if s["name"] == name)


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    reason = hub_missing()
    if reason:
        pytest.skip(reason)
    from coursestack.ports import ephemeral_port

    folder = open_folder("hub-")
    started = Hub(folder, f"http://127.0.0.1:{ephemeral_port()}/")
    try:
        started.up()
        yield started
    finally:
        cli("hub", "down", "--hub-dir", str(folder), check=False)
        names = (
            json.loads((folder / "users.json").read_text())
            if (folder / "users.json").exists()
            else {}
        )
        for unix_name in names.values():
            assert unix_name.startswith(PREFIX)
            from coursestack.hub.users import remove_student

            remove_student(unix_name)
        subprocess.run(
            ["nft", "delete", "table", "inet", "coursestack_hub"], check=False, capture_output=True
        )
        shutil.rmtree(folder, ignore_errors=True)


class Student:
    """A browser-like client logged in to the Hub (httpx, through /hub/login + xsrf)."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.client = httpx.Client(
            base_url=hub.url.rstrip("/"), trust_env=False, timeout=120, follow_redirects=True
        )
        page = self.client.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf, page.text[:500]
        self.last = self.client.post(
            "/hub/login", data={"username": name, "password": PASSWORD, "_xsrf": xsrf.group(1)}
        )
        self._token = ""

    def close(self) -> None:
        self.client.close()

    def wait_ready(self) -> httpx.Response:
        """The student's dashboard, once the Hub has started their environment."""
        answer: list[httpx.Response] = []

        def dashboard() -> bool:
            reply = self.client.get(f"/user/{self.name}/")
            answer[:] = [reply]
            return (
                reply.status_code == 200
                and "Services" in reply.text
                and str(reply.url).endswith(f"/user/{self.name}/")
            )

        wait_for(dashboard, timeout=240, what=f"{self.name}'s environment")
        return answer[0]

    @property
    def token(self) -> str:
        """A Hub API token of this student (made through their Hub session)."""
        if not self._token:
            xsrf = self.client.cookies.get("_xsrf", path="/hub/")
            reply = self.client.post(
                f"/hub/api/users/{self.name}/tokens",
                json={"note": "test", "expires_in": 3600},
                headers={"X-XSRFToken": xsrf or ""},
            )
            assert reply.status_code == 201, reply.text
            self._token = reply.json()["token"]
        return self._token

    def cell(self, code: str) -> str:
        """Run `code` in a kernel of this student's Jupyter, through the Hub's proxy."""
        self.wait_jupyter()
        return run_cell(
            f"{self.hub.url}user/{self.name}/s/jupyter/",
            self.token,
            code,
            timeout=120,
            origin=self.hub.url.rstrip("/"),
        )

    def wait_jupyter(self) -> None:
        def answers() -> bool:
            return (
                httpx.get(
                    f"{self.hub.url}user/{self.name}/s/jupyter/api/status",
                    headers={"Authorization": f"token {self.token}"},
                    trust_env=False,
                    timeout=30,
                ).status_code
                == 200
            )

        wait_for(answers, timeout=240, what=f"{self.name}'s Jupyter")


OWN_ROW = """
import os, psycopg
with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as db:
    db.execute("create table if not exists hub_test (owner text)")
    if not db.execute("select 1 from hub_test").fetchone():
        db.execute("insert into hub_test values (%s)", ({name!r},))
    print(",".join(row[0] for row in db.execute("select owner from hub_test")))
"""

PROBE_OTHER = """
import json, os, socket
uid, home = {uid}, {home!r}
ports = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    for line in open(table).read().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[7]) == uid:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
result = {{"ports": sorted(ports), "open": [], "files": []}}
for port in sorted(ports):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        result["open"].append(port)
    except ConnectionRefusedError:
        pass
    except OSError as error:
        result["open"].append(f"{{port}}: {{error}}")
for path in (home, os.path.join(home, "coursestack"), os.path.join(home, ".bashrc")):
    try:
        os.listdir(path) if os.path.isdir(path) else open(path).read()
        result["files"].append(path)
    except PermissionError:
        pass
    except FileNotFoundError:
        pass
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def students(hub: Hub) -> Iterator[tuple[Student, Student]]:
    ann, bob = Student(hub, "ann"), Student(hub, "bob")
    try:
        ann.wait_ready()
        bob.wait_ready()
        yield ann, bob
    finally:
        ann.close()
        bob.close()


def test_each_student_has_their_own_unix_user_and_database(
    students: tuple[Student, Student], hub: Hub
) -> None:
    ann, bob = students
    for student in students:
        info = hub.student(student.name)
        assert info["unix_user"] == PREFIX + student.name
        assert info["state"] == "running"
        assert info["memory"] and info["memory"] > 0
        home = Path(pwd.getpwnam(info["unix_user"]).pw_dir)
        assert home.stat().st_mode & 0o777 == 0o700
        who = student.cell("import getpass; print(getpass.getuser())").strip()
        assert who == info["unix_user"]
    # Each reads its own row: two databases, not one shared.
    assert ann.cell(OWN_ROW.format(name="ann")).strip() == "ann"
    assert bob.cell(OWN_ROW.format(name="bob")).strip() == "bob"


def test_from_inside_a_kernel_another_students_ports_and_files_are_closed(
    students: tuple[Student, Student],
) -> None:
    ann, _bob = students
    bob_account = pwd.getpwnam(PREFIX + "bob")
    found = json.loads(
        ann.cell(PROBE_OTHER.format(uid=bob_account.pw_uid, home=bob_account.pw_dir))
    )
    # bob's daemon, PostgreSQL, the MongoDB stand-in and Jupyter listen; kernels use ipc.
    assert len(found["ports"]) >= 4, found
    assert found["open"] == [], found
    assert found["files"] == [], found
    # The control: ann reaches her own services (her row came from her PostgreSQL).
    ann_account = pwd.getpwnam(PREFIX + "ann")
    own = json.loads(ann.cell(PROBE_OTHER.format(uid=ann_account.pw_uid, home=ann_account.pw_dir)))
    assert own["ports"] and len(own["open"]) == len(own["ports"]), own


def test_another_students_url_is_refused(students: tuple[Student, Student], hub: Hub) -> None:
    ann, bob = students
    # ann's browser session asks for bob's server: the Hub's OAuth refuses her.
    reply = ann.client.get("/user/bob/")
    assert reply.status_code == 403, (reply.status_code, reply.url)
    # ann's own server cookie (or her API token) replayed against bob's server.
    ann_cookie = ann.client.cookies.get("jupyterhub-user-ann-token")
    assert ann_cookie
    forged = httpx.get(
        f"{hub.url}user/bob/api/services",
        trust_env=False,
        headers={"Cookie": f"jupyterhub-user-bob-token={ann_cookie}"},
    )
    assert forged.status_code == 403
    with_token = httpx.get(
        f"{hub.url}user/bob/api/services",
        trust_env=False,
        headers={"Authorization": f"token {ann.token}"},
    )
    assert with_token.status_code == 403
    made_up = httpx.get(
        f"{hub.url}user/bob/api/services",
        trust_env=False,
        headers={"Cookie": "jupyterhub-user-bob-token=not-a-token"},
        follow_redirects=False,
    )
    assert made_up.status_code in (302, 401, 403)
    assert "Services" not in made_up.text
    # A wrong password: refused, and nothing is started for that name.
    with httpx.Client(
        base_url=hub.url.rstrip("/"), trust_env=False, follow_redirects=True
    ) as intruder:
        page = intruder.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf
        refused = intruder.post(
            "/hub/login", data={"username": "eve", "password": "wrong", "_xsrf": xsrf.group(1)}
        )
    assert "/hub/login" in str(refused.url) and refused.status_code == 403
    assert all(s["name"] != "eve" for s in hub.status()["students"])
    # And bob still gets in.
    assert bob.client.get("/user/bob/api/services").status_code == 200


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
def test_a_browser_logs_in_through_the_hub(students: tuple[Student, Student], hub: Hub) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.goto(f"{hub.url}hub/login")
            page.fill("#username_input", "ann")
            page.fill("#password_input", PASSWORD)
            page.click("#login_submit")
            page.wait_for_url(re.compile(r".*/user/ann/$"), timeout=120_000)
            expect(page.get_by_role("heading", name=re.compile("Services"))).to_be_visible()
            # The dashboard's live rows come through the Hub's proxy (links keep the prefix).
            expect(page.locator("text=postgres").first).to_be_visible()
            link = page.locator("a", has_text="Connections").first.get_attribute("href")
            assert link == "/user/ann/connections"
        finally:
            browser.close()


def test_a_memory_runaway_is_stopped_inside_its_own_environment(
    students: tuple[Student, Student], hub: Hub
) -> None:
    ann, bob = students
    from coursestack.hub.spawner import instance_key

    group = Path("/sys/fs/cgroup/memory/coursestack") / instance_key(PREFIX + "ann") / "instance"
    if not (group / "memory.limit_in_bytes").exists():
        pytest.skip("no writable cgroup v1 memory hierarchy here: the limit is only sampled")
    limit = int((group / "memory.limit_in_bytes").read_text())
    assert limit == 2**30  # the sample course's memory_budget
    with pytest.raises(Exception):  # noqa: B017 (the kernel dies: how it shows varies)
        ann.cell(f"hog = b'x' * {limit + 2**28}")
    assert (
        "oom_kill 1" in (group / "memory.oom_control").read_text()
        or int((group / "memory.failcnt").read_text()) > 0
    )
    # bob's environment did not notice; ann's environment itself is still up.
    assert bob.cell(OWN_ROW.format(name="bob")).strip() == "bob"
    assert hub.student("ann")["state"] == "running"
    assert ann.cell("print(6 * 7)").strip() == "42"


def test_a_crashed_environment_shows_stopped_and_starts_at_next_login(
    students: tuple[Student, Student], hub: Hub
) -> None:
    _ann, bob = students
    account = pwd.getpwnam(PREFIX + "bob")
    daemon = subprocess.run(
        ["pgrep", "-u", str(account.pw_uid), "-f", "coursestack singleuser"],
        capture_output=True,
        text=True,
    )
    os.kill(int(daemon.stdout.split()[0]), signal.SIGKILL)
    wait_for(
        lambda: hub.student("bob")["state"] == "stopped",
        timeout=60,
        what="the Hub to see bob's environment stopped",
    )
    bob.client.get("/hub/spawn")  # what his next login does
    bob.wait_ready()
    assert bob.cell(OWN_ROW.format(name="bob")).strip() == "bob"


def test_a_restarted_hub_reattaches_to_running_environments(
    students: tuple[Student, Student], hub: Hub
) -> None:
    ann, _bob = students
    before = hub.student("ann")
    pid = int((hub.folder / "jupyterhub.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the Hub to die")
    hub.up()
    after = hub.student("ann")
    assert after["state"] == "running"
    assert after["memory"]
    assert ann.cell(OWN_ROW.format(name="ann")).strip() == "ann"
    assert before["unix_user"] == after["unix_user"]


def test_culled_environment_restarts_with_its_data(
    students: tuple[Student, Student], hub: Hub
) -> None:
    ann, _bob = students
    ann.cell("open('kept.txt', 'w').write('still here')")
    cli("hub", "down", "--hub-dir", str(hub.folder))
    assert hub.folder.joinpath("hub.json").exists()
    hub.up("--cull-idle", "20", "--cull-every", "5", "--activity-interval", "5")
    again = Student(hub, "ann")
    again.wait_ready()
    again.close()
    wait_for(
        lambda: hub.student("ann")["state"] == "stopped",
        timeout=180,
        what="the idle culler to stop ann's environment",
    )
    account = pwd.getpwnam(PREFIX + "ann")
    assert not [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _uid_of(p) == account.pw_uid
    ], "ann's processes outlived the cull"
    third = Student(hub, "ann")
    try:
        third.wait_ready()
        assert third.cell(OWN_ROW.format(name="ann")).strip() == "ann"
        assert third.cell("print(open('kept.txt').read())").strip() == "still here"
    finally:
        third.close()


def _uid_of(proc: Path) -> int:
    try:
        return proc.stat().st_uid
    except OSError:
        return -1


def test_names_that_normalise_alike_get_distinct_unix_users(tmp_path: Path) -> None:
    from coursestack.hub.users import MAX_UNIX_NAME, Registry, normalise

    registry = Registry(tmp_path / "users.json", PREFIX)
    first, second = registry.unix_name("Ann.Lee"), registry.unix_name("ann-lee")
    assert first == normalise("Ann.Lee", PREFIX) == PREFIX + "ann-lee"
    assert second != first and second.startswith(PREFIX + "ann-lee")
    assert registry.unix_name("Ann.Lee") == first  # stable
    long = registry.unix_name("x" * 80)
    assert len(long) <= MAX_UNIX_NAME


def test_firewall_rules_name_each_block_and_owner() -> None:
    from coursestack.hub.network import PortBlock, ruleset

    rules = ruleset({1234: PortBlock(20000, 20039)})
    assert 'oifname "lo" tcp dport 20000-20039 meta skuid != { 0, 1234 } reject' in rules
