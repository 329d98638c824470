"""The `command` kind: any program, so a course team can add a service we never heard of."""

from __future__ import annotations

import shutil
import signal
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from coursestack.errors import MissingBinaryError, UserError
from coursestack.kinds.base import LOCALHOST, Connection, Kind, program_at
from coursestack.kinds.export_hints import ANY_ADDRESS, COURSE_DIR, DATA_DIR, ExportHints
from coursestack.kinds.probe_commands import http_check, tcp_check
from coursestack.probes import exec_probe, http_probe, tcp_probe
from coursestack.procs import LaunchSpec
from coursestack.spec import CommandService, CourseSpec


class _Placeholders(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise KeyError(key)


class CommandKind(Kind[CommandService]):
    """Runs `command`; readiness by its `probe` (tcp, http, exec or none)."""

    KIND = "command"
    settings_model = CommandService
    # An arbitrary program: we cannot know; a small web server or script (the default).

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_signal = int(getattr(signal, self.spec.stop_signal))

    def placeholders(self) -> dict[str, Any]:
        """Values for {port}, {data_dir}, {state_dir}, {host}, {other.port}, {other.url}."""
        values = _Placeholders(
            port=self.port or "",
            data_dir=str(self.data_dir),
            state_dir=str(self.context.state.root),
            host=LOCALHOST,
        )
        for name, endpoint in self.peers.items():
            values[name] = SimpleNamespace(port=endpoint.port, url=endpoint.url, host=endpoint.host)
        return values

    def _expand_all(self, texts: list[str], where: str) -> list[str]:
        values = self.placeholders()  # once for all, not once per text
        return [self._expand(text, where, values) for text in texts]

    def _expand(self, text: str, where: str, values: dict[str, Any]) -> str:
        try:
            return text.format_map(values)
        except (KeyError, AttributeError, IndexError, ValueError) as error:
            raise UserError(
                f"unknown placeholder {error} in {where}",
                where=f"{self.context.spec.path}: services.{self.name}",
                hint="use {port}, {data_dir}, {state_dir}, {host}, or "
                "{service.port} / {service.url}; write {{ and }} for braces",
            ) from None

    def argv(self) -> list[str]:
        return self._expand_all(self.spec.command, "command")

    def program_version(self) -> str:
        return program_at(self.argv()[0])

    def check_installed(self) -> None:
        program = self.argv()[0]
        if shutil.which(program) is None and not Path(program).exists():
            raise MissingBinaryError(
                f"program {program!r} not found",
                where=f"services.{self.name}.command",
                hint="install it, or give its full path in the spec",
            )

    def spec_env(self) -> dict[str, str]:
        # Placeholders are the spec's own: inherited and connection variables pass as-is.
        values = self.placeholders()
        return {
            key: self._expand(value, f"env.{key}", values) for key, value in self.spec.env.items()
        }

    def launch_spec(self) -> LaunchSpec:
        cwd = self.context.spec.resolve(self.spec.cwd) if self.spec.cwd else None
        return self._launch(self.argv(), cwd)

    async def probe(self) -> bool:
        probe = self.spec.probe
        if probe.type == "none":
            return True
        if probe.type == "exec":
            argv = self._expand_all(probe.command, "probe.command")
            account = self.run_as
            return await exec_probe(
                argv, self.environment(), user=(account.uid, account.gid) if account else None
            )
        if self.port is None:  # the spec refuses this; kept for safety
            return False
        if probe.type == "tcp":
            return await tcp_probe(LOCALHOST, self.port)
        return await http_probe(f"http://{LOCALHOST}:{self.port}{probe.path}", probe.status)

    def connection(self) -> Connection:
        port = self.port
        scheme = "http" if self.spec.web or self.spec.probe.type == "http" else "tcp"
        url = f"{scheme}://{LOCALHOST}:{port}/" if port else ""
        return Connection(self.name, self.spec.kind, LOCALHOST, port, url, web=self.spec.web)

    # -- export ----------------------------------------------------------------------------

    @classmethod
    def export_hints(cls, name: str, service: CommandService, course: CourseSpec) -> ExportHints:
        """The course image runs the program, placeholders filled for a container (other
        services by their names); a program outside the course folder is reported."""
        from coursestack.kinds import KINDS  # the registry imports this module
        from coursestack.kinds.base import env_prefix

        values = _Placeholders(
            port=service.port or "",
            data_dir=DATA_DIR,
            state_dir=f"{DATA_DIR}/state",
            host=ANY_ADDRESS,
        )
        for other, spec in course.services.items():
            port = spec.port or KINDS[spec.kind].default_port
            values[other] = SimpleNamespace(
                port=port or "", host=other, url=f"http://{other}:{port}/"
            )

        def expand(texts: list[str], key: str) -> tuple[str, ...]:
            try:
                return tuple(text.format_map(values) for text in texts)
            except (KeyError, AttributeError, IndexError, ValueError) as error:
                raise UserError(
                    f"unknown placeholder {error} in {key}", where=f"{course.path}: services.{name}"
                ) from None

        argv = expand(service.command, "command")
        program = Path(service.command[0]).expanduser()
        local = None
        if program.is_absolute() and not program.resolve().is_relative_to(course.folder):
            local = service.command[0]
        readiness: tuple[str, ...] | None = None
        if service.probe.type == "tcp" and service.port:
            readiness = tcp_check(service.port)
        elif service.probe.type == "http" and service.port:
            readiness = http_check(service.port, service.probe.path, service.probe.status)
        elif service.probe.type == "exec":
            readiness = expand(service.probe.command, "probe.command")
        working_dir = None
        if service.cwd:
            inside = course.resolve(service.cwd)
            working_dir = (
                f"{COURSE_DIR}/{inside.relative_to(course.folder).as_posix()}"
                if inside.is_relative_to(course.folder)
                else str(inside)
            )
        hints = super().export_hints(name, service, course)
        connection = dict(hints.connection_env)
        if service.port and service.probe.type == "http":  # HTTP, though not for people
            connection[f"{env_prefix(name)}_URL"] = "http://{host}:{port}/"
        return replace(
            hints,
            environment=dict(
                zip(service.env, expand(list(service.env.values()), "env"), strict=True)
            ),
            course_image_command=argv,
            readiness=readiness,
            working_dir=working_dir,
            local_program=local,
            connection_env=connection,
        )
