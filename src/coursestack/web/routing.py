"""The daemon's routes as one table, which drives both Starlette's routing and the
OpenAPI document, so the document cannot drift from the handlers.

Each module declares its operations on a `Routes` table (`@routes.get(path, ...)`),
saying what a handler reads (query, headers, JSON body: pydantic models) and what it
answers (the 200 body's type; other status codes as `Answer`s). For every request the
table checks the login (unless public), validates the inputs (422 with FastAPI's
`detail` list when they are wrong), calls the handler with a `Call`, and serialises what
it returns. `openapi_document` writes the same table as OpenAPI 3.1, with every model's
JSON schema from pydantic under `components/schemas`.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coursestack.web.auth import Principal
from coursestack.web.context import WebContext, get_context, require_login

M = TypeVar("M", bound=BaseModel)
REF = "#/components/schemas/{model}"
_PATH_PARAMETER = re.compile(r"\{(\w+)(?::\w+)?\}")


class Answer(NamedTuple):
    """A documented answer of an operation: its body's model (None: no JSON body)."""

    model: type[BaseModel] | None
    description: str


#: Status code -> answer.
Responses = Mapping[int, Answer]


@dataclass(frozen=True)
class Call:
    """One request, as a handler sees it: inputs already validated."""

    request: Request
    web: WebContext
    #: Who is calling (None on public routes).
    principal: Principal | None
    query: BaseModel | None = None
    headers: BaseModel | None = None
    body: BaseModel | None = None

    def path(self, name: str) -> str:
        """A path parameter."""
        return str(self.request.path_params[name])

    @property
    def login(self) -> Principal:
        """The caller of a route that needs a login."""
        assert self.principal is not None, "a public route has no login"
        return self.principal

    def query_as(self, model: type[M]) -> M:
        return _as(self.query, model)

    def headers_as(self, model: type[M]) -> M:
        return _as(self.headers, model)

    def body_as(self, model: type[M]) -> M:
        return _as(self.body, model)


def _as(value: BaseModel | None, model: type[M]) -> M:
    assert isinstance(value, model), f"the route declares no {model.__name__}"
    return value


#: What a handler may return: a Response as is, else a value of the route's 200 type.
Handler = Callable[[Call], Awaitable[object]]


@dataclass(frozen=True)
class Operation:
    """One route: method(s), path, handler, and what it reads and answers."""

    methods: tuple[str, ...]
    path: str
    handler: Handler
    #: Type of the 200 body (a model, list[...], dict[...]); None: not JSON or not documented.
    response: Any = None
    #: Media types of the 200 body when it is not JSON (e.g. text/event-stream).
    media_types: tuple[str, ...] = ()
    query: type[BaseModel] | None = None
    headers: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    responses: Responses = field(default_factory=dict)
    login: bool = True
    tags: tuple[str, ...] = ()
    in_schema: bool = True

    @property
    def path_parameters(self) -> list[str]:
        return _PATH_PARAMETER.findall(self.path)

    def route(self) -> Route:
        """The Starlette route that serves this operation."""
        return Route(
            self.path, self._endpoint, methods=list(self.methods), name=self.handler.__name__
        )

    async def _endpoint(self, request: Request) -> Response:
        web = get_context(request)
        principal = await require_login(request) if self.login else None
        problems: list[dict[str, object]] = []
        query = _validated(self.query, dict(request.query_params), "query", problems)
        headers = None
        if self.headers is not None:
            present = {
                name: request.headers[name.replace("_", "-")]
                for name in self.headers.model_fields
                if name.replace("_", "-") in request.headers
            }
            headers = _validated(self.headers, present, "header", problems)
        body = await _json_body(self.body, request, problems) if self.body else None
        if problems:
            return JSONResponse({"detail": problems}, 422)
        result = await self.handler(Call(request, web, principal, query, headers, body))
        return _respond(result, self.response)


def _validated(
    model: type[M] | None, data: dict[str, Any], where: str, problems: list[dict[str, object]]
) -> M | None:
    if model is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems += [
            {"type": e["type"], "loc": [where, *e["loc"]], "msg": e["msg"]}
            for e in error.errors(include_url=False)
        ]
        return None


async def _json_body(
    model: type[M], request: Request, problems: list[dict[str, object]]
) -> M | None:
    """The request's JSON body as `model` (the daemon's Guard has bounded its size)."""
    raw = await request.body()
    if not raw:
        problems.append({"type": "missing", "loc": ["body"], "msg": "Field required"})
        return None
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not (
        media == "application/json"
        or (media.startswith("application/") and media.endswith("+json"))
    ):
        problems.append(
            {
                "type": "model_attributes_type",
                "loc": ["body"],
                "msg": "a JSON body is needed (Content-Type: application/json)",
            }
        )
        return None
    try:
        data = json.loads(raw)
    except ValueError as error:
        problems.append(
            {
                "type": "json_invalid",
                "loc": ["body", getattr(error, "pos", 0)],
                "msg": "JSON decode error",
            }
        )
        return None
    return _validated(model, data, "body", problems)


@lru_cache(maxsize=64)
def _adapter(kind: Any) -> TypeAdapter[Any]:
    return TypeAdapter(kind)


def _respond(result: object, kind: Any) -> Response:
    if isinstance(result, Response):
        return result
    if isinstance(result, BaseModel):
        body = result.model_dump_json().encode()
    else:
        body = _adapter(object if kind is None else kind).dump_json(result)
    return Response(body, media_type="application/json")


