"""The JupyterHub configuration of `coursestack hub up`, made in Python from a few settings.

`hub up` writes the settings (hub.json) and a three-line `jupyterhub_config.py` that
calls `configure(c, settings)`: the course team never edits a JupyterHub config by hand,
and what the Hub does is readable here in one place.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from coursestack.errors import UserError
from coursestack.state import OWNER_ONLY, atomic_write_json

SETTINGS_FILE = "hub.json"
CONFIG_FILE = "jupyterhub_config.py"
ADMIN_SERVICE = "coursestack-admin"

#: --auth choice -> (authenticator class, the PyPI package that provides it)
AUTHENTICATORS = {
    "dummy": ("dummy", "jupyterhub"),
    "native": ("nativeauthenticator.NativeAuthenticator", "jupyterhub-nativeauthenticator"),
    "pam": ("pam", "jupyterhub"),
    "lti": ("ltiauthenticator.lti13.auth.LTI13Authenticator", "jupyterhub-ltiauthenticator"),
    "tmp": ("tmpauthenticator.TmpAuthenticator", "jupyterhub-tmpauthenticator"),
}


class MissingHubPackage(UserError):
    """A program or package the hub needs is not installed."""


@dataclass
class HubSettings:
    """What `coursestack hub up` was asked for (kept in <hub_dir>/hub.json)."""

    hub_dir: str
    spec: str = ""
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_api_port: int = 0
    proxy_api_port: int = 0
    auth: str = "dummy"
    password: str = ""
    admins: list[str] = field(default_factory=list)
    cull_idle: int = 0
    cull_every: int = 0
    disposable: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    unix_prefix: str = "cs-"
    memory_limit: int = 0
    start_timeout: int = 300
    firewall: bool = True
    activity_interval: int = 60
    poll_interval: int = 30

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.ip in ("", "0.0.0.0") else self.ip
        return f"{self.scheme}://{host}:{self.port}/"

    def save(self) -> None:
        folder = Path(self.hub_dir)
        atomic_write_json(folder / SETTINGS_FILE, asdict(self), OWNER_ONLY)
        (folder / CONFIG_FILE).write_text(
            "# Made by `coursestack hub up`; change the settings with its options instead.\n"
            "from coursestack.hub.config import configure, load_settings\n"
            f"configure(c, load_settings({str(folder)!r}))  # noqa: F821\n"
        )

    def secret(self, name: str) -> str:
        """A random secret kept in the hub folder (owner-only), made on first use."""
        path = Path(self.hub_dir) / f"{name}.secret"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            path.chmod(OWNER_ONLY)
        return path.read_text().strip()


def load_settings(hub_dir: str | Path) -> HubSettings:
    data = json.loads((Path(hub_dir) / SETTINGS_FILE).read_text())
    return HubSettings(**data)


def check_authenticator(auth: str) -> str:
    """The authenticator class for `auth`, or a message saying how to install it."""
    if auth not in AUTHENTICATORS:
        raise UserError(f"unknown --auth {auth!r}", hint=f"one of: {', '.join(AUTHENTICATORS)}")
    cls, package = AUTHENTICATORS[auth]
    if "." in cls and importlib.util.find_spec(cls.split(".")[0]) is None:
        raise MissingHubPackage(
            f"--auth {auth} needs the package {package}", hint=f"pip install {package}"
        )
    return cls


def configure(c: Any, settings: HubSettings) -> None:
    """Fill JupyterHub's config object `c` from the settings."""
    folder = Path(settings.hub_dir)
    c.JupyterHub.bind_url = f"{settings.scheme}://{settings.ip}:{settings.port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_api_port}"
    c.JupyterHub.db_url = f"sqlite:///{folder / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(folder / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(folder / "jupyterhub.pid")
    # Environments outlive a Hub restart (it re-attaches); `hub down` stops them itself.
    c.JupyterHub.cleanup_servers = False
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.auth_token = settings.secret("proxy-token")
    c.ConfigurableHTTPProxy.pid_file = str(folder / "proxy.pid")
    if settings.tls_cert:
        c.JupyterHub.ssl_cert = settings.tls_cert
        c.JupyterHub.ssl_key = settings.tls_key

    auth = "tmp" if settings.disposable else settings.auth
    c.JupyterHub.authenticator_class = check_authenticator(auth)
    c.Authenticator.allow_all = True
    c.Authenticator.admin_users = set(settings.admins)
    if auth == "dummy" and settings.password:
        c.DummyAuthenticator.password = settings.password

    c.JupyterHub.spawner_class = "coursestack.hub.spawner.CoursestackSpawner"
    c.CoursestackSpawner.course_spec = settings.spec
    c.CoursestackSpawner.hub_dir = str(folder)
    c.CoursestackSpawner.unix_prefix = settings.unix_prefix
    c.CoursestackSpawner.create_users = auth != "pam"
    c.CoursestackSpawner.instance_memory_limit = settings.memory_limit
    c.CoursestackSpawner.firewall = settings.firewall
    c.CoursestackSpawner.disposable = settings.disposable
    c.Spawner.start_timeout = settings.start_timeout
    c.Spawner.http_timeout = settings.start_timeout
    c.Spawner.interrupt_timeout = 30
    c.Spawner.poll_interval = settings.poll_interval
    c.Spawner.environment = {"JUPYTERHUB_ACTIVITY_INTERVAL": str(settings.activity_interval)}

    services: list[dict[str, Any]] = [
        {"name": ADMIN_SERVICE, "api_token": settings.secret("admin-token")}
    ]
    roles: list[dict[str, Any]] = [
        {
            "name": ADMIN_SERVICE,
            "services": [ADMIN_SERVICE],
            "scopes": [
                "list:users",
                "read:users",
                "read:servers",
                "admin:server_state",
                "delete:servers",
                "servers",
            ],
        }
    ]
    if settings.cull_idle:
        every = settings.cull_every or max(5, settings.cull_idle // 4)
        culler = [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={settings.cull_idle}",
            f"--cull-every={every}",
        ]
        scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
        if settings.disposable:
            culler.append("--cull-users=True")  # deleting the user deletes its account (spawner)
            scopes.append("admin:users")
        services.append({"name": "idle-culler", "command": culler})
        roles.append({"name": "idle-culler", "services": ["idle-culler"], "scopes": scopes})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles
