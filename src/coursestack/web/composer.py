"""The course spec over HTTP: read, validate, compose, save, run; the picture and the composer.

- `GET /api/spec` gives the instance's `course.toml` as text, as data and with its version
  (also the `ETag`); `PUT /api/spec` saves a new text only if it is a valid spec and the
  file is still at the version the editor started from (`version`, or `If-Match`), so
  two tabs, or a tab and a text editor, never overwrite each other silently.
- `POST /api/spec/validate` runs the real spec loader: the same problems as `up`, each
  with its line and key. `POST /api/spec/compose` writes edited data back into the text
  with tomlkit (comments and order kept) and validates the result.
- `POST /api/spec/apply` runs the saved spec on this instance (see respec.py).
- `/diagram.svg` is the course picture the services page shows live; `/composer` the
  drag-and-drop editor (static/composer.js).
"""

from __future__ import annotations

import asyncio
import io
import re
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from starlette.responses import HTMLResponse, JSONResponse, Response

from coursestack.api_types import Problem
from coursestack.errors import SpecError, UserError
from coursestack.spec import CourseInfo, DependencyCondition, load_spec, service_models
from coursestack.web.api import NO_CSRF, NOT_LOGGED_IN
from coursestack.web.dashboard import _page_values, render
from coursestack.web.origins import Origins
from coursestack.web.routing import Answer, Call, Responses, Routes

if TYPE_CHECKING:
    from coursestack.spec_edit import Checked

# spec_edit (tomlkit) and diagram load on first use, inside the handlers: an idle daemon
# whose composer is never opened does not carry them.


class SpecProblemView(BaseModel):
    """One problem of a spec, as `coursestack up` reports it, with where it is."""

    line: int
    key: str
    message: str
    hint: str


class SpecText(BaseModel):
    """A course spec's TOML text."""

    text: str


class Validation(BaseModel):
    """What the spec loader says about a text."""

    valid: bool
    problems: list[SpecProblemView]
    #: The text read as data (null if it is not TOML): what the composer edits.
    data: dict[str, Any] | None


class SpecDocument(Validation):
    """The instance's course spec file."""

    path: str
    text: str
    version: str


class ComposeRequest(BaseModel):
    """Edited data to write back into a spec's text."""

    base: str = Field(description="The text the edits start from.")
    data: dict[str, Any] = Field(description="The whole spec as data, edited.")


class Composed(Validation):
    """The edited text, and what the loader says about it."""

    text: str


class SpecSave(BaseModel):
    """A new text for the spec file, and the version it replaces."""

    text: str
    version: str = Field(
        max_length=100,
        description="Version the edit started from (from "
        "GET /api/spec or its ETag); an `If-Match` header, if sent, must "
        "name the same.",
    )


class SavedView(BaseModel):
    """The spec file after a save."""

    path: str
    version: str
    backup: str | None
    changed: bool


class Refused(Problem):
    """A spec that was not saved: what is wrong with it (no problems: the body was not
    even JSON)."""

    problems: list[SpecProblemView] = Field(default_factory=list)


class ConflictView(Problem):
    """The file changed since the editor read it: its text and version now."""

    text: str
    version: str


