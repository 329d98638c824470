"""The route table: inputs validated as documented, and the OpenAPI document it writes."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import httpx
from pydantic import BaseModel, Field
from starlette.applications import Starlette

from coursestack.api_types import Problem
from coursestack.web.app import DESCRIPTION, operations
from coursestack.web.routing import Answer, Call, Routes, openapi_document


class Lines(BaseModel):
    lines: int = Field(200, ge=1, le=10000)


class Version(BaseModel):
    if_match: str | None = Field(None, max_length=100)


class Text(BaseModel):
    text: str


class Echo(BaseModel):
    """What the test route answers."""

    name: str
    lines: int
    text: str
    if_match: str | None


table = Routes("/api", tags=["test"], login=False)


@table.get(
    "/things/{name}", response=Lines, query=Lines, responses={404: Answer(Problem, "No such thing")}
)
async def one_thing(call: Call) -> Lines:
    """One thing."""
    return call.query_as(Lines)


@table.put("/things/{name}", response=Echo, query=Lines, headers=Version, body=Text)
async def put_thing(call: Call) -> Echo:
    """Replace a thing."""
    return Echo(
        name=call.path("name"),
        lines=call.query_as(Lines).lines,
        text=call.body_as(Text).text,
        if_match=call.headers_as(Version).if_match,
    )


def _requests(*calls: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    app = Starlette(routes=table.routes())
    app.state.web = SimpleNamespace()

    async def send_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(method, url, **options) for method, url, options in calls]

    return asyncio.run(send_all())


def test_inputs_are_validated_as_declared() -> None:
    ok, low, word, body, missing, not_json, wrong_type, long_header = _requests(
        ("GET", "/api/things/a?lines=5", {}),
        ("GET", "/api/things/a?lines=0", {}),
        ("GET", "/api/things/a?lines=many", {}),
        ("PUT", "/api/things/a", {"json": {"text": "hi"}, "headers": {"If-Match": '"v1"'}}),
        ("PUT", "/api/things/a", {}),
        (
            "PUT",
            "/api/things/a",
            {"content": b"{", "headers": {"Content-Type": "application/json"}},
        ),
        (
            "PUT",
            "/api/things/a",
            {"content": b'{"text": "hi"}', "headers": {"Content-Type": "text/plain"}},
        ),
        ("PUT", "/api/things/a", {"json": {"text": "hi"}, "headers": {"If-Match": "x" * 101}}),
    )
    assert (ok.status_code, ok.json()) == (200, {"lines": 5})
    for refused, where in (
        (low, ["query", "lines"]),
        (word, ["query", "lines"]),
        (missing, ["body"]),
        (wrong_type, ["body"]),
        (long_header, ["header", "if_match"]),
    ):
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"][0]["loc"] == where
    assert not_json.status_code == 422
    assert not_json.json()["detail"][0]["type"] == "json_invalid"
    assert body.json() == {"name": "a", "lines": 200, "text": "hi", "if_match": '"v1"'}


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [
            *([node["$ref"]] if "$ref" in node else []),
            *(ref for value in node.values() for ref in _refs(value)),
        ]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_document_says_what_the_table_does() -> None:
    document = openapi_document(table.operations, title="t", version="1", description="d")
    get = document["paths"]["/api/things/{name}"]["get"]  # type: ignore[index]
    assert [(p["name"], p["in"], p["required"]) for p in get["parameters"]] == [
        ("name", "path", True),
        ("lines", "query", False),
    ]
    assert get["parameters"][1]["schema"]["maximum"] == 10000
    assert set(get["responses"]) == {"200", "404", "422"}
    put = document["paths"]["/api/things/{name}"]["put"]  # type: ignore[index]
    assert put["parameters"][2]["name"] == "if-match"
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Text"
    }
    assert put["description"] == "Replace a thing."
    components = document["components"]["schemas"]  # type: ignore[index]
    assert {"Lines", "Text", "Echo", "Problem", "HTTPValidationError"} <= set(components)
    assert all(ref.removeprefix("#/components/schemas/") in components for ref in _refs(document))


def test_the_daemons_document_covers_its_api_and_resolves() -> None:
    document = openapi_document(
        operations(), title="coursestack", version="1", description=DESCRIPTION
    )
    json.dumps(document)  # plain JSON
    paths: dict[str, dict[str, Any]] = document["paths"]  # type: ignore[assignment]
    routed = {
        (op.path, method.lower()) for op in operations() if op.in_schema for method in op.methods
    }
    assert {(path, method) for path, ops in paths.items() for method in ops} == routed
    assert all(path.startswith("/api/") for path in paths)
    assert "/api/openapi.json" not in paths and "/login" not in paths
    for path, ops in paths.items():
        for method, op in ops.items():
            if path != "/api/health":
                assert "401" in op["responses"] and op["security"], (method, path)
    schemas = document["components"]["schemas"]  # type: ignore[index]
    assert all(ref.removeprefix("#/components/schemas/") in schemas for ref in _refs(document))
