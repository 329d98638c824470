"""The `jupyter` kind: a real Jupyter Server (JupyterLab by default).

The notebooks folder is a normal folder on the host, relative to the spec. Jupyter's own
config, runtime and data files live in the service's data folder, so nothing leaks into
the student's home and nothing there can break it. The server runs under the base URL
`/s/<name>/`, the path the dashboard's front door proxies, so links work both ways.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from coursestack.errors import MissingBinaryError
from coursestack.kinds.base import LOCALHOST, Connection, Kind
from coursestack.kinds.export_hints import ANY_ADDRESS, COURSE_DIR, SECRETS_DIR, ExportHints
from coursestack.kinds.probe_commands import http_check
from coursestack.plan import KindEstimate
from coursestack.privileges import grant_folder
from coursestack.probes import http_probe
from coursestack.procs import LaunchSpec
from coursestack.spec import CourseSpec, JupyterService


class JupyterKind(Kind[JupyterService]):
    """Jupyter Server with a generated token; ready when /api/status answers."""

    KIND = "jupyter"
    default_port = 8888
    proxy_strips_prefix = False
    default_stop_timeout = 15.0
    settings_model = JupyterService
    # jupyter_server + JupyterLab's extension manager; each ipykernel is ~80 MB with
    # numpy/pandas imported (pandas alone adds ~40 MB).
    memory_estimate = KindEstimate(
        120, 80, "kernel", basis="~120 MB for the server + ~80 MB per open kernel"
    )
    backup_mode = "files"

    @property
    def token(self) -> str:
        return self.context.secrets.get(f"{self.name}.token")

    @property
    def notebooks(self) -> Path:
        return self.context.spec.resolve(self.spec.notebooks)

    @property
    def base_url(self) -> str:
        # Under a hub the browser reaches the instance below the Hub's /user/<name>/.
        return os.environ.get("COURSESTACK_URL_PREFIX", "").rstrip("/") + self.web_path()

    def _kernel_transport(self) -> list[str]:
        """Under a hub, kernels use unix sockets in the student's home, not TCP ports
        that other students could reach (see coursestack.hub.network)."""
        if os.environ.get("COURSESTACK_KERNEL_TRANSPORT") != "ipc":
            return []
        return [
            "--KernelManager.transport=ipc",
            f"--KernelManager.ip={self.data_dir / 'home' / '.runtime' / 'kernel'}",
        ]

    def _module(self) -> str:
        return "jupyterlab" if self.spec.app == "lab" else "jupyter_server"

    def program_version(self) -> str:
        module = self._module()
        return (
            f"{module} {importlib.metadata.version(module)} "
            f"(jupyter_server {importlib.metadata.version('jupyter_server')})"
        )

    def backup_folder(self) -> Path:
        return self.notebooks

    def check_installed(self) -> None:
        module = self._module()
        if importlib.util.find_spec(module) is None:
            raise MissingBinaryError(
                f"{module} is not installed for {sys.executable}",
                where=f"services.{self.name}.app",
                hint=f"pip install {module}",
            )

    def needed_paths(self) -> list[Path]:
        return [*super().needed_paths(), self.notebooks]

    def shared_folders(self) -> list[Path]:
        return [self.notebooks]

    def _prepare_folders(self) -> None:
        super()._prepare_folders()
        self.notebooks.mkdir(parents=True, exist_ok=True)
        # The course team's folder: the service account gets an ACL entry, never the
        # folder itself (nothing outside what coursestack created changes owner or mode).
        grant_folder(self.notebooks, self.run_as)

    def environment(self) -> dict[str, str]:
        env = super().environment()
        home = self.data_dir / "home"
        env.update(
            {
                "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
                "JUPYTER_RUNTIME_DIR": str(home / ".runtime" / "jupyter"),
                "JUPYTER_DATA_DIR": str(home / ".local" / "share" / "jupyter"),
                "IPYTHONDIR": str(home / ".ipython"),
                # The token by environment, never on the command line (`ps` shows
                # that to every local user); /proc/<pid>/environ is owner-only.
                "JUPYTER_TOKEN": self.token,
                # Kernels started by this server find the course here.
                "COURSESTACK_SERVICE": self.name,
            }
        )
        return env

    def launch_spec(self) -> LaunchSpec:
        argv = [
            sys.executable,
            "-m",
            self._module(),
            "--no-browser",
            f"--ServerApp.ip={LOCALHOST}",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={self.notebooks}",
            f"--ServerApp.base_url={self.base_url}",
            # The front door forwards requests from the dashboard's own origin.
            "--ServerApp.allow_remote_access=True",
            "--ServerApp.trust_xheaders=True",
            *self._kernel_transport(),
            *self.spec.args,
        ]
        return self._launch(argv, self.notebooks)

    async def probe(self) -> bool:
        return await http_probe(
            f"http://{LOCALHOST}:{self.port}{self.base_url}api/status",
            200,
            headers={"Authorization": f"token {self.token}"},
        )

    def connection(self) -> Connection:
        url = f"http://{LOCALHOST}:{self.port}{self.base_url}"
        extra: dict[str, Any] = {
            "token": self.token,
            "base_url": self.base_url,
            "notebooks": str(self.notebooks),
        }
        return Connection(
            self.name,
            self.KIND,
            LOCALHOST,
            self.port,
            url,
            web=True,
            password=self.token,
            extra=extra,
        )

    # -- export ----------------------------------------------------------------------------

    @classmethod
    def export_hints(cls, name: str, service: JupyterService, course: CourseSpec) -> ExportHints:
        """No official image has the course's packages: the course image runs Jupyter,
        its token read from a secret file, the notebooks in a volume."""
        port = service.port or cls.default_port or 8888
        secret = f"{name}-token"
        notebooks = f"{COURSE_DIR}/{Path(service.notebooks).as_posix().strip('/')}"
        app = "lab" if service.app == "lab" else "server"
        script = (
            f'JUPYTER_TOKEN="$(cat {SECRETS_DIR}/{secret})" exec jupyter {app} '
            f"--no-browser --ip={ANY_ADDRESS} --port={port} "
            f"--ServerApp.root_dir={shlex.quote(notebooks)}"
            + "".join(f" {shlex.quote(arg)}" for arg in service.args)
        )
        return replace(
            super().export_hints(name, service, course),
            ports=(port,),
            web=True,
            notebook_server=True,
            notebooks=service.notebooks,
            secrets=(secret,),
            course_image_command=("sh", "-c", script),
            working_dir=notebooks,
            readiness=http_check(port, "/api"),
            data_path=notebooks,
        )
