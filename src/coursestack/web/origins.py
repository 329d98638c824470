"""One browser origin per web service: `<service>.<instance>.localhost:<port>`.

A page served by a proxied service must not be able to act as the dashboard or as
another service. Browsers separate origins (scheme, host, port), not paths, so each web
service gets a host name of its own on the dashboard's port, and the dashboard keeps
its own (`127.0.0.1:<port>` or `localhost:<port>`). Chromium and Firefox resolve every
`*.localhost` name to loopback (RFC 6761), so no DNS set-up is needed on a laptop;
host-only cookies (no `Domain`) of one such name never reach another.

Parsing, never pasting: a `Host` header is matched against the names built from the
spec; the upstream `Host` is rebuilt from those parts and the port as a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

#: The name under which every instance's services live (a wildcard domain on a server).
BASE_DOMAIN = "localhost"

_NOT_LABEL = re.compile(r"[^a-z0-9-]+")
_PORT = re.compile(r"^[0-9]{1,5}$")


def dns_label(text: str, fallback: str = "instance") -> str:
    """`text` as a valid DNS label: lower case letters, digits and inner hyphens, 1-63."""
    label = _NOT_LABEL.sub("-", text.lower()).strip("-")[:63].strip("-")
    return label or fallback


@dataclass(frozen=True)
class ServiceHost:
    """A request's `Host` header, recognised as one service's origin."""

    service: str
    instance: str
    port: int | None

    @cached_property  # asked several times per proxied request
    def host(self) -> str:
        """The Host header rebuilt from its checked parts."""
        name = f"{dns_label(self.service, 'service')}.{self.instance}.{BASE_DOMAIN}"
        return f"{name}:{self.port}" if self.port is not None else name

    @cached_property
    def origin(self) -> str:
        return f"http://{self.host}"


#: A `*.localhost` name that is not one of this instance's services (another instance's,
#: or made up): refused rather than served as the dashboard.
MISDIRECTED = ServiceHost("", "", None)


def split_host(header: str) -> tuple[str, int | None] | None:
    """(lower-case name, port) of a Host header; None if it is malformed."""
    text = header.strip().lower()
    if text.startswith("["):  # an IPv6 literal: never a service name
        name, _, rest = text.partition("]")
        name, port = name + "]", rest.removeprefix(":")
    else:
        name, sep, port = text.rpartition(":")
        if not sep:
            name, port = text, ""
    if not name or (port and not _PORT.match(port)):
        return None
    number = int(port) if port else None
    if number is not None and not 0 < number < 65536:
        return None
    return name, number


class Origins:
    """The service origins of one instance."""

    def __init__(self, instance_name: str, services: list[str]) -> None:
        self.instance = dns_label(instance_name)
        self.services = {dns_label(name, "service"): name for name in sorted(services)}

    def match(self, host_header: str | None) -> ServiceHost | None:
        """The service this Host names; MISDIRECTED for another `*.localhost` name;
        None for anything else (the dashboard)."""
        if not host_header:
            return None
        parts = split_host(host_header)
        if parts is None:
            return MISDIRECTED
        name, port = parts
        if name.endswith(f".{BASE_DOMAIN}."):  # a trailing dot: another origin, refused
            return MISDIRECTED
        if name != BASE_DOMAIN and not name.endswith(f".{BASE_DOMAIN}"):
            return None
        labels = name.split(".")
        if len(labels) == 3 and labels[1] == self.instance and labels[0] in self.services:
            return ServiceHost(self.services[labels[0]], self.instance, port)
        if name == BASE_DOMAIN:
            return None  # the dashboard, reached as localhost:<port>
        return MISDIRECTED

    def host_of(self, service: str, port: int | None) -> ServiceHost:
        """The origin of `service` on `port`."""
        return ServiceHost(service, self.instance, port)


def request_port(host_header: str | None, default: int | None) -> int | None:
    """The port the browser used (an ssh tunnel may map 9000 to the daemon's 8700)."""
    parts = split_host(host_header or "")
    if parts is None or parts[1] is None:
        return default
    return parts[1]
