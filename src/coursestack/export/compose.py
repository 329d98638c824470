"""`coursestack export compose`: a compose file (docker compose, podman compose).

Official images run the services they can run as the spec asks (PostgreSQL, MongoDB, with
their seeds mounted where the image runs them once); every other service runs alone in
the course image (built from the same folder). Dependencies become `depends_on` with
`service_healthy` / `service_started`, readiness checks become healthchecks, data lives
in named volumes, ports are published on 127.0.0.1 only, and secrets are files next to
the compose file, never values in it. On the compose network each service is reached by
its name, and notebooks get the same connection variables as on a student's machine.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml

from coursestack import __version__
from coursestack.export.common import ExportCourse, Output
from coursestack.export.image import image_name, write_build_context
from coursestack.kinds.export_hints import SECRETS_DIR, SEED_DIR, ExportHints
from coursestack.spec import DependencyCondition, RestartPolicy, StartPolicy

IS_FOLDER = True
HELP = "a compose file (official images where they fit, else the course image)"
COMPOSE_FILE = "compose.yaml"
IMAGE_CONTEXT = "image"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _restart(policy: RestartPolicy, max_restarts: int) -> str:
    if policy is RestartPolicy.NEVER:
        return "no"
    if policy is RestartPolicy.ALWAYS:
        return "always"
    return f"on-failure:{max_restarts}" if max_restarts else "on-failure"


class ComposeWriter:
    """Builds the compose document for one course, service by service."""

    def __init__(self, course: ExportCourse, output: Output) -> None:
        self.course = course
        self.output = output
        self.volumes: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, str]] = {}
        self.host_ports: dict[int, str] = {}

    # -- pieces ------------------------------------------------------------------------

    def container_port(self, hint: ExportHints) -> int | None:
        if hint.official is not None:
            return hint.official.port
        return hint.ports[0] if hint.ports else None

    def publish(self, name: str, hint: ExportHints) -> list[str]:
        """Ports on 127.0.0.1 only; a port another service took moves (and says so)."""
        inside = self.container_port(hint)
        if inside is None or not hint.ports:
            return []
        wanted = hint.ports[0]
        port = wanted
        while port in self.host_ports:
            port += 1
        if port != wanted:
            self.course.warn(
                name,
                "port",
                f"port {wanted} is {self.host_ports[wanted]}'s too; published on {port} instead",
            )
        self.host_ports[port] = name
        return [f"127.0.0.1:{port}:{inside}"]

    def secret(self, name: str) -> str:
        """A secret file beside the compose file; an existing one is kept (its database
        was initialised with it)."""
        path = self.output.file(f"secrets/{name}")
        if not path.exists():
            path.write_text(secrets.token_urlsafe(24), encoding="utf-8")
        # Readable inside containers whose user is not ours; the folder keeps others out.
        path.chmod(0o644)
        path.parent.chmod(0o700)
        self.secrets[name] = {"file": f"./secrets/{name}"}
        return name

    def volume(self, name: str, target: str) -> str:
        self.volumes[name] = {}
        return f"{name}:{target}"

    def seed_mounts(self, name: str, hint: ExportHints) -> list[dict[str, Any]]:
        official = hint.official
        if official is None or official.init_path is None:
            return []
        mounts: list[dict[str, Any]] = []
        read: dict[str, None] = {}
        for init in official.init_files:
            if init.source is not None:
                source = f"./{IMAGE_CONTEXT}/course/{Path(init.source).as_posix()}"
            else:
                relative = f"init/{name}/{init.name}"
                self.output.write(relative, init.text or "", 0o755)
                source = f"./{relative}"
            mounts.append(
                {
                    "type": "bind",
                    "source": source,
                    "read_only": True,
                    "target": f"{official.init_path}/{init.name}",
                }
            )
            read.update(dict.fromkeys(init.reads))
        mounts += [
            {
                "type": "bind",
                "source": f"./{IMAGE_CONTEXT}/course/{Path(seed).as_posix()}",
                "target": f"{SEED_DIR}/{Path(seed).name}",
                "read_only": True,
            }
            for seed in read
        ]
        return mounts

    def connection_env(self, name: str) -> dict[str, str]:
        """Where every other service is, as a notebook sees it; secrets as file paths."""
        values: dict[str, str] = {}
        for other, hint in self.course.hints.items():
            if other == name:
                continue
            port = self.container_port(hint)
            for key, template in hint.connection_env.items():
                values.setdefault(key, template.format(host=other, port=port or ""))
            for secret in hint.secrets:
                values[f"{secret.upper().replace('-', '_')}_FILE"] = f"{SECRETS_DIR}/{secret}"
        return values

    def healthcheck(self, name: str, test: tuple[str, ...]) -> dict[str, Any]:
        service = self.course.service(name)
        self.course.warn(
            name,
            "liveness_failures",
            f"after {service.liveness_failures} "
            "failed checks the container is marked unhealthy, but compose does "
            "not restart it (coursestack would)",
        )
        return {
            "test": ["CMD", *test],
            "interval": _seconds(service.probe_interval),
            "timeout": "5s",
            "retries": service.liveness_failures,
            "start_period": _seconds(service.start_timeout),
        }

    # -- one service -------------------------------------------------------------------

    def service(self, name: str) -> dict[str, Any]:
        hint = self.course.hints[name]
        spec = self.course.service(name)
        entry: dict[str, Any] = {}
        environment: dict[str, str] = {}
        service_secrets: list[str] = []
        volumes: list[Any] = []
        readiness: tuple[str, ...] | None
        if not hint.needs_course_image:
            official = hint.official
            assert official is not None
            entry["image"] = official.image
            if official.command:
                entry["command"] = list(official.command)
            environment.update(official.environment)
            for variable, secret in official.secret_environment.items():
                environment[variable] = f"{SECRETS_DIR}/{secret}"
            service_secrets += [self.secret(s) for s in hint.secrets]
            volumes.append(self.volume(f"{name}-data", official.data_path))
            volumes += self.seed_mounts(name, hint)
            readiness = official.healthcheck or None
            for difference in hint.official_differences:
                self.course.warn(name, difference.key, difference.instead)
        else:
            entry["image"] = f"{image_name(self.course)}:{__version__}"
            entry["build"] = {"context": f"./{IMAGE_CONTEXT}", "dockerfile": "Containerfile"}
            entry["command"] = list(hint.course_image_command)
            if hint.working_dir:
                entry["working_dir"] = hint.working_dir
            environment.update(self.connection_env(name))
            service_secrets += [self.secret(s) for s in hint.secrets]
            # Everything a notebook may connect to: the other services' passwords too.
            service_secrets += [
                self.secret(s)
                for other in self.course.hints.values()
                for s in other.secrets
                if s not in service_secrets
            ]
            volumes.append(self.volume(f"{name}-data", hint.data_path))
            readiness = hint.readiness
            if hint.seeds:
                self.course.warn(
                    name,
                    "seed",
                    "no official image runs these seeds; the "
                    "course image's copy is in the container, not loaded",
                )
        environment.update(hint.environment)
        if environment:
            entry["environment"] = environment
        if service_secrets:
            entry["secrets"] = service_secrets
        entry["volumes"] = volumes
        ports = self.publish(name, hint)
        if ports:
            entry["ports"] = ports
        if readiness:
            entry["healthcheck"] = self.healthcheck(name, readiness)
        depends = self.dependencies(name)
        if depends:
            entry["depends_on"] = depends
        entry["restart"] = _restart(spec.restart, spec.max_restarts)
        if spec.stop_timeout:
            entry["stop_grace_period"] = _seconds(spec.stop_timeout)
        signal = getattr(spec, "stop_signal", None)
        if isinstance(signal, str) and signal != "SIGTERM":
            entry["stop_signal"] = signal
        limit = spec.memory_limit_bytes()
        if limit is not None:
            entry["mem_limit"] = limit
        self.start_policy(name, entry)
        return entry

    def dependencies(self, name: str) -> dict[str, dict[str, str]]:
        depends: dict[str, dict[str, str]] = {}
        for dependency, condition in self.course.service(name).depends_on.items():
            has_check = self._has_readiness(dependency)
            healthy = condition is DependencyCondition.READY and has_check
            depends[dependency] = {"condition": "service_healthy" if healthy else "service_started"}
        return depends

    def _has_readiness(self, name: str) -> bool:
        hint = self.course.hints[name]
        if hint.official is not None:
            return bool(hint.official.healthcheck)
        return bool(hint.readiness)

    def start_policy(self, name: str, entry: dict[str, Any]) -> None:
        spec = self.course.service(name)
        if spec.start is StartPolicy.MANUAL:
            # Started only when named: `docker compose up NAME`.
            entry["profiles"] = ["manual"]
        elif spec.start is StartPolicy.ON_DEMAND:
            self.course.warn(
                name,
                "start",
                "compose has no on-demand start: it starts "
                "with `docker compose up` and keeps running (idle_stop = "
                f"{spec.idle_stop:g} does not apply)",
            )

    # -- the document ------------------------------------------------------------------

    def document(self) -> dict[str, Any]:
        services = {name: self.service(name) for name in self.course.in_start_order()}
        if self.course.spec.course.memory_budget:
            self.course.warn(
                "",
                "course.memory_budget",
                "compose has no limit for a whole "
                "project; each service's memory_limit is its mem_limit",
            )
        self.course.warn(
            "",
            "dashboard",
            "no coursestack dashboard under compose: "
            "`docker compose ps` and `docker compose logs` take its place",
        )
        document: dict[str, Any] = {"name": self.course.name, "services": services}
        if self.volumes:
            document["volumes"] = self.volumes
        if self.secrets:
            document["secrets"] = self.secrets
        return document


def export(course: ExportCourse, output: Output) -> list[Path]:
    """Write compose.yaml, the course image's build context, init scripts and secrets."""
    context = write_build_context(course, output, f"{IMAGE_CONTEXT}/")
    document = ComposeWriter(course, output).document()
    header = (
        f"# {course.title}: generated by `coursestack export compose` from "
        f"{course.spec.path.name}.\n# Start: docker compose up -d --wait   "
        "(secrets are files in ./secrets, created once)\n"
    )
    text = header + yaml.safe_dump(document, sort_keys=False, width=100)
    return [output.write(COMPOSE_FILE, text), context]
