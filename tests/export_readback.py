"""Read each export target's output back into the facts a course spec states.

`expected(spec)` takes the facts from the spec alone (not from the exporters' hints); each
`read_*` function takes them from a written output, ignoring comments, labels and `x-`
extensions. The semantic tests compare the two.
"""

from __future__ import annotations

import ast
import plistlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coursestack.instances import sample_course_source
from coursestack.kinds import KINDS
from coursestack.spec import CourseSpec, DependencyCondition, load_spec

COURSE_IN_IMAGE = "/course"
DATA = Path(__file__).resolve().parent / "data"
#: The courses every target is tested with: the sample, one with `command` services, one
#: with a MongoDB replica set.
COURSES = {
    "sample": sample_course_source() / "course.toml",
    "lab-tools": DATA / "export" / "lab-tools" / "course.toml",
    "replica": DATA / "export" / "replica" / "course.toml",
}


@dataclass
class ServiceFacts:
    """What a runtime must keep of one service."""

    depends_on: dict[str, str] = field(default_factory=dict)
    readiness: bool = False
    ports: set[int] = field(default_factory=set)
    env_names: set[str] = field(default_factory=set)
    seeds: set[str] = field(default_factory=set)


def _has_readiness(spec: CourseSpec, name: str) -> bool:
    service = spec.services[name]
    probe = getattr(service, "probe", None)
    return probe is None or probe.type != "none"


def expected(spec: CourseSpec) -> dict[str, ServiceFacts]:
    """The facts of every service, from the spec itself."""
    facts = {}
    for name, service in spec.services.items():
        port = service.port or KINDS[service.kind].default_port
        depends = {}
        for dependency, condition in service.depends_on.items():
            # Waiting for "ready" of a service without a readiness check is waiting for
            # its start: the same thing.
            ready = condition is DependencyCondition.READY and _has_readiness(spec, dependency)
            depends[dependency] = "ready" if ready else "started"
        facts[name] = ServiceFacts(
            depends_on=depends,
            readiness=_has_readiness(spec, name),
            ports={port} if port else set(),
            env_names=set(service.env),
            seeds={Path(seed).name for seed in getattr(service, "seed", [])},
        )
    return facts


# -- compose -------------------------------------------------------------------------------


def read_compose(folder: Path) -> dict[str, ServiceFacts]:
    document = yaml.safe_load((folder / "compose.yaml").read_text(encoding="utf-8"))
    facts = {}
    for name, service in document["services"].items():
        if name.startswith("x-"):
            continue
        conditions = {"service_healthy": "ready", "service_started": "started"}
        depends = {
            dependency: conditions[entry["condition"]]
            for dependency, entry in (service.get("depends_on") or {}).items()
        }
        ports = {int(str(port).split(":")[1]) for port in service.get("ports", [])}
        seeds = set()
        for volume in service.get("volumes", []):
            if isinstance(volume, dict) and volume["source"].startswith("./image/course/"):
                seeds.add(Path(volume["source"]).name)
        healthcheck = service.get("healthcheck") or {}
        facts[name] = ServiceFacts(
            depends_on=depends,
            readiness=bool(healthcheck.get("test")),
            ports=ports,
            env_names=set(service.get("environment") or {}),
            seeds=seeds,
        )
    return facts


def compose_problems(folder: Path) -> list[str]:
    """Our own checks beyond the schema: dependencies exist, no host port clash, ports
    on 127.0.0.1 only, secrets are files (and their values are nowhere in the YAML)."""
    text = (folder / "compose.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    services = document["services"]
    problems = []
    published: dict[int, str] = {}
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"{name} depends on missing {dependency}")
        for port in service.get("ports", []):
            host, published_port, _ = str(port).split(":")
            if host != "127.0.0.1":
                problems.append(f"{name} publishes {port} beyond 127.0.0.1")
            if int(published_port) in published:
                problems.append(
                    f"{name} and {published[int(published_port)]} both publish {published_port}"
                )
            published[int(published_port)] = name
        for secret in service.get("secrets", []):
            if secret not in document.get("secrets", {}):
                problems.append(f"{name} uses undeclared secret {secret}")
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET", key) and not str(value).startswith(
                "/run/secrets/"
            ):
                problems.append(f"{name}: {key} holds a value, not a secret file")
    for secret, entry in (document.get("secrets") or {}).items():
        path = folder / entry["file"]
        if not path.is_file():
            problems.append(f"secret {secret} has no file")
        elif path.read_text(encoding="utf-8") in text:
            problems.append(f"secret {secret}'s value is in compose.yaml")
    return problems


