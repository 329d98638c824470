"""The spec API the composer uses: read, validate, compose, save with a version, run."""

from __future__ import annotations

import io
import tomllib
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from composer_support import TINY_SPEC, Course, running_course
from coursestack.state import StateFolder

pytestmark = pytest.mark.slow

SECOND = {
    "kind": "command",
    "port": 8100,
    "web": True,
    "command": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"],
}


@pytest.fixture
def course() -> Iterator[Course]:
    with running_course() as running:
        yield running


def compose(client: httpx.Client, base: str, data: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/api/spec/compose", json={"base": base, "data": data})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_read_compose_and_validate(course: Course) -> None:
    with course.bearer() as client:
        spec = client.get("/api/spec")
        body = spec.json()
        assert body["text"] == TINY_SPEC and body["valid"] and body["problems"] == []
        assert spec.headers["etag"] == f'"{body["version"]}"'
        assert body["data"] == tomllib.loads(TINY_SPEC)
        # Unchanged data gives the same bytes back.
        assert compose(client, body["text"], body["data"])["text"] == TINY_SPEC
        cycle = (
            TINY_SPEC + '[services.a]\nkind = "command"\ncommand = "true"\n'
            'probe = { type = "none" }\ndepends_on = ["hello"]\n'
        )
        cycle = cycle.replace("port = 8000", 'depends_on = ["a"]\nport = 8000')
        checked = client.post("/api/spec/validate", json={"text": cycle}).json()
        assert not checked["valid"]
        [problem] = checked["problems"]
        assert problem["key"] == "services.a.depends_on"
        assert problem["message"] == "dependency cycle: a -> hello -> a"
        assert cycle.splitlines()[problem["line"] - 1] == 'depends_on = ["hello"]'
        assert problem["hint"]


def test_save_needs_the_version_it_started_from(course: Course) -> None:
    with course.bearer() as client:
        body = client.get("/api/spec").json()
        data = body["data"]
        data["services"]["hello"]["port"] = 8001
        text = compose(client, body["text"], data)["text"]
        # Meanwhile somebody edits the file in a text editor.
        edited = TINY_SPEC.replace("# A small course", "# Edited by hand: a small course")
        course.spec.write_text(edited, encoding="utf-8")
        refused = client.put("/api/spec", json={"text": text, "version": body["version"]})
        assert refused.status_code == 409
        assert refused.json()["text"] == edited
        assert course.spec.read_text(encoding="utf-8") == edited  # nothing lost
        # Put the change onto the new file: both edits survive.
        fresh = refused.json()
        merged = compose(client, fresh["text"], data)["text"]
        mismatch = client.put(
            "/api/spec",
            json={"text": merged, "version": fresh["version"]},
            headers={"If-Match": f'"{body["version"]}"'},
        )
        assert mismatch.status_code == 409  # body and header must agree
        saved = client.put(
            "/api/spec",
            json={"text": merged, "version": fresh["version"]},
            headers={"If-Match": f'"{fresh["version"]}"'},
        )
        assert saved.status_code == 200, saved.text
        now = course.spec.read_text(encoding="utf-8")
        assert "# Edited by hand" in now and "port = 8001" in now
        assert "a preference: another free port" in now  # the comment on the changed line
        backup = course.spec.with_name("course.toml.bak")
        assert backup.read_text(encoding="utf-8") == edited
        assert saved.headers["etag"] == f'"{saved.json()["version"]}"'


def test_an_invalid_spec_is_never_written(course: Course) -> None:
    with course.bearer() as client:
        body = client.get("/api/spec").json()
        data = body["data"]
        data["services"]["hello"]["port"] = 70000
        data["services"]["other"] = {"kind": "nosuchkind"}
        composed = compose(client, body["text"], data)
        assert not composed["valid"]
        assert {p["key"] for p in composed["problems"]} == {
            "services.hello.port",
            "services.other.kind",
        }
        refused = client.put(
            "/api/spec", json={"text": composed["text"], "version": body["version"]}
        )
        assert refused.status_code == 400
        assert {p["key"] for p in refused.json()["problems"]} == {
            "services.hello.port",
            "services.other.kind",
        }
        assert course.spec.read_text(encoding="utf-8") == TINY_SPEC
        assert not course.spec.with_name("course.toml.bak").exists()


def test_a_browser_session_needs_its_csrf_token(course: Course) -> None:
    with httpx.Client(base_url=course.url, trust_env=False, timeout=30) as browser:
        browser.get(f"/login?token={course.token}")
        body = browser.get("/api/spec").json()
        refused = browser.put("/api/spec", json={"text": body["text"], "version": body["version"]})
        assert refused.status_code == 403
        csrf = browser.get("/api/session").json()["csrf_token"]
        accepted = browser.put(
            "/api/spec",
            json={"text": body["text"], "version": body["version"]},
            headers={"X-CSRF-Token": csrf},
        )
        assert accepted.status_code == 200 and accepted.json()["changed"] is False
    with httpx.Client(base_url=course.url, trust_env=False, timeout=30) as stranger:
        assert stranger.get("/api/spec").status_code == 401
        assert stranger.post("/api/spec/apply").status_code == 401


def test_run_touches_only_what_changed(course: Course) -> None:
    hello = course.wait_state("hello", "ready")
    with course.bearer() as client:

        def save(change: Any) -> None:
            body = client.get("/api/spec").json()
            change(body["data"])
            text = compose(client, body["text"], body["data"])["text"]
            saved = client.put("/api/spec", json={"text": text, "version": body["version"]})
            assert saved.status_code == 200, saved.text

        save(lambda data: data["services"].__setitem__("second", dict(SECOND)))
        applied = client.post("/api/spec/apply").json()
        assert applied == {
            "added": ["second"],
            "removed": [],
            "changed": [],
            "unchanged": ["hello"],
            "started": ["second"],
        }
        second = course.wait_state("second", "ready")
        assert course.wait_state("hello", "ready")["pid"] == hello["pid"]
        # The new web service has its origin at the front door.
        instance = StateFolder(course.state).instance()["name"]
        port = course.url.rstrip("/").rsplit(":", 1)[1]
        page = client.get("/", headers={"Host": f"second.{instance}.localhost:{port}"})
        assert page.status_code == 200 and "Directory listing" in page.text

        save(
            lambda data: (
                data["services"]["second"]["env"].update({"GREETING": "hi"})
                if "env" in data["services"]["second"]
                else data["services"]["second"].__setitem__("env", {"GREETING": "hi"})
            )
        )
        applied = client.post("/api/spec/apply").json()
        assert (applied["changed"], applied["started"]) == (["second"], ["second"])
        restarted = course.wait_state("second", "ready")
        assert restarted["pid"] != second["pid"]
        assert course.wait_state("hello", "ready")["pid"] == hello["pid"]

        save(lambda data: data["services"].pop("second"))
        applied = client.post("/api/spec/apply").json()
        assert applied["removed"] == ["second"]
        assert client.get("/api/services/second").status_code == 404
        assert [s["name"] for s in client.get("/api/services").json()] == ["hello"]
        assert course.wait_state("hello", "ready")["pid"] == hello["pid"]


def test_download_and_schema(course: Course) -> None:
    with course.bearer() as client:
        download = client.get("/api/spec/download")
        assert download.status_code == 200
        assert download.headers["content-disposition"] == 'attachment; filename="tiny.zip"'
        with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
            names = set(archive.namelist())
            assert archive.read("tiny/course.toml").decode() == TINY_SPEC
            assert {
                "tiny/exports/compose/compose.yaml",
                "tiny/exports/z2jh/config.yaml",
                "tiny/exports/systemd/coursestack.service",
                "tiny/exports/binder/postBuild",
            } <= names
            assert b"hello" in archive.read("tiny/exports/compose/compose.yaml")
        schema = client.get("/api/spec/schema").json()
        assert schema["kinds"]["command"]["properties"]["port"]["description"]
        paths = client.get("/api/openapi.json").json()["paths"]
        assert {"/api/spec", "/api/spec/validate", "/api/spec/compose", "/api/spec/apply"} <= set(
            paths
        )
        assert set(paths["/api/spec"]) == {"get", "put"}
        picture = client.get("/diagram.svg")
        assert picture.headers["content-type"].startswith("image/svg+xml")
        assert 'data-service="hello"' in picture.text
