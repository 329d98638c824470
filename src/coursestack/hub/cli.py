"""`coursestack hub up/status/down` and `coursestack singleuser`.

`hub up` writes the Hub's settings into the hub folder, starts JupyterHub (which starts
configurable-http-proxy) in the background and returns once the Hub answers. `status`
asks the Hub's REST API with the hub folder's admin-service token; `down` stops every
student's environment through the same API, then the Hub and its proxy. Data is kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from coursestack.errors import UserError

hub_app = typer.Typer(no_args_is_help=True, help="Many students on one host, behind JupyterHub.")

HubDirOption = Annotated[
    Path | None,
    typer.Option("--hub-dir", help="The hub's folder (default: /var/lib/coursestack-hub as root)."),
]


class HubNotRunning(UserError):
    """No Hub answers for this hub folder."""

    exit_code = 3


def default_hub_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/coursestack-hub")
    import platformdirs

    return Path(platformdirs.user_data_dir("coursestack")) / "hub"


def _hub_dir(given: Path | None) -> Path:
    return (given or default_hub_dir()).expanduser().resolve()


def _print(text: str) -> None:
    print(text, flush=True)


@hub_app.command("up")
def up(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="Path of a course.toml. Without it: the embedded sample course.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the Hub's public address.")] = 8000,
    ip: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    auth: Annotated[str, typer.Option(help="dummy, native, pam or lti.")] = "dummy",
    password: Annotated[str, typer.Option(help="The shared password of --auth dummy.")] = "",
    admin: Annotated[list[str] | None, typer.Option(help="A Hub admin (repeatable).")] = None,
    cull_idle: Annotated[
        int, typer.Option(help="Stop environments idle this many seconds (0: never).")
    ] = 0,
    cull_every: Annotated[int, typer.Option(help="How often the culler looks.")] = 0,
    disposable: Annotated[
        bool, typer.Option(help="Throwaway sessions at /hub/tmplogin, deleted when culled.")
    ] = False,
    tls: Annotated[str, typer.Option(help="'self-signed' for a certificate made here.")] = "",
    tls_cert: Annotated[Path | None, typer.Option(help="Certificate file (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="Key file (PEM).")] = None,
    unix_prefix: Annotated[str, typer.Option(help="Prefix of students' unix names.")] = "cs-",
    activity_interval: Annotated[
        int, typer.Option(help="Seconds between activity reports of each environment.")
    ] = 60,
    poll_interval: Annotated[
        int, typer.Option(help="Seconds between the Hub's checks that each environment still runs.")
    ] = 30,
    no_firewall: Annotated[
        bool, typer.Option("--no-firewall", help="Do not isolate student ports with nftables.")
    ] = False,
    hub_dir: HubDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the Hub.")] = 60.0,
) -> None:
    """Start JupyterHub with configurable-http-proxy; return when the Hub answers."""
    from coursestack.hub.config import HubSettings, MissingHubPackage, check_authenticator
    from coursestack.ports import choose_port

    folder = _hub_dir(hub_dir)
    if _hub_pid(folder):
        raise UserError(
            "the Hub of this hub folder is already running",
            where=str(folder),
            hint="`coursestack hub status`, or `coursestack hub down` first",
        )
    if shutil.which("configurable-http-proxy") is None:
        raise MissingHubPackage(
            "configurable-http-proxy (the Hub's proxy) is not installed",
            hint="npm install -g configurable-http-proxy",
        )
    if os.geteuid() != 0:
        raise UserError(
            "`coursestack hub up` must run as root: it creates a unix user per "
            "student and starts their environments as them",
            hint="run it with sudo",
        )
    check_authenticator("tmp" if disposable else auth)
    if cull_idle or disposable:
        from importlib.util import find_spec

        if find_spec("jupyterhub_idle_culler") is None:
            raise MissingHubPackage(
                "--cull-idle needs jupyterhub-idle-culler",
                hint="pip install jupyterhub-idle-culler",
            )
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    cert, key = (str(tls_cert or ""), str(tls_key or ""))
    if tls == "self-signed":
        from coursestack.tls import self_signed

        cert_path, key_path = self_signed(folder / "tls", [ip, "localhost", "127.0.0.1"])
        cert, key = str(cert_path), str(key_path)
    elif tls:
        raise UserError(
            f"unknown --tls {tls!r}",
            hint="use --tls self-signed, or --tls-cert FILE --tls-key FILE",
        )
    if bool(cert) != bool(key):
        raise UserError("--tls-cert and --tls-key go together", hint="give both files")
    previous = _previous_settings(folder)
    settings = HubSettings(
        hub_dir=str(folder),
        spec=str(spec.resolve()) if spec else "",
        ip=ip,
        port=port,
        hub_api_port=choose_port(previous.get("hub_api_port") or 18081),
        proxy_api_port=choose_port(previous.get("proxy_api_port") or 18001),
        auth=auth,
        password=password,
        admins=list(admin or []),
        cull_idle=cull_idle,
        cull_every=cull_every,
        disposable=disposable,
        tls_cert=cert,
        tls_key=key,
        unix_prefix=unix_prefix,
        memory_limit=_memory_limit(spec),
        firewall=not no_firewall,
        activity_interval=activity_interval,
        poll_interval=poll_interval,
    )
    if settings.hub_api_port == settings.proxy_api_port:
        settings.proxy_api_port = choose_port(settings.hub_api_port + 1)
    if spec is not None:
        from coursestack.spec import load_spec

        load_spec(spec)  # a broken spec is reported here, not in each student's log
    settings.save()
    if disposable:
        from coursestack.hub.template import prepare

        _print("Preparing the template state folder of disposable sessions…")
        prepare(folder, settings.spec, unix_prefix)
    log = open(folder / "jupyterhub.log", "ab")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(folder / "jupyterhub_config.py")],
        cwd=folder,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    _wait_for_hub(settings.url, process, folder, timeout)
    _print(f"Hub: {settings.url} (hub folder {folder})")
    if settings.disposable:
        _print(f"Disposable sessions: {settings.url}hub/tmplogin")


def _previous_settings(folder: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((folder / "hub.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def _memory_limit(spec: Path | None) -> int:
    from coursestack.instances import sample_course_source
    from coursestack.spec import load_spec
    from coursestack.units import parse_size

    course = load_spec(spec if spec else sample_course_source() / "course.toml")
    budget = course.course.memory_budget
    return parse_size(budget) if budget else 0


def _wait_for_hub(url: str, process: subprocess.Popen[bytes], folder: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (folder / "jupyterhub.log").read_text(errors="replace").splitlines()[-15:]
            raise UserError(
                "JupyterHub stopped while starting:\n  " + "\n  ".join(tail),
                where=str(folder / "jupyterhub.log"),
                hint="read the log above; `coursestack hub down` cleans up",
            )
        try:
            if (
                httpx.get(f"{url}hub/health", verify=False, trust_env=False, timeout=2).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise UserError(
        f"JupyterHub did not answer at {url} within {timeout:g} s",
        where=str(folder / "jupyterhub.log"),
        hint="read that log",
    )


def _hub_pid(folder: Path) -> int | None:
    try:
        pid = int((folder / "jupyterhub.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


class HubAPI:
    """The Hub's REST API, as the hub folder's admin service."""

    def __init__(self, folder: Path) -> None:
        import httpx

        from coursestack.hub.config import load_settings

        if not (folder / "hub.json").exists():
            raise HubNotRunning(
                "no hub was set up in this folder",
                where=str(folder),
                hint="`coursestack hub up` first, or give --hub-dir",
            )
        self.settings = load_settings(folder)
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.settings.hub_api_port}/hub/api",
            headers={"Authorization": f"token {self.settings.secret('admin-token')}"},
            trust_env=False,
            timeout=30,
        )

    def users(self) -> list[dict[str, Any]]:
        reply = self.client.get("/users", params={"state": ""})
        reply.raise_for_status()
        found: list[dict[str, Any]] = reply.json()
        return found


def _student_rows(api: HubAPI) -> list[dict[str, Any]]:
    import pwd

    from coursestack.hub.users import Registry
    from coursestack.procs import process_tree_memory

    registry = Registry(Path(api.settings.hub_dir) / "users.json", api.settings.unix_prefix)
    names = registry.all()
    rows = []
    for user in api.users():
        server = (user.get("servers") or {}).get("", {})
        spawner_state = server.get("state") or {}
        unix_name = spawner_state.get("unix_name") or names.get(user["name"], "")
        state = (
            "starting" if server.get("pending") else "running" if server.get("ready") else "stopped"
        )
        home = ""
        if unix_name:
            try:
                home = pwd.getpwnam(unix_name).pw_dir
            except KeyError:
                home = ""
        pid = spawner_state.get("pid")
        memory = process_tree_memory(int(pid)) if pid and state == "running" else None
        rows.append(
            {
                "name": user["name"],
                "unix_user": unix_name,
                "state": state,
                "state_dir": f"{home}/coursestack" if home else "",
                "url": api.settings.url.rstrip("/")
                + (server.get("url") or f"/user/{user['name']}/"),
                "memory": memory,
                "admin": bool(user.get("admin")),
            }
        )
    return rows


@hub_app.command("status")
def status(
    hub_dir: HubDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The Hub's address and, per student: unix user, state, state folder, URL, memory."""
    from coursestack.units import format_size

    folder = _hub_dir(hub_dir)
    pid = _hub_pid(folder)
    if pid is None:
        if as_json:
            print(json.dumps({"hub": None, "running": False, "students": []}))
        raise HubNotRunning(
            "the Hub is not running", where=str(folder), hint="`coursestack hub up` starts it"
        )
    api = HubAPI(folder)
    rows = _student_rows(api)
    if as_json:
        print(
            json.dumps(
                {"hub": api.settings.url, "running": True, "pid": pid, "students": rows}, indent=2
            )
        )
        return
    _print(f"Hub: {api.settings.url} (pid {pid}, hub folder {folder})")
    for row in rows:
        memory = format_size(row["memory"] or None)
        _print(
            f"  {row['name']:<20} {row['unix_user']:<20} {row['state']:<9} {memory:>8}  "
            f"{row['url']}"
        )


