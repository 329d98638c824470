"""A page served by a proxied service attacks the dashboard and Jupyter from the student's
browser (Playwright + Debian's chromium), and is refused everything.

The course: Jupyter, plus a `command` service (`python -m http.server`) that serves an
attacker's page. The browser logs in once (dashboard, Jupyter, the attacker's service,
at both `127.0.0.1` and `localhost`), then the attacker's page, on its own origin
`attacker.<instance>.localhost:<port>`, tries every route of the dashboard's OpenAPI
schema and of Jupyter's REST API with `credentials: 'include'` (readable CORS requests
and blind `no-cors` ones), and a kernel WebSocket. Then: nothing was read, nothing was
done (same service pids, no new kernel, session or file, the daemon still up). Finally
the normal flow still works: from the dashboard, open Jupyter and run a cell.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from kernel import _collect, _execute_request
from lab_cell import run_first_cell
from support import cli, open_folder, wait_for

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

ATTACK_JS = r"""
window.attack = async ({dashboards, jupyter, routes, jupyterRoutes, kernel, marker}) => {
  const results = [];
  async function attempt(url, method, mode, body) {
    const entry = {url, method, mode};
    try {
      const init = {method, mode, credentials: 'include', redirect: 'follow'};
      if (body !== undefined) {
        init.body = body;
        if (mode === 'cors') init.headers = {'Content-Type': 'application/json'};
      }
      const response = await fetch(url, init);
      entry.type = response.type;
      entry.status = response.status;
      entry.body = await response.text();
    } catch (error) {
      entry.error = String(error);
    }
    results.push(entry);
  }
  for (const base of dashboards) {
    for (const [path, method] of routes) {
      const body = method === 'GET' ? undefined : '{}';
      await attempt(base + path, method, 'cors', body);
      await attempt(base + path, method, 'no-cors', body);
    }
  }
  for (const base of [jupyter, ...dashboards]) {
    for (const [path, method, body] of jupyterRoutes) {
      await attempt(base + path, method, 'cors', body === null ? undefined : body);
      await attempt(base + path, method, 'no-cors', body === null ? undefined : body);
    }
  }
  const sockets = [];
  for (const base of [jupyter, ...dashboards]) {
    const url = base.replace('http', 'ws') + '/s/jupyter/api/kernels/' + kernel + '/channels';
    sockets.push(await new Promise((resolve) => {
      let opened = false;
      const socket = new WebSocket(url);
      socket.onopen = () => {
        opened = true;
        socket.send(JSON.stringify({
          header: {msg_id: 'x', username: 'a', session: 'a', msg_type: 'execute_request',
                   version: '5.3', date: new Date().toISOString()},
          parent_header: {}, metadata: {}, channel: 'shell', buffers: [],
          content: {code: "open(" + JSON.stringify(marker) + ", 'w').write('pwned')",
                    silent: false, store_history: false, user_expressions: {},
                    allow_stdin: false, stop_on_error: true}}));
        setTimeout(() => resolve({url, opened}), 3000);
      };
      socket.onerror = () => resolve({url, opened});
      socket.onclose = () => resolve({url, opened});
    }));
  }
  return {results, sockets};
};
"""

ATTACK_HTML = """<!doctype html><html><head><meta charset=utf-8><title>A friendly page</title>
<script src="attack.js"></script></head><body><h1>Nothing to see</h1></body></html>"""

#: Beyond Jupyter's REST API schema: files, JupyterLab's settings, a file written.
JUPYTER_EXTRAS: list[tuple[str, str, str | None]] = [
    ("/s/jupyter/files/secret.txt", "GET", None),
    ("/s/jupyter/lab/api/settings", "GET", None),
    (
        "/s/jupyter/api/contents/pwned.txt",
        "PUT",
        '{"type": "file", "format": "text", "content": "pwned"}',
    ),
]


def _jupyter_routes(kernel: str) -> list[tuple[str, str, str | None]]:
    """Every (path, method, body) of Jupyter Server's own REST API schema (api.yaml),
    with the student's real kernel and file filled in, plus JUPYTER_EXTRAS."""
    import jupyter_server
    import yaml

    schema = yaml.safe_load(
        (Path(jupyter_server.__file__).parent / "services" / "api" / "api.yaml").read_text()
    )
    values = {
        "path": "secret.txt",
        "kernel_id": kernel,
        "session": "x",
        "checkpoint_id": "x",
        "terminal_id": "1",
        "section_name": "notebook",
    }
    routes = []
    for path, operations in schema["paths"].items():
        concrete = "/s/jupyter" + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
        for method in operations:
            if method == "parameters":
                continue
            body = None if method in ("get", "delete") else '{"name": "python3"}'
            routes.append((concrete, method.upper(), body))
    assert len(routes) > 25
    return routes + JUPYTER_EXTRAS


