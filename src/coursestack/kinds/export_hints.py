"""What an exporter may ask a kind: the kind's export knowledge, as plain typed values.

Exporters (src/coursestack/export/) never name a kind: each kind class answers
`export_hints(name, service, course)` with an `ExportHints`, and the exporters turn those
into a Containerfile, a compose file, a Binder folder or a Z2JH config. A new kind exports
everywhere by answering this one question.

Paths inside containers are fixed here, once, so every kind and exporter agrees on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

#: Where the course folder lives inside the course image.
COURSE_DIR = "/course"
#: Where a service run alone in a container keeps its data (a named volume).
DATA_DIR = "/data"
#: Where compose mounts secrets (one file per secret).
SECRETS_DIR = "/run/secrets"
#: Where seed files are mounted for an official image's one-time initialisation.
SEED_DIR = "/seed"
#: The address a service listens on inside its own container (its network is private).
ANY_ADDRESS = "0.0.0.0"


@dataclass(frozen=True)
class InitFile:
    """A file an official image runs once, on its first start, from its init folder.

    Either a seed file of the spec copied as is (`source`, relative to the spec), or a
    script the kind wrote for the image (`text`), e.g. a CSV seed turned into SQL.
    """

    name: str
    source: str | None = None
    text: str | None = None
    #: Seed files (relative to the spec) this init file loads: mounted read-only at
    #: SEED_DIR/<file name> for the image to read.
    reads: tuple[str, ...] = ()


@dataclass(frozen=True)
class OfficialImage:
    """An upstream image that can run the service as the spec asks."""

    image: str
    #: Port the image listens on inside its container.
    port: int
    command: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    #: Variable -> secret name: the image reads the secret from SECRETS_DIR/<name>.
    secret_environment: Mapping[str, str] = field(default_factory=dict)
    #: Readiness as a command run inside the container (exec form).
    healthcheck: tuple[str, ...] = ()
    #: Folder the image keeps its data in (a named volume goes here).
    data_path: str = ""
    #: Folder whose files the image runs once, on its first start.
    init_path: str | None = None
    init_files: tuple[InitFile, ...] = ()


@dataclass(frozen=True)
class ExportHints:
    """Everything an exporter may need to know about one service of a course."""

    service: str
    kind: str
    #: Ports the service uses on the course's host (the spec's port, or the kind's default).
    ports: tuple[int, ...] = ()
    #: Serves HTTP to people (gets a launcher entry, a front-door link).
    web: bool = False
    #: The course's notebook server: where JupyterHub or Binder run their own Jupyter
    #: server, that one takes its place (serving `notebooks`, relative to the spec).
    notebook_server: bool = False
    notebooks: str | None = None
    #: Seed files as written in the spec (relative to it).
    seeds: tuple[str, ...] = ()
    #: The spec's own `env` names and values for this service.
    environment: Mapping[str, str] = field(default_factory=dict)
    #: Names of generated secrets the service needs (passwords, tokens).
    secrets: tuple[str, ...] = ()
    #: Variables a notebook uses to reach the service, as templates with {host} and
    #: {port}: where the service is, never a secret's value.
    connection_env: Mapping[str, str] = field(default_factory=dict)
    #: An upstream image that can run the service as the spec asks, if there is one.
    official: OfficialImage | None = None
    #: How the course image runs this service alone, listening on ANY_ADDRESS
    #: (exec form), when there is no official image for it. Other services are reached
    #: by their service names (as on a compose network).
    course_image_command: tuple[str, ...] = ()
    #: Working folder for `course_image_command` (None: the image's default).
    working_dir: str | None = None
    #: Readiness as a command inside the course image (None: ready once started).
    readiness: tuple[str, ...] | None = None
    #: Where the service's data lives when the course image runs it alone.
    data_path: str = DATA_DIR
    #: Debian packages the course image needs for this service.
    apt_packages: tuple[str, ...] = ()
    #: Python packages the course image needs for this service.
    pip_packages: tuple[str, ...] = ()
    #: Shell commands, run as root while building the course image, installing what is
    #: not a Debian package (e.g. MongoDB from its own repository).
    install_commands: tuple[str, ...] = ()
    #: The same, run as an ordinary user into ~/.local, where the Debian packages are not
    #: available (Binder: Ubuntu, no root), with the Ubuntu packages those commands need.
    user_install_commands: tuple[str, ...] = ()
    user_install_apt_packages: tuple[str, ...] = ()
    #: A program the service runs that exists only on the course team's machine (an
    #: absolute path outside the course folder): exported as is, and reported.
    local_program: str | None = None
    #: Where coursestack runs the course in an image that can install the real program,
    #: the kind this service runs as instead (a stand-in's real thing), installed by
    #: `install_commands`.
    runs_as_kind: str | None = None
    #: Things a person must be told about this export (e.g. a stand-in that exports as
    #: the real thing).
    notes: tuple[str, ...] = ()
    #: Settings of this kind the official image does not do as the spec asks: an
    #: exporter using the official image reports each one.
    official_differences: tuple[Difference, ...] = ()

    @property
    def needs_course_image(self) -> bool:
        """Whether a container runtime must run this service in the course image."""
        return self.official is None


@dataclass(frozen=True)
class Difference:
    """A spec key a runtime cannot express, and what the export does instead."""

    key: str
    instead: str


def run_by_official_image(
    hints: ExportHints,
    official: OfficialImage,
    *,
    port: int,
    url: str,
    conventional_env: Mapping[str, str],
    secrets: tuple[str, ...],
    seeds: tuple[str, ...],
) -> ExportHints:
    """`hints` (a kind's generic ones) for a service an official image runs in exports:
    on `port`, ready once it accepts connections there, reached at `url` (the kind's
    `<NAME>_URL`; `_HOST` and `_PORT` stay as the generic hints have them) and by the
    variables its own clients read (`conventional_env`)."""
    from coursestack.kinds.base import env_prefix
    from coursestack.kinds.probe_commands import tcp_check

    name_url = f"{env_prefix(hints.service)}_URL"
    return replace(
        hints,
        ports=(port,),
        seeds=seeds,
        secrets=secrets,
        official=official,
        course_image_command=(),
        readiness=tcp_check(port),
        connection_env={**hints.connection_env, name_url: url, **conventional_env},
    )
