"""`coursestack singleuser`: one student's instance daemon, spawned by JupyterHub.

The daemon is the ordinary one (supervisor, dashboard, API, front door); this module puts
a gate in front of its web app:
- the Hub routes `/user/<name>/...` here unchanged; the gate strips that prefix (so the
  app sees `/api/...`, `/s/jupyter/...`) and puts it back into redirects, cookie paths
  and the dashboard's links;
- a browser logs in through the Hub's OAuth (JupyterHub's `HubOAuth`: authorize, code,
  token); only users whose token carries this server's access scope (the owning student,
  Hub admins) get in, everyone else gets 403 and nothing is started;
- once in, the browser also gets the daemon's own session cookie, so the app's login,
  CSRF and front-door checks work unchanged; API clients may instead send a Hub token
  (`Authorization: token ...`), which the gate swaps for the daemon's bearer token;
- the student's activity (requests through the gate, Jupyter's kernels) is reported to
  the Hub, as jupyterhub-singleuser does, so the idle culler sees it.

The daemon listens where the Hub said (`JUPYTERHUB_SERVICE_URL`), or on an inherited
socket (`--fd`, or systemd socket activation's `LISTEN_FDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlparse

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coursestack.daemon import Daemon
from coursestack.state import StateFolder

log = logging.getLogger("coursestack.hub.singleuser")

_DASHBOARD_ROOTS = "api|login|logout|static|services|connections|doctor"
_HTML_LINK = re.compile(rb'((?:href|src|action)=")/(?!/)')
_JS_PATH = re.compile(rb'(["\'])/(' + _DASHBOARD_ROOTS.encode() + rb")\b")
_SYSTEMD_FIRST_FD = 3


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(Exception):
        jar.load(_headers(scope).get("cookie", ""))
    return {key: morsel.value for key, morsel in jar.items()}


async def _respond(
    send: Send, status: int, body: str = "", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


class HubGate:
    """ASGI wrapper: the Hub's prefix and OAuth in front of the daemon's app."""

    def __init__(
        self,
        app: ASGIApp,
        daemon_token: str,
        new_session: Callable[[], str],
        keep_prefix: Callable[[str], bool],
        session_cookie: str,
        services: Callable[[Scope, Receive, Send, str], Awaitable[bool]] | None = None,
        hub_auth: Any | None = None,
    ) -> None:
        from jupyterhub.services.auth import HubOAuth

        self.app = app
        self.session_cookie = session_cookie
        self.services = services
        self.daemon_token = daemon_token
        self.new_session = new_session
        self.keep_prefix = keep_prefix
        self.hub_auth = hub_auth or HubOAuth(cache_max_age=60)
        self.prefix = "/" + os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/").strip("/") + "/"
        self.token_cookie = f"{self.hub_auth.oauth_client_id}-token"
        self.state_cookie = f"{self.hub_auth.oauth_client_id}-oauth-state"
        self.last_activity = time.time()

    # -- the gate ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if not path.startswith(self.prefix):
            # The student's own CLI talks to the daemon directly, with the daemon token.
            if _headers(scope).get("authorization", "") == f"Bearer {self.daemon_token}":
                await self.app(scope, receive, send)
            elif scope["type"] == "http":
                await _respond(send, 404, f"not found: this server lives under {self.prefix}\n")
            return
        inner = "/" + path[len(self.prefix) :]
        if inner == "/oauth_callback" and scope["type"] == "http":
            await self._callback(scope, send)
            return
        user, refusal = await self._identify(scope)
        if user is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 4403})
            elif refusal:
                await _respond(send, 403, refusal + "\n")
            else:
                await self._start_login(scope, send)
            return
        self.last_activity = time.time()
        await self._forward(scope, receive, send, inner)

    async def _identify(self, scope: Scope) -> tuple[dict[str, Any] | None, str]:
        """The Hub user of this request if allowed here; else None and why (""=no login)."""
        headers = _headers(scope)
        match = re.fullmatch(
            r"(?:token|bearer)\s+(\S+)", headers.get("authorization", ""), re.IGNORECASE
        )
        token = match.group(1) if match else _cookies(scope).get(self.token_cookie)
        if not token:
            return None, ""
        if token == self.daemon_token:
            return {"name": "(daemon token)", "via": "daemon"}, ""
        try:
            model = await self.hub_auth.user_for_token(token, sync=False)
        except Exception as error:  # the Hub unreachable: refuse, never open the door
            log.warning("could not check a token with the Hub: %s", error)
            return None, "the Hub could not be asked who you are; try again"
        if not model:
            return None, ""
        from jupyterhub.services.auth import check_scopes

        if not check_scopes(self.hub_auth.access_scopes, set(model.get("scopes", []))):
            return None, f"{model.get('name')} may not use this server"
        model = dict(model)
        model["via"] = "header" if match else "cookie"
        return model, ""

    async def _start_login(self, scope: Scope, send: Send) -> None:
        """Send the browser to the Hub's OAuth authorize page (state + PKCE)."""
        verifier, challenge, method = self.hub_auth.generate_pkce_code_challenge()
        query = scope.get("query_string", b"").decode("latin-1")
        next_url = scope["path"] + (f"?{query}" if query else "")
        state = self.hub_auth.generate_state(next_url, code_verifier=verifier)
        url = (
            self.hub_auth.login_url
            + "&"
            + urlencode(
                {"state": state, "code_challenge": challenge, "code_challenge_method": method}
            )
        )
        cookie = self.cookie(scope, self.state_cookie, state, max_age=600)
        await _respond(
            send,
            302,
            "log in through the Hub\n",
            [(b"location", url.encode()), (b"set-cookie", cookie)],
        )

    async def _callback(self, scope: Scope, send: Send) -> None:
        """The end of the OAuth dance: code -> token -> cookie, then where the user was."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        state = (query.get("state") or [""])[0]
        code = (query.get("code") or [""])[0]
        expected = _cookies(scope).get(self.state_cookie, "")
        if not state or not code or state != expected:
            await _respond(send, 403, "OAuth state does not match: log in again\n")
            return
        next_url = self.hub_auth.get_next_url(state) or self.prefix
        verifier = self.hub_auth.get_code_verifier(state)
        self.hub_auth.clear_oauth_state(state)
        try:
            token = await self.hub_auth.token_for_code(code, code_verifier=verifier, sync=False)
        except Exception as error:
            log.warning("OAuth code refused by the Hub: %s", error)
            await _respond(send, 403, "the Hub refused this login: log in again\n")
            return
        model = await self.hub_auth.user_for_token(token, sync=False)
        from jupyterhub.services.auth import check_scopes

        if not model or not check_scopes(self.hub_auth.access_scopes, set(model.get("scopes", []))):
            await _respond(send, 403, "you may not use this server\n")
            return
        if not next_url.startswith(self.prefix):
            next_url = self.prefix
        await _respond(
            send,
            302,
            "logged in\n",
            [
                (b"location", next_url.encode()),
                (b"set-cookie", self.cookie(scope, self.token_cookie, token)),
                (b"set-cookie", self.cookie(scope, self.session_cookie, self.new_session())),
                (b"set-cookie", self.cookie(scope, self.state_cookie, "", max_age=0)),
            ],
        )

    def cookie(self, scope: Scope, name: str, value: str, max_age: int | None = None) -> bytes:
        parts = [f"{name}={value}", f"Path={self.prefix}", "HttpOnly", "SameSite=Lax"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if _headers(scope).get("x-forwarded-proto", scope.get("scheme", "http")) in (
            "https",
            "wss",
        ):
            parts.append("Secure")
        return "; ".join(parts).encode("latin-1")

    # -- forwarding ---------------------------------------------------------------------------

    async def _forward(self, scope: Scope, receive: Receive, send: Send, inner: str) -> None:
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        user_header = _headers(scope).get("authorization")
        session_cookie = _cookies(scope).get(self.session_cookie)
        minted = ""
        if user_header:
            # Not an ambient credential, so no cross-site forgery is possible: the app
            # sees its own token, and the front door's same-origin check is satisfied.
            headers = [(k, v) for k, v in headers if k not in (b"origin", b"referer")]
            host = _headers(scope).get("host", "")
            scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
            headers += [
                (b"authorization", f"Bearer {self.daemon_token}".encode()),
                (b"origin", f"{scheme}://{host}".encode("latin-1")),
            ]
        elif not session_cookie:
            minted = self.new_session()
            cookie = _headers(scope).get("cookie", "")
            headers = [(k, v) for k, v in headers if k != b"cookie"]
            headers.append(
                (
                    b"cookie",
                    f"{cookie}; {self.session_cookie}={minted}".strip("; ").encode("latin-1"),
                )
            )
        raw = inner.encode("latin-1")
        service_path = inner.startswith("/s/") and self.keep_prefix(inner.split("/")[2])
        inner_scope = dict(
            scope,
            path=inner,
            headers=headers,
            root_path=scope.get("root_path", "") + self.prefix.rstrip("/"),
            raw_path=scope.get("raw_path") if service_path else raw,
        )
        if (
            self.services is not None
            and inner.startswith("/s/")
            and await self.services(
                dict(inner_scope, raw_path=scope.get("raw_path") or str(scope["path"]).encode()),
                receive,
                send,
                "header" if user_header else "cookie",
            )
        ):
            return
        if scope["type"] == "websocket":
            await self.app(inner_scope, receive, send)
            return
        rewrite = not inner.startswith("/s/")
        await self.app(inner_scope, receive, _Rewriter(send, self, scope, rewrite, minted))

    def fix_location(self, location: str) -> str:
        if (
            location.startswith("/")
            and not location.startswith("//")
            and not location.startswith(self.prefix)
        ):
            return self.prefix.rstrip("/") + location
        return location


class _Rewriter:
    """Puts the prefix back into what the app answers: Location, cookie paths, links."""

    def __init__(
        self, send: Send, gate: HubGate, scope: Scope, rewrite_body: bool, minted: str
    ) -> None:
        self.send = send
        self.gate = gate
        self.scope = scope
        self.rewrite_body = rewrite_body
        self.minted = minted
        self.start: Message | None = None
        self.buffer: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[tuple[bytes, bytes]] = []
            content_type = b""
            for key, value in message.get("headers", []):
                if key.lower() == b"location":
                    value = self.gate.fix_location(value.decode("latin-1")).encode("latin-1")
                elif key.lower() == b"set-cookie":
                    value = re.sub(
                        rb"(?i)path=/(?!\S*user/)", b"Path=" + self.gate.prefix.encode(), value
                    )
                elif key.lower() == b"content-type":
                    content_type = value
                headers.append((key, value))
            if self.minted:
                headers.append(
                    (
                        b"set-cookie",
                        self.gate.cookie(self.scope, self.gate.session_cookie, self.minted),
                    )
                )
            message = dict(message, headers=headers)
            if self.rewrite_body and (
                b"text/html" in content_type or b"javascript" in content_type
            ):
                self.start = message
                return
            await self.send(message)
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.buffer.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(self.buffer)
        prefix = self.gate.prefix.rstrip("/").encode()
        body = _HTML_LINK.sub(rb"\1" + prefix + b"/", body)
        body = _JS_PATH.sub(rb"\1" + prefix + rb"/\2", body)
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send(dict(self.start, headers=headers))
        await self.send({"type": "http.response.body", "body": body})


# -- services under the prefix ----------------------------------------------------------------


class PathFrontDoor:
    """The student's web services at `/user/<name>/s/<service>/` on the Hub's origin.

    On a laptop each service gets an origin of its own (web/front_door.py); under a Hub
    in path mode there is one origin, the Hub's, as for every JupyterHub user server
    (docs/hosting.md says what that means and how `subdomain_host` would lift it). The
    HubGate has already checked the Hub login; this adds the service's own credential
    (Jupyter's token) and refuses requests that other origins' pages send.
    """

    def __init__(self, app: Any, daemon: Daemon) -> None:
        self.app = app
        self.daemon = daemon

    async def serve(self, scope: Scope, receive: Receive, send: Send, via: str) -> bool:
        """Serve `/s/<name>/...` (True), or leave the request to the app (False)."""
        from starlette.requests import Request
        from starlette.websockets import WebSocket

        from coursestack.web import proxy
        from coursestack.web.auth import foreign_request

        name = str(scope["path"]).split("/")[2]
        unit = self.daemon.units.get(name)
        if unit is None or unit.port is None or not unit.connection().web:
            return False
        headers = _headers(scope)
        host = headers.get("host", "127.0.0.1")
        scheme = headers.get("x-forwarded-proto", "http")
        own_origin = f"{'https' if scheme in ('https', 'wss') else 'http'}://{host}"
        scope = dict(scope, app=self.app)
        raw = str(scope["raw_path"].decode("latin-1"))
        prefix = os.environ.get("COURSESTACK_URL_PREFIX", "/").rstrip("/")
        path = (
            raw
            if str(getattr(unit, "base_url", "")).startswith(prefix + "/s/")
            else ("/" + raw[len(prefix) + len(f"/s/{name}") :].lstrip("/"))
        )
        query = scope.get("query_string", b"").decode("latin-1")
        if proxy.has_traversal(path):
            await _respond(send, 400, "path traversal is not allowed\n")
            return True
        token = unit.connection().extra.get("token")
        upstream_host = f"127.0.0.1:{unit.port}" if unit.proxy_strips_prefix else host
        upstream = proxy.Upstream(
            int(unit.port), path, query, upstream_host, str(token) if token else None, host
        )
        web = self.app.state.web
        if scope["type"] == "websocket":
            socket = WebSocket(scope, receive, send)
            if via == "cookie" and foreign_request(socket, own_origin):
                await socket.close(code=4403)
                return True
            await proxy.forward_websocket(socket, web, name, upstream, add_token=True)
            return True
        request = Request(scope, receive)
        if via == "cookie" and foreign_request(request, own_origin):
            await _respond(send, 403, "a page of another site may not use this service\n")
            return True
        waiting = proxy.not_ready_page(web, name, request, prefix + "/")
        response = waiting or await proxy.forward_http(request, upstream, add_token=True)
        await response(scope, receive, send)
        return True


# -- the daemon under a hub ---------------------------------------------------------------------


class SingleUserDaemon(Daemon):
    """The instance daemon, listening where the Hub says, behind the HubGate."""

    def __init__(self, state: StateFolder, listen_fd: int | None = None) -> None:
        super().__init__(state)
        self.listen_fd = listen_fd
        self.gate: HubGate | None = None

    def _listen_socket(self) -> socket.socket:
        if self.listen_fd is not None:
            listener = socket.socket(fileno=self.listen_fd)
            listener.setblocking(False)
            return listener
        url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:0/"))
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((url.hostname or "127.0.0.1", url.port or 0))
        listener.listen(128)
        listener.setblocking(False)
        return listener

    def wrap_web_app(self, app: Any) -> Any:
        """The daemon's app behind the Hub's prefix and OAuth."""
        web = app.state.web

        def new_session() -> str:
            return str(web.auth.new_session()[1])

        def keep_prefix(service: str) -> bool:
            unit = self.units.get(service)
            return bool(
                unit is not None
                and str(getattr(unit, "base_url", "")).startswith(
                    os.environ.get("COURSESTACK_URL_PREFIX", "/-none-")
                )
            )

        self.gate = HubGate(
            app,
            self.token,
            new_session,
            keep_prefix,
            web.auth.session_cookie,
            PathFrontDoor(app, self).serve,
        )
        return self.gate

    async def serve(self) -> None:
        reporter = asyncio.create_task(self._report_activity())
        try:
            await super().serve()
        finally:
            reporter.cancel()

    async def _report_activity(self) -> None:
        """Tell the Hub when the student last used this server (for the idle culler)."""
        api_url = os.environ.get("JUPYTERHUB_API_URL", "").rstrip("/")
        user = os.environ.get("JUPYTERHUB_USER", "")
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not (api_url and user and token):
            return
        every = float(os.environ.get("JUPYTERHUB_ACTIVITY_INTERVAL", "60"))
        server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
        url = f"{api_url}/users/{quote(user)}/activity"
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            while True:
                await asyncio.sleep(every)
                last = await self._last_activity(client)
                stamp = datetime.fromtimestamp(last, UTC).isoformat().replace("+00:00", "Z")
                with contextlib.suppress(httpx.HTTPError):
                    await client.post(
                        url,
                        headers={"Authorization": f"token {token}"},
                        content=json.dumps(
                            {"last_activity": stamp, "servers": {server: {"last_activity": stamp}}}
                        ),
                    )

    async def _last_activity(self, client: httpx.AsyncClient) -> float:
        """The latest of: a request through the gate, a kernel's activity in Jupyter."""
        latest = self.gate.last_activity if self.gate else self.started
        for unit in self.units.values():
            base_url, unit_token = getattr(unit, "base_url", None), getattr(unit, "token", None)
            if not base_url or unit.port is None:
                continue
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                reply = await client.get(
                    f"http://127.0.0.1:{unit.port}{base_url}api/status",
                    headers={"Authorization": f"token {unit_token}"},
                )
                stamp = reply.json()["last_activity"]
                latest = max(
                    latest, datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
                )
        return latest


def inherited_socket(fd: int | None) -> int | None:
    """The listening socket handed in: `--fd N`, or systemd's LISTEN_FDS (fd 3)."""
    if fd is not None:
        return fd
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS"):
        return _SYSTEMD_FIRST_FD
    return None


def run_singleuser(spec: Path | None, state: Path, fd: int | None) -> int:
    """Entry point of `coursestack singleuser`: set up the instance, run its daemon here."""
    from coursestack.errors import UserError
    from coursestack.instances import set_up_instance

    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    os.environ["COURSESTACK_URL_PREFIX"] = prefix
    os.environ.setdefault("COURSESTACK_KERNEL_TRANSPORT", "ipc")
    try:
        chosen, _course = set_up_instance(spec, None, state, [])
        daemon = SingleUserDaemon(chosen.state, inherited_socket(fd))
        daemon.acquire_lock()
        daemon.clean_up_leftovers()
        daemon.build()
        asyncio.run(daemon.serve())
    except UserError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    return 0