@pytest.fixture(scope="module")
def attacked_course() -> Iterator[dict[str, Any]]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    folder = open_folder("origins-")
    site = folder / "site"
    notebooks = folder / "notebooks"
    for path in (site, notebooks):
        path.mkdir()
        path.chmod(0o777)
    (site / "attack.html").write_text(ATTACK_HTML)
    (site / "attack.js").write_text(ATTACK_JS)
    (notebooks / "secret.txt").write_text("the student's own notes\n")
    (notebooks / "secret.txt").chmod(0o666)
    spec = folder / "course.toml"
    spec.write_text(f"""[course]
name = "origins-test"

[services.jupyter]
kind = "jupyter"
notebooks = "{notebooks}"

[services.attacker]
kind = "command"
command = ["python3", "-m", "http.server", "{{port}}", "--bind", "127.0.0.1",
           "--directory", "{site}"]
web = true
port = 18291
probe = {{ type = "http", path = "/attack.html" }}
""")
    state = folder / "state"
    cli("up", str(spec), "--state", str(state))
    record = json.loads((state / "run" / "daemon.json").read_text())
    try:
        yield {
            "state": state,
            "url": record["url"],
            "token": record["token"],
            "port": record["port"],
            "notebooks": notebooks,
            "marker": folder / "pwned",
        }
    finally:
        cli("down", "--state", str(state), check=False)


def _bearer(course: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=course["url"],
        trust_env=False,
        timeout=30,
        headers={"Authorization": f"Bearer {course['token']}"},
    )


def _dashboard_routes(course: dict[str, Any], names: dict[str, str]) -> list[tuple[str, str]]:
    """Every (path, method) of the dashboard's OpenAPI schema, with real names filled in."""
    with _bearer(course) as client:
        schema = client.get("/api/openapi.json").json()
    routes = []
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{(\w+)\}", lambda m: names.get(m.group(1), "jupyter"), path)
        routes += [(concrete, method.upper()) for method in operations]
    # The pages and the front door's redirect, which the schema leaves out.
    routes += [
        ("/", "GET"),
        ("/connections", "GET"),
        ("/doctor", "GET"),
        ("/doctor/bundle", "POST"),
        ("/logout", "POST"),
        ("/s/jupyter/", "GET"),
    ]
    return routes


def _jupyter_state(course: dict[str, Any]) -> dict[str, Any]:
    """What Jupyter holds, asked directly with its token (not through the browser)."""
    with _bearer(course) as client:
        services = {s["name"]: s for s in client.get("/api/services").json()}
        token = client.get("/api/connections?reveal=true").json()["services"]["jupyter"]["password"]
    base = f"http://127.0.0.1:{services['jupyter']['port']}/s/jupyter/api/"
    headers = {"Authorization": f"token {token}"}
    with httpx.Client(trust_env=False, timeout=30, headers=headers) as jupyter:
        return {
            "kernels": sorted(
                (k["id"], k["last_activity"], k["execution_state"])
                for k in jupyter.get(base + "kernels").json()
            ),
            "sessions": jupyter.get(base + "sessions").json(),
            "terminals": jupyter.get(base + "terminals").json(),
            "files": sorted(f["name"] for f in jupyter.get(base + "contents").json()["content"]),
            "pids": {name: s["pid"] for name, s in services.items()},
            "token": token,
            "base": base,
        }