@hub_app.command("down")
def down(
    hub_dir: HubDirOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 120.0,
) -> None:
    """Stop every student's environment, the Hub and its proxy. Data is kept."""
    folder = _hub_dir(hub_dir)
    pid = _hub_pid(folder)
    if pid is None:
        _print("The Hub is not running.")
        _stop_proxy(folder)
        return
    api = HubAPI(folder)
    running = [u["name"] for u in api.users() if (u.get("servers") or {}).get("")]
    for name in running:
        api.client.delete(f"/users/{name}/server")
    deadline = time.monotonic() + timeout
    while running and time.monotonic() < deadline:
        running = [u["name"] for u in api.users() if (u.get("servers") or {}).get("")]
        time.sleep(0.3)
    os.kill(pid, signal.SIGTERM)
    while _hub_pid(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    _stop_proxy(folder)
    left = f" ({len(running)} environment(s) did not stop in time)" if running else ""
    _print(f"Hub stopped; every student's data is kept{left}.")


def _stop_proxy(folder: Path) -> None:
    try:
        pid = int((folder / "proxy.pid").read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def singleuser(
    spec: Annotated[
        Path | None,
        typer.Argument(
            help="Path of a course.toml. Without it: the embedded sample course.",
            show_default=False,
        ),
    ] = None,
    state: Annotated[Path, typer.Option("--state", help="The instance's state folder.")] = Path(
        "coursestack"
    ),
    fd: Annotated[
        int | None,
        typer.Option("--fd", help="An already-listening socket to serve on (systemd: LISTEN_FDS)."),
    ] = None,
) -> None:
    """Run this instance for JupyterHub: under its prefix, behind its OAuth login."""
    from coursestack.hub.singleuser import run_singleuser

    raise typer.Exit(run_singleuser(spec, state.expanduser().resolve(), fd))
