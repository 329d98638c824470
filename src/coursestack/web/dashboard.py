"""The dashboard's pages (server-rendered) and the login / logout flow."""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
import time
from functools import cache
from html import escape
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from coursestack.connections import masked
from coursestack.logs import tail_lines
from coursestack.state import read_json
from coursestack.units import format_duration, format_size
from coursestack.web.auth import (
    CSRF_FIELD,
    DEVICE_LIFETIME,
    SESSION_LIFETIME,
    Authenticator,
    Principal,
)
from coursestack.web.context import WebContext
from coursestack.web.routing import Call, Routes

if TYPE_CHECKING:
    from jinja2 import Environment

LOGIN_COOKIE = "coursestack_login"
NONE = "\u2013"  # an en dash: "no value"
MAX_FORM = 16 * 1024

public = Routes(login=False, in_schema=False)
pages = Routes(in_schema=False)


@cache
def _templates() -> Environment:
    """The page templates, loaded on the first page asked for (the API needs none)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(str(resources.files("coursestack.web") / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=False,
        lstrip_blocks=False,
    )


def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
    response = HTMLResponse(_templates().get_template(name).render(**values), status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _page_values(web: WebContext, principal: Principal, page: str) -> dict[str, Any]:
    spec = web.daemon.spec
    return {
        "csrf_token": principal.session.csrf if principal.session else "-",
        "course_title": spec.course.title or spec.course.name,
        "page": page,
        "has_content": spec.content is not None,
    }


def safe_next(target: str | None) -> str:
    """Only a local path may follow a login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# -- login -----------------------------------------------------------------------------------


def _login_page(
    request: Request, error: str = "", status: int = 200, next_url: str = "/"
) -> HTMLResponse:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(16)
    response = render(
        "login.html",
        status,
        title="Log in",
        error=error,
        login_csrf=token,
        next=safe_next(next_url),
        csrf_token="",
        page="login",
    )
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/login",
        secure=request.url.scheme == "https",
    )
    return response


def _logged_in(
    request: Request, auth: Authenticator, next_url: str, started_elsewhere: bool = False
) -> Response:
    """Set the session cookie (SameSite=Strict) and go on to `next_url`.

    `started_elsewhere`: the login came from another site (the local page `up --open`
    opens). A redirect would still count as started there, and the Strict cookie would
    not go with it; a page that moves on by itself starts the next request here.
    """
    _, cookie = auth.new_session()
    target = safe_next(next_url)
    response: Response
    if started_elsewhere:
        response = HTMLResponse(
            f"<!doctype html><meta charset=utf-8><meta http-equiv=refresh "
            f"content='0;url={escape(target)}'><title>Logged in</title>"
            f"<p><a href='{escape(target)}'>Open the dashboard</a></p>"
        )
    else:
        response = RedirectResponse(target, 303)
    secure = request.url.scheme == "https"
    response.set_cookie(
        auth.session_cookie,
        cookie,
        max_age=int(SESSION_LIFETIME),
        httponly=True,
        samesite="strict",
        path="/",
        secure=secure,
    )
    if auth.throttle_key(request) == "anyone":  # remember this browser (see Backoff)
        response.set_cookie(
            auth.device_cookie,
            auth.new_device(),
            max_age=int(DEVICE_LIFETIME),
            httponly=True,
            samesite="strict",
            path="/login",
            secure=secure,
        )
    response.delete_cookie(LOGIN_COOKIE, path="/login")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the token may be in the URL
    return response


def _too_many(wait: float) -> HTMLResponse:
    response = render(
        "login.html",
        429,
        title="Log in",
        login_csrf="",
        next="/",
        csrf_token="",
        error=f"Too many wrong passwords: wait {int(wait) + 1} s and try again "
        "(the link `coursestack up` prints always works).",
    )
    response.headers["Retry-After"] = str(int(wait) + 1)
    return response


@public.get("/login")
async def login_page(call: Call) -> Response:
    """The login form; `?token=` (the link `coursestack up` prints) logs in at once.

    The instance token is never throttled: it is 256 random bits, so guessing it is
    hopeless, and the student must always be able to get in with it.
    """
    request, auth = call.request, call.web.auth
    token = request.query_params.get("token")
    next = request.query_params.get("next", "/")
    if token is None:
        if auth.identify(request) is not None:
            return RedirectResponse(safe_next(next), 303)
        return _login_page(request, next_url=next)
    if auth.token_ok(token):
        return _logged_in(request, auth, next)
    return _login_page(
        request,
        "That login link is not valid (an old one?). Run `coursestack up` again for a fresh link.",
        401,
        next,
    )


@public.post("/login/code")
async def login_with_code(call: Call) -> Response:
    """Log in with a one-time code (the local page `coursestack up --open` opens)."""
    request, web = call.request, call.web
    form = await read_form(request)
    if web.codes.redeem(form.get("code"), "dashboard") is None:
        return _login_page(
            request,
            "That login page has expired (it works once, within a "
            "minute). Run `coursestack up --open` again, or log in here.",
            401,
        )
    return _logged_in(request, web.auth, "/", started_elsewhere=True)


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (413 beyond MAX_FORM)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise HTTPException(413, "form too large")
    try:
        fields = parse_qs(body.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "malformed form") from None
    return {key: values[0] for key, values in fields.items()}


