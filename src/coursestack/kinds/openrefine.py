"""The `openrefine` kind: OpenRefine (Debian's package, or a configured launcher).

OpenRefine is a JVM and heavy, so courses usually declare `start = "on-demand"`: the
front door starts it on the first request and the daemon stops it after `idle_stop`
seconds without one. Its projects live in the service's data folder. OpenRefine 3.6
cannot run under a path prefix, so the front door strips `/s/<name>` before forwarding
(its pages use relative links).
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from coursestack.errors import MissingBinaryError
from coursestack.kinds.base import LOCALHOST, Connection, Kind
from coursestack.kinds.export_hints import ANY_ADDRESS, DATA_DIR, ExportHints
from coursestack.kinds.probe_commands import http_check
from coursestack.plan import DEFAULT_KERNELS, KindEstimate
from coursestack.probes import http_probe
from coursestack.procs import LaunchSpec
from coursestack.spec import CourseSpec, OpenRefineService
from coursestack.units import MB, parse_size

#: OpenRefine's own Linux release, into ~/.local, as `openrefine` on PATH (Ubuntu has no
#: package; its `refine` takes the same options as Debian's launcher).
_USER_INSTALL = (
    'mkdir -p "$HOME/.local/opt" "$HOME/.local/bin" && curl -fsSL '
    "https://github.com/OpenRefine/OpenRefine/releases/download/3.8.7/"
    'openrefine-linux-3.8.7.tar.gz | tar -xz -C "$HOME/.local/opt"',
    'ln -sf "$HOME/.local/opt/openrefine-3.8.7/refine" "$HOME/.local/bin/openrefine"',
)

INSTALL_HINT = (
    "install OpenRefine (Debian/Ubuntu: sudo apt-get install openrefine; "
    "elsewhere: https://openrefine.org/download) or set services.NAME.binary "
    "to its launcher"
)


class OpenRefineKind(Kind[OpenRefineService]):
    """OpenRefine with its workspace in the state folder; ready when it says its version."""

    KIND = "openrefine"
    default_port: ClassVar[int | None] = 3333
    default_stop_timeout: ClassVar[float] = 20.0
    proxy_strips_prefix: ClassVar[bool] = True
    settings_model = OpenRefineService
    # A JVM: the heap grows up to `memory` (-Xmx) in use; ~150 MB for the JVM itself.
    memory_estimate = KindEstimate(150, basis="~150 MB for the JVM")
    # Its files, copied while it is stopped: it keeps recent changes in memory.
    backup_mode = "files"
    stop_for_backup = True

    @property
    def workspace(self) -> Path:
        return self.data_dir / "workspace"

    def binary(self) -> str:
        found = shutil.which(self.spec.binary)
        if found is None:
            raise MissingBinaryError(
                f"OpenRefine ({self.spec.binary!r}) is not installed",
                where=f"services.{self.name}.binary",
                hint=INSTALL_HINT.replace("NAME", self.name),
            )
        return found

    def check_installed(self) -> None:
        self.binary()

    def program_version(self) -> str:
        return self.binary()

    def backup_folder(self) -> Path:
        return self.workspace

    @classmethod
    def expected_memory(
        cls, service: OpenRefineService | None, kernels: int = DEFAULT_KERNELS
    ) -> tuple[int, str]:
        total, basis = super().expected_memory(service, kernels)
        if service is not None:
            with contextlib.suppress(ValueError):
                heap = parse_size(service.memory)
                total += heap // MB * MB
                basis += f" + a heap of up to {service.memory}"
        return total, basis

    def needed_paths(self) -> list[Path]:
        return [Path(self.binary())]

    def _prepare_folders(self) -> None:
        super()._prepare_folders()
        self.make_data_folders(self.workspace.name)

    def launch_spec(self) -> LaunchSpec:
        argv = [
            self.binary(),
            "-i",
            LOCALHOST,
            "-p",
            str(self.port),
            "-d",
            str(self.workspace),
            "-m",
            self.spec.memory,
            "-x",
            "refine.headless=true",
        ]
        return self._launch(argv)

    async def probe(self) -> bool:
        return await http_probe(f"http://{LOCALHOST}:{self.port}/command/core/get-version", 200)

    def connection(self) -> Connection:
        return Connection(
            self.name, self.KIND, LOCALHOST, self.port, f"http://{LOCALHOST}:{self.port}/", web=True
        )

    # -- export ----------------------------------------------------------------------------

    @classmethod
    def export_hints(cls, name: str, service: OpenRefineService, course: CourseSpec) -> ExportHints:
        """OpenRefine has no official image: the course image runs Debian's package."""
        port = service.port or cls.default_port or 3333
        workspace = f"{DATA_DIR}/workspace"
        script = (
            f"mkdir -p {workspace} && exec openrefine -i {ANY_ADDRESS} -p {port} "
            f"-d {workspace} -m {service.memory} -x refine.headless=true"
        )
        return replace(
            super().export_hints(name, service, course),
            ports=(port,),
            web=True,
            apt_packages=("openrefine",),
            course_image_command=("sh", "-c", script),
            user_install_apt_packages=("default-jre-headless", "curl"),
            user_install_commands=_USER_INSTALL,
            readiness=http_check(port, "/command/core/get-version", 200),
        )