def test_a_proxied_page_cannot_act_as_the_dashboard_or_jupyter(
    attacked_course: dict[str, Any],
) -> None:
    from playwright.sync_api import sync_playwright

    course = attacked_course
    port = course["port"]
    instance = "origins-test"
    jupyter_origin = f"http://jupyter.{instance}.localhost:{port}"
    attacker_origin = f"http://attacker.{instance}.localhost:{port}"
    dashboards = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    before = _jupyter_state(course)
    with httpx.Client(
        trust_env=False, timeout=30, headers={"Authorization": f"token {before['token']}"}
    ) as jupyter:
        kernel = jupyter.post(before["base"] + "kernels", json={"name": "python3"}).json()["id"]
        # Run one cell, so the kernel is idle and its last activity settles.
        channels = before["base"].replace("http://", "ws://") + f"kernels/{kernel}/channels"
        with connect(
            channels,
            additional_headers={"Authorization": f"token {before['token']}"},
            open_timeout=30,
        ) as socket:
            socket.send(json.dumps(_execute_request("warm", "1 + 1")))
            _collect(socket, "warm", 60)
        wait_for(
            lambda: (
                jupyter.get(before["base"] + f"kernels/{kernel}").json()["execution_state"]
                == "idle"
            ),
            timeout=60,
            what="the kernel to be idle",
        )
        time.sleep(1)
    before = _jupyter_state(course)
    with _bearer(course) as client:
        secrets_seen = [
            v
            for s in client.get("/api/connections?reveal=true").json()["services"].values()
            for k, v in s.items()
            if k == "password" and v
        ]
    secrets_seen += [course["token"]]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            # The student logs in once, at both names of the dashboard, and opens
            # Jupyter (its own login cookie too) and the attacker's page.
            for dashboard in dashboards:
                page.goto(f"{dashboard}/login?token={course['token']}")
                assert page.url == f"{dashboard}/"
            page.goto(f"{dashboards[0]}/s/jupyter/api/status")
            page.wait_for_url(f"{jupyter_origin}/s/jupyter/api/status")
            assert '"started"' in page.content()
            cookies = {c["name"]: c["domain"] for c in context.cookies()}
            assert any(name.startswith("username-jupyter") for name in cookies), cookies
            page.goto(f"{dashboards[0]}/s/attacker/attack.html")
            page.wait_for_url(f"{attacker_origin}/attack.html")
            page.wait_for_function("typeof window.attack === 'function'")
            names = {"name": "jupyter"}
            outcome = page.evaluate(
                "args => window.attack(args)",
                {
                    "dashboards": dashboards,
                    "jupyter": jupyter_origin,
                    "routes": _dashboard_routes(course, names),
                    "jupyterRoutes": _jupyter_routes(kernel),
                    "kernel": kernel,
                    "marker": str(course["marker"]),
                },
            )
        finally:
            browser.close()

    results = outcome["results"]
    assert len(results) > 100
    for entry in results:
        read = entry.get("type") in ("basic", "cors")
        assert not read, f"the attacker's page read {entry}"
        for secret in secrets_seen:
            assert secret not in json.dumps(entry)
    for socket in outcome["sockets"]:
        assert not socket["opened"], f"a kernel WebSocket opened: {socket}"
    after = _jupyter_state(course)
    assert {k: after[k] for k in ("kernels", "sessions", "terminals", "files", "pids")} == {
        k: before[k] for k in ("kernels", "sessions", "terminals", "files", "pids")
    }
    assert not course["marker"].exists(), "code ran in the kernel"
    assert (course["notebooks"] / "secret.txt").read_text() == "the student's own notes\n"
    with _bearer(course) as client:
        assert client.get("/api/health").status_code == 200