@public.post("/login")
async def login(call: Call) -> Response:
    """Log in with the dashboard password or the instance token.

    The token always works. Wrong passwords back off per device (a browser that logged
    in before keeps its own count, so a flood of guesses from elsewhere never locks the
    student out); the check itself runs in a worker thread.
    """
    request, auth = call.request, call.web.auth
    form = await read_form(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    supplied = form.get("login_csrf", "")
    if not expected or not secrets.compare_digest(expected.encode(), supplied.encode()):
        return _login_page(request, "The form expired; please try again.", 403)
    secret = form.get("secret", "")
    next_url = form.get("next", "/")
    if auth.token_ok(secret):
        return _logged_in(request, auth, next_url)
    key = auth.throttle_key(request)
    wait = auth.backoff.retry_after(key)
    if wait > 0:
        return _too_many(wait)
    if await auth.password_ok(secret):
        auth.backoff.succeeded(key)
        return _logged_in(request, auth, next_url)
    auth.backoff.failed(key)
    return _login_page(request, "Wrong password or token.", 401, next_url)


@pages.post("/logout")
async def logout(call: Call) -> Response:
    """End this browser's session, for good (and its sessions on service origins)."""
    request, principal, auth = call.request, call.login, call.web.auth
    form = await read_form(request)
    if principal.session is not None:
        if not auth.csrf_ok(principal, form.get(CSRF_FIELD)):
            raise HTTPException(403, "missing or invalid CSRF token: reload the page")
        auth.revoke(principal.session)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(auth.session_cookie, path="/")
    return response


# -- pages -------------------------------------------------------------------------------------


@pages.get("/")
async def dashboard(call: Call) -> HTMLResponse:
    """One row per service, updated live."""
    web, principal = call.web, call.login
    rows = []
    for view in web.views():
        row = view.model_dump()
        row["heartbeat_text"] = (
            f"{format_duration(time.time() - view.heartbeat)} ago"
            if view.heartbeat and view.pid
            else NONE
        )
        row["uptime_text"] = format_duration(view.uptime, NONE)
        row["memory_text"] = format_size(view.memory or None, NONE)
        rows.append(row)
    return render(
        "dashboard.html",
        title="Services",
        services=rows,
        **_page_values(web, principal, "services"),
    )


@pages.get("/services/{name}/logs")
async def log_page(call: Call) -> HTMLResponse:
    """A service's log, following new lines."""
    name, web, principal = call.path("name"), call.web, call.login
    web.service_or_404(name)
    return render(
        "logs.html",
        title=f"Log of {name}",
        service=name,
        lines=tail_lines(web.daemon.state.log_file(name), 200),
        **_page_values(web, principal, "logs"),
    )


@pages.get("/connections")
async def connections_page(call: Call) -> HTMLResponse:
    """What notebooks see, secrets masked."""
    web, principal = call.web, call.login
    document = masked(read_json(web.daemon.state.connections_file, {}) or {})
    services = list((document.get("services") or {}).values())
    return render(
        "connections.html",
        title="Connections",
        connections=services,
        **_page_values(web, principal, "connections"),
    )


STATUS_TEXT = {"ok": "OK", "warn": "Warning", "fail": "Problem"}


@pages.get("/doctor")
async def doctor_page(call: Call) -> HTMLResponse:
    """ "Check my setup": every doctor finding, and the diagnostics bundle to download."""
    web, principal = call.web, call.login
    from coursestack.doctor import run_doctor, summary, worst  # only when asked for

    started = time.monotonic()
    # Blocking, and it calls this daemon's own API: never on the event loop.
    findings = await asyncio.to_thread(run_doctor, web.daemon.state)
    order = {"fail": 0, "warn": 1, "ok": 2}
    rows = [
        {**f.as_dict(), "status_text": STATUS_TEXT[f.status]}
        for f in sorted(findings, key=lambda f: order[f.status])
    ]
    counts = {status: sum(1 for f in findings if f.status == status) for status in order}
    return render(
        "doctor.html",
        title="Check my setup",
        findings=rows,
        counts=counts,
        overall=worst(findings),
        summary=summary(findings).replace("worth knowing above", "worth knowing below"),
        elapsed=f"{time.monotonic() - started:.1f}",
        checked=time.strftime("%H:%M:%S"),
        **_page_values(web, principal, "doctor"),
    )


def _bundle_bytes(web: WebContext) -> tuple[str, bytes]:
    """Write the diagnostics zip in a private scratch folder; its name and contents."""
    from coursestack.bundle import write_bundle

    with tempfile.TemporaryDirectory(prefix="coursestack-bundle-") as folder:
        path = write_bundle(web.daemon.state, Path(folder))
        return path.name, path.read_bytes()


@pages.post("/doctor/bundle")
async def doctor_bundle(call: Call) -> Response:
    """The diagnostics bundle (runs the doctor again), as a download. A POST with the
    session's CSRF token: it runs programs and writes a file."""
    name, data = await asyncio.to_thread(_bundle_bytes, call.web)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return Response(
        data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='/')}", 303)