# -- image, binder, systemd, launchd: they run a spec with coursestack -------------------


def containerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def read_image(folder: Path) -> tuple[CourseSpec, dict[str, Any]]:
    """The spec the image runs (its copy of the course) and its CMD, EXPOSE, HEALTHCHECK."""
    instructions = containerfile_instructions(folder / "Containerfile")
    found: dict[str, Any] = {}
    for instruction, arguments in instructions:
        if instruction == "CMD":
            found["cmd"] = ast.literal_eval(arguments)
        elif instruction == "EXPOSE":
            found["expose"] = {int(port) for port in arguments.split()}
        elif instruction == "HEALTHCHECK":
            found["healthcheck"] = ast.literal_eval(arguments.split("CMD", 1)[1].strip())
        elif instruction == "COPY" and arguments.split()[-1] == COURSE_IN_IMAGE:
            found["course_source"] = arguments.split()[-2]
    spec_inside = found["cmd"][2]
    assert spec_inside.startswith(COURSE_IN_IMAGE + "/")
    spec = load_spec(folder / found["course_source"] / spec_inside[len(COURSE_IN_IMAGE) + 1 :])
    return spec, found


def read_spec_facts(spec: CourseSpec) -> dict[str, ServiceFacts]:
    """Facts of a spec copied into an output, checking its seed files are there too."""
    for service in spec.services.values():
        for seed in getattr(service, "seed", []):
            assert spec.resolve(seed).is_file(), f"seed {seed} missing from the output"
    return expected(spec)


def read_start_script(path: Path) -> tuple[str, list[str]]:
    """The spec a start script (Binder's `start`, the image's `course-start`) runs, as
    written (a shell expression), and the services it starts."""
    start = path.read_text(encoding="utf-8")
    spec_expression = re.search(r'spec="\$\{COURSESTACK_SPEC:-([^}]+)\}"', start)
    assert spec_expression, start
    up_line = next(line for line in start.splitlines() if line.startswith("coursestack up"))
    words = shlex.split(up_line.rstrip("\\"))
    return spec_expression.group(1), [
        words[i + 1] for i, word in enumerate(words) if word == "--only"
    ]


def read_binder(folder: Path) -> dict[str, Any]:
    """The spec `start` runs, the services it starts, and the launcher's web services."""
    spec_expression, only = read_start_script(folder / "start")
    assert spec_expression.startswith("$here/")
    config = (folder / "jupyter_server_config.py").read_text(encoding="utf-8")
    web = ast.literal_eval(re.search(r"^WEB_SERVICES = (.*)$", config, re.M).group(1))
    return {
        "spec": load_spec(folder / spec_expression.removeprefix("$here/")),
        "only": only,
        "web": set(web),
    }


def read_unit(path: Path) -> dict[str, list[str]]:
    """A systemd unit's keys (a key may repeat), comments dropped."""
    keys: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            keys.setdefault(key, []).append(value)
    return keys


def run_arguments(argv: list[str]) -> dict[str, str | None]:
    """The spec and instance of a `python -m coursestack run [SPEC] --instance NAME`."""
    assert argv[1:4] == ["-m", "coursestack", "run"], argv
    rest = argv[4:]
    instance = rest[rest.index("--instance") + 1]
    spec = rest[0] if rest and not rest[0].startswith("--") else None
    return {"spec": spec, "instance": instance}


def read_launchd(path: Path) -> dict[str, Any]:
    agent: dict[str, Any] = plistlib.loads(path.read_bytes())
    return agent