def test_the_student_still_opens_jupyter_from_the_dashboard_and_runs_a_cell(
    attacked_course: dict[str, Any],
) -> None:
    from playwright.sync_api import sync_playwright

    course = attacked_course
    name = f"origins-{uuid.uuid4().hex[:8]}.ipynb"
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "c1",
                "metadata": {},
                "outputs": [],
                "source": "print(6 * 7)",
            }
        ],
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = course["notebooks"] / name
    path.write_text(json.dumps(notebook))
    path.chmod(0o666)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{course['url']}login?token={course['token']}")
            with context.expect_page() as opened:
                page.get_by_role("link", name="Open jupyter (new tab)").click()
            lab = opened.value
            lab.wait_for_url(re.compile(r"http://jupyter\.origins-test\.localhost:\d+/s/jupyter/"))
            lab.goto(lab.url.split("/s/jupyter/")[0] + f"/s/jupyter/lab/tree/{name}")
            run_first_cell(lab, "print(6 * 7)", "42")
        finally:
            browser.close()
    path.unlink(missing_ok=True)


def test_service_origins_stay_apart(attacked_course: dict[str, Any]) -> None:
    """A service's cookie opens neither the dashboard nor another service; the
    dashboard's cookie opens no service; `/s/` on the dashboard only redirects."""
    course = attacked_course
    port = course["port"]
    with httpx.Client(base_url=course["url"], trust_env=False, timeout=30) as dashboard:
        assert dashboard.get(f"/login?token={course['token']}").status_code == 303
        hop = dashboard.get("/s/attacker/attack.html")
        assert hop.status_code == 303
        location = hop.headers["location"]
        assert location.startswith(f"http://attacker.origins-test.localhost:{port}/")
        dashboard_cookies = dict(dashboard.cookies)
    host = f"attacker.origins-test.localhost:{port}"
    with httpx.Client(
        base_url=course["url"], trust_env=False, timeout=30, headers={"Host": host}
    ) as attacker:
        handed = attacker.get(location.split(str(port), 1)[1])
        assert handed.status_code == 200
        assert attacker.get("/attack.html").status_code == 200
        again = attacker.get(location.split(str(port), 1)[1])
        assert again.status_code == 400, "a hand-off code works once"
        service_cookies = dict(attacker.cookies)
    for cookies, host in (
        (service_cookies, f"jupyter.origins-test.localhost:{port}"),
        (service_cookies, f"127.0.0.1:{port}"),
        (dashboard_cookies, f"jupyter.origins-test.localhost:{port}"),
        (dashboard_cookies, f"attacker.origins-test.localhost:{port}"),
    ):
        with httpx.Client(
            base_url=course["url"],
            trust_env=False,
            timeout=30,
            headers={"Host": host},
            cookies=cookies,
        ) as client:
            path = "/api/services" if host.startswith("127.") else "/s/jupyter/api/status"
            if host.startswith("attacker"):
                path = "/attack.html"
            assert client.get(path).status_code == 401, (host, sorted(cookies))


def test_a_link_from_another_origin_to_a_service_goes_through_the_dashboard(
    attacked_course: dict[str, Any],
) -> None:
    """A service page opened without its own cookie, by a link on another site (where
    the dashboard's SameSite=Strict cookie is not sent), still ends on the service,
    logged in by the hand-off: the dashboard re-requests itself from its own origin."""
    from playwright.sync_api import sync_playwright

    course = attacked_course
    port = course["port"]
    jupyter_status = f"http://jupyter.origins-test.localhost:{port}/s/jupyter/api/status"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(f"{course['url']}login?token={course['token']}")
            page.goto(f"{course['url']}s/attacker/attack.html")
            page.wait_for_url(f"http://attacker.origins-test.localhost:{port}/attack.html")
            page.evaluate(f"location.href = {json.dumps(jupyter_status)}")
            page.wait_for_url(jupyter_status, timeout=30_000)
            assert '"started"' in page.content()
        finally:
            browser.close()
