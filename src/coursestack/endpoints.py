"""Where each service listens, chosen by the daemon and handed to each kind explicitly.

The daemon (the composition root) owns one `EndpointTable`. It chooses every service's
port(s) when it builds the instance, binds each kind to its own `Endpoint` and to the
endpoints of the other services (`Kind.bind`), and is the only one that moves a port:
before a start, if another program took a service's port, `EndpointTable.move` picks
another and the daemon publishes the new table through one path (ports.json, the
services' environment, and connections.json, each written atomically), then rebinds
the kinds. Kinds never hold a reference to a shared, mutable table of ports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from coursestack.ports import choose_port

LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class Endpoint:
    """Where one service listens: a host and its port; a replica set's other members
    listen on `members` (in order)."""

    port: int
    host: str = LOCALHOST
    members: tuple[int, ...] = ()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def ports(self) -> tuple[int, ...]:
        return (self.port, *self.members)


@dataclass
class EndpointTable:
    """Every service's endpoint (services without a port have none)."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def get(self, name: str) -> Endpoint | None:
        return self.endpoints.get(name)

    def used(self, leaving_out: str = "") -> list[int]:
        return [
            port
            for name, endpoint in self.endpoints.items()
            if name != leaving_out
            for port in endpoint.ports()
        ]

    def choose(self, name: str, preferred: int | None, count: int = 1) -> Endpoint | None:
        """Choose free ports for `name` near `preferred` (None: the service has none)."""
        self.endpoints.pop(name, None)
        if preferred is None:
            return None
        avoid = self.used()
        port = choose_port(preferred, avoid=avoid)
        members: list[int] = []
        for member in range(1, count):
            members.append(choose_port(preferred + member, avoid=[*avoid, port, *members]))
        endpoint = Endpoint(port, members=tuple(members))
        self.endpoints[name] = endpoint
        return endpoint

    def move(self, name: str) -> Endpoint:
        """Another program took `name`'s port: a free one instead (same members)."""
        old = self.endpoints[name]
        port = choose_port(old.port, avoid=self.used(leaving_out=name))
        moved = Endpoint(port, old.host, old.members)
        self.endpoints[name] = moved
        return moved

    def drop(self, name: str) -> None:
        self.endpoints.pop(name, None)

    def as_ports(self) -> dict[str, int]:
        """The ports.json form: NAME -> port, and NAME:i -> port of member i."""
        ports: dict[str, int] = {}
        for name, endpoint in self.endpoints.items():
            ports[name] = endpoint.port
            for number, port in enumerate(endpoint.members, start=1):
                ports[f"{name}:{number}"] = port
        return ports

    @classmethod
    def from_ports(cls, ports: Mapping[str, int], names: Iterable[str]) -> EndpointTable:
        """The table a ports.json describes (for commands that read a running instance)."""
        table = cls()
        for name in names:
            if name in ports:
                members: list[int] = []
                while f"{name}:{len(members) + 1}" in ports:
                    members.append(int(ports[f"{name}:{len(members) + 1}"]))
                table.endpoints[name] = Endpoint(int(ports[name]), members=tuple(members))
        return table