class Applied(BaseModel):
    """What running the saved spec changed on this instance."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    unchanged: list[str]
    started: list[str]


#: Routes with a JSON body: one that is not JSON, or over the daemon's 64 KiB limit, is
#: refused before the route runs (a spec's size is bounded by that limit, not the schema).
BAD_BODY: Responses = {
    400: Answer(Problem, "The body is not JSON"),
    413: Answer(Problem, "The body is over 64 KiB"),
}
SAVE_RESPONSES: Responses = {
    **NO_CSRF,
    **BAD_BODY,
    400: Answer(Refused, "The spec has problems (or the body is not JSON); nothing was written"),
    409: Answer(ConflictView, "The file changed since that version; nothing was written"),
}


class IfMatch(BaseModel):
    """The version an edit started from, as a header (must agree with the body's)."""

    if_match: str | None = Field(None, max_length=100)


#: One spec change applied at a time (each stops and starts services).
_applying = asyncio.Lock()

router = Routes("/api", tags=["spec"], responses=NOT_LOGGED_IN)
pages = Routes(in_schema=False)


def _validation(checked: Checked) -> dict[str, Any]:
    return {
        "valid": checked.spec is not None,
        "problems": [problem.as_dict() for problem in checked.problems],
        "data": checked.data,
    }


def _refused(error: SpecError) -> JSONResponse:
    """400: the spec has problems, each with its line and key (a `Refused`)."""
    from coursestack.spec_edit import SpecProblem

    return JSONResponse(
        {
            "detail": error.message,
            "problems": [SpecProblem(*problem).as_dict() for problem in error.problems],
        },
        400,
    )


@router.get("/spec", response=SpecDocument)
async def get_spec(call: Call) -> JSONResponse:
    """The instance's course spec: text, data, version (also the `ETag`) and problems."""
    from coursestack.spec_edit import check_text, read_spec_text

    path = call.web.daemon.spec.path
    text, version = await asyncio.to_thread(read_spec_text, path)
    checked = check_text(text, path)
    body = SpecDocument(path=str(path), text=text, version=version, **_validation(checked))
    # mode="json": a TOML date or an `inf` in the file must not break the answer.
    return JSONResponse(
        body.model_dump(mode="json"), headers={"ETag": f'"{version}"', "Cache-Control": "no-store"}
    )


@router.add(("POST", "DELETE", "PATCH", "OPTIONS", "TRACE"), "/spec", in_schema=False)
async def spec_other_methods(_call: Call) -> Response:
    """405 naming both methods: GET and PUT are two routes, each of which alone would
    answer `Allow` with its own method only."""
    return JSONResponse({"detail": "Method Not Allowed"}, 405, headers={"Allow": "GET, PUT"})


@router.post(
    "/spec/validate", response=Validation, body=SpecText, responses={**NO_CSRF, **BAD_BODY}
)
async def validate_spec(call: Call) -> Validation:
    """Check a spec text with the real loader: each problem with its line and key."""
    from coursestack.spec_edit import check_text

    text = call.body_as(SpecText).text
    return Validation(**_validation(check_text(text, call.web.daemon.spec.path)))


@router.post(
    "/spec/compose", response=Composed, body=ComposeRequest, responses={**NO_CSRF, **BAD_BODY}
)
async def compose_spec(call: Call) -> Composed:
    """Write edited data back into a spec text (comments and order kept), and check it.
    A `base` that is not TOML comes back unchanged, with its problem."""
    from coursestack.spec_edit import SpecProblem, check_text, compose

    body = call.body_as(ComposeRequest)
    path = call.web.daemon.spec.path
    try:
        text = compose(body.base, body.data)
    except Exception as error:  # tomlkit raises many kinds for text or data it cannot take
        checked = check_text(body.base, path)
        problems = checked.problems or [
            SpecProblem(1, "", f"cannot write that as TOML: {error}", "")
        ]
        return Composed(
            text=body.base,
            valid=False,
            data=checked.data,
            problems=[SpecProblemView(**p.as_dict()) for p in problems],
        )
    return Composed(text=text, **_validation(check_text(text, path)))


@router.put("/spec", response=SavedView, body=SpecSave, headers=IfMatch, responses=SAVE_RESPONSES)
async def put_spec(call: Call) -> JSONResponse:
    """Save a new spec text: only a valid spec, only over the version it started from;
    the previous file is kept as `course.toml.bak`."""
    from coursestack.spec_edit import SpecConflict, read_spec_text, save

    body, web = call.body_as(SpecSave), call.web
    if_match = call.headers_as(IfMatch).if_match
    versions = {body.version} | ({if_match.strip().strip('"')} if if_match else set())
    try:
        if len(versions) > 1:  # the body and the header disagree: neither can be trusted
            current_text, current_version = await asyncio.to_thread(
                read_spec_text, web.daemon.spec.path
            )
            raise SpecConflict(current_text, current_version)
        saved = await asyncio.to_thread(save, web.daemon.spec.path, body.text, body.version)
    except SpecConflict as conflict:
        return JSONResponse(
            {
                "detail": conflict.message + ": " + conflict.hint,
                "text": conflict.current_text,
                "version": conflict.current_version,
            },
            409,
        )
    except SpecError as error:
        return _refused(error)
    view = SavedView(
        path=str(saved.path),
        version=saved.version,
        backup=str(saved.backup) if saved.backup else None,
        changed=saved.changed,
    )
    return JSONResponse(view.model_dump(), headers={"ETag": f'"{saved.version}"'})


@router.post(
    "/spec/apply",
    response=Applied,
    responses={**NO_CSRF, 400: Answer(Refused, "The saved spec has problems")},
)
async def apply_spec(call: Call) -> JSONResponse:
    """Run the saved spec on this instance: services it adds are started, those it removes
    stopped, those it changes restarted; nothing else is touched."""
    web = call.web
    path = web.daemon.spec.path
    try:
        spec = await asyncio.to_thread(load_spec, path)
    except SpecError as error:
        return _refused(error)
    async with _applying:  # two tabs pressing Run: one change after the other
        changes = await web.daemon.apply_spec(spec)
        # A web service added (or one removed) gets (or loses) its origin at the front door.
        web.origins = Origins(
            web.daemon.name,
            [name for name, unit in web.daemon.units.items() if unit.connection().web],
        )
    web.forget_views()
    return JSONResponse(changes.as_dict())


@router.get("/spec/schema", response=dict[str, Any])
async def spec_schema(_call: Call) -> dict[str, Any]:
    """JSON schema of each kind's settings (the composer builds its forms from them)."""
    return {
        "kinds": {
            kind: model.model_json_schema() for kind, model in sorted(service_models().items())
        },
        "course": CourseInfo.model_json_schema(),
        "conditions": [str(condition) for condition in DependencyCondition],
    }


@router.get("/spec/download", media_types=("application/toml", "application/zip"))
async def download_spec(call: Call) -> Response:
    """The saved spec, with its exports to every target runtime (a zip); only the spec
    when the export package is not installed."""
    from coursestack.spec_edit import read_spec_text

    web = call.web
    path = web.daemon.spec.path
    text, _version = await asyncio.to_thread(read_spec_text, path)
    exports = await asyncio.to_thread(_exports, path)
    if exports is None:
        return Response(
            text.encode("utf-8"),
            media_type="application/toml",
            headers={
                "Content-Disposition": 'attachment; filename="course.toml"',
                "Cache-Control": "no-store",
            },
        )
    name = re.sub(r"[^a-z0-9-]", "-", web.daemon.spec.course.name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}/course.toml", text)
        for file_name, contents in sorted(exports.items()):
            archive.writestr(f"{name}/exports/{file_name}", contents)
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.zip"',
            "Cache-Control": "no-store",
        },
    )