class Routes:
    """A table of operations sharing a prefix, tags, login rule and documented answers."""

    def __init__(
        self,
        prefix: str = "",
        *,
        tags: Iterable[str] = (),
        login: bool = True,
        responses: Responses | None = None,
        in_schema: bool = True,
    ) -> None:
        self.prefix = prefix
        self.tags = tuple(tags)
        self.login = login
        self.responses = dict(responses or {})
        self.in_schema = in_schema
        self.operations: list[Operation] = []

    def add(
        self,
        methods: Iterable[str],
        path: str,
        *,
        response: Any = None,
        media_types: Iterable[str] = (),
        query: type[BaseModel] | None = None,
        headers: type[BaseModel] | None = None,
        body: type[BaseModel] | None = None,
        responses: Responses | None = None,
        in_schema: bool | None = None,
    ) -> Callable[[Handler], Handler]:
        """Declare the decorated handler as the operation `methods path`."""

        def declare(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    tuple(methods),
                    self.prefix + path,
                    handler,
                    response,
                    tuple(media_types),
                    query,
                    headers,
                    body,
                    {**self.responses, **(responses or {})},
                    self.login,
                    self.tags,
                    self.in_schema if in_schema is None else in_schema,
                )
            )
            return handler

        return declare

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.add(("GET",), path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.add(("POST",), path, **options)

    def put(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.add(("PUT",), path, **options)

    def routes(self) -> list[Route]:
        return [operation.route() for operation in self.operations]


# -- the OpenAPI document -------------------------------------------------------------------

_VALIDATION_ERROR = {
    "properties": {
        "loc": {
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "type": "array",
            "title": "Location",
        },
        "msg": {"type": "string", "title": "Message"},
        "type": {"type": "string", "title": "Error Type"},
        "input": {"title": "Input"},
        "ctx": {"type": "object", "title": "Context"},
    },
    "type": "object",
    "required": ["loc", "msg", "type"],
    "title": "ValidationError",
}
_HTTP_VALIDATION_ERROR = {
    "properties": {
        "detail": {
            "items": {"$ref": REF.format(model="ValidationError")},
            "type": "array",
            "title": "Detail",
        }
    },
    "type": "object",
    "title": "HTTPValidationError",
}
_BEARER = {
    "type": "http",
    "description": "The instance token (run/daemon.json).",
    "scheme": "bearer",
}


def _json(schema: object) -> dict[str, object]:
    return {"application/json": {"schema": schema}}


def _parameters(model: type[BaseModel] | None, where: str) -> list[dict[str, object]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    return [
        {
            "name": name.replace("_", "-") if where == "header" else name,
            "in": where,
            "required": name in required,
            "schema": {
                **part,
                "title": part.get("title", name).replace(" ", "-")
                if where == "header"
                else part.get("title", name),
            },
        }
        for name, part in schema.get("properties", {}).items()
    ]


def openapi_document(
    operations: Iterable[Operation], *, title: str, version: str, description: str
) -> dict[str, object]:
    """The OpenAPI 3.1 document of `operations` (those in the schema)."""
    chosen = [op for op in operations if op.in_schema]
    # Every type the document names, in one pass: shared models become components.
    inputs: list[tuple[tuple[int, str], Any, TypeAdapter[Any]]] = []
    for index, op in enumerate(chosen):
        if op.response is not None:
            inputs.append(((index, "200"), "serialization", _adapter(op.response)))
        if op.body is not None:
            inputs.append(((index, "body"), "validation", _adapter(op.body)))
        for status, answer in op.responses.items():
            if answer.model is not None:
                inputs.append(((index, str(status)), "serialization", _adapter(answer.model)))
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF)

    paths: dict[str, dict[str, object]] = {}
    for index, op in enumerate(chosen):
        for method in op.methods:
            paths.setdefault(op.path, {})[method.lower()] = _operation(
                op,
                method,
                {key[1]: schema for (key, _mode), schema in schemas.items() if key[0] == index},
            )
    components: dict[str, object] = {
        "schemas": {
            **definitions.get("$defs", {}),
            "ValidationError": _VALIDATION_ERROR,
            "HTTPValidationError": _HTTP_VALIDATION_ERROR,
        },
        "securitySchemes": {"HTTPBearer": _BEARER},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "description": description, "version": version},
        "paths": paths,
        "components": components,
    }


def _operation(op: Operation, method: str, schemas: dict[str, object]) -> dict[str, object]:
    name = op.handler.__name__
    document: dict[str, object] = {
        "tags": list(op.tags),
        "summary": name.replace("_", " ").title(),
        "description": inspect.cleandoc(op.handler.__doc__ or ""),
        "operationId": re.sub(r"\W", "_", name + op.path) + "_" + method.lower(),
    }
    if op.login:
        document["security"] = [{"HTTPBearer": []}]
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "title": name.title()},
        }
        for name in op.path_parameters
    ]
    parameters += _parameters(op.query, "query") + _parameters(op.headers, "header")
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        document["requestBody"] = {"required": True, "content": _json(schemas["body"])}
    ok: dict[str, object] = {"description": "Successful Response"}
    if op.media_types:
        ok["content"] = {media: {} for media in op.media_types}
    else:
        ok["content"] = _json(schemas.get("200", {}))
    responses: dict[str, object] = {"200": ok}
    for status, answer in op.responses.items():
        responses[str(status)] = {
            "description": answer.description,
            **({"content": _json(schemas[str(status)])} if answer.model is not None else {}),
        }
    if parameters or op.body is not None:
        responses["422"] = {
            "description": "Validation Error",
            "content": _json({"$ref": REF.format(model="HTTPValidationError")}),
        }
    document["responses"] = responses
    return document