#: File names of the exports that are one file (the others are folders).
_ONE_FILE = {
    "z2jh": "config.yaml",
    "systemd": "coursestack.service",
    "launchd": "coursestack.plist",
}


def _exports(path: Path) -> dict[str, bytes] | None:
    """Every export of the saved spec, file name -> contents (what could not be exported,
    and what each runtime cannot express, in WARNINGS.txt); None without the export
    package."""
    try:
        from coursestack.export import TARGET_NAMES, target
        from coursestack.export.common import ExportCourse, Output
    except ImportError:
        return None
    files: dict[str, bytes] = {}
    notes: list[str] = []
    try:
        course = ExportCourse.from_spec(load_spec(path))
    except UserError as error:
        return {"WARNINGS.txt": f"nothing exported: {error.render()}\n".encode()}
    # A private scratch folder, gone at once: the exporters write files, the zip wants bytes.
    with tempfile.TemporaryDirectory(prefix="coursestack-export-") as scratch:
        for name in TARGET_NAMES:
            module = target(name)
            where = Path(scratch) / name
            try:
                module.export(
                    course, Output(where / _ONE_FILE.get(name, ""), False, module.IS_FOLDER)
                )
            except UserError as error:
                notes.append(f"{name}: not exported: {error.render()}")
                continue
            files.update(
                {
                    str(file.relative_to(scratch)): file.read_bytes()
                    for file in sorted(where.rglob("*"))
                    if file.is_file()
                }
            )
    notes.extend(warning.render() for warning in course.warnings)
    if notes:
        files["WARNINGS.txt"] = ("\n".join(notes) + "\n").encode()
    return files


# -- pages ---------------------------------------------------------------------------------


@pages.get("/diagram.svg")
async def diagram_svg(call: Call) -> Response:
    """The course picture; each service links to its row of the services page."""
    from coursestack.diagram import course_graph, to_svg

    svg = to_svg(course_graph(call.web.daemon.spec), links=True)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})


@pages.get("/composer")
async def composer_page(call: Call) -> HTMLResponse:
    """Draw the course: drag kinds in, link services, edit settings, save, run."""
    return render(
        "composer.html",
        title="Composer",
        spec_path=str(call.web.daemon.spec.path),
        **_page_values(call.web, call.login, "composer"),
    )
