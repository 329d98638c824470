"""Host headers are parsed into service origins, never pasted (no processes needed)."""

from __future__ import annotations

import pytest

from coursestack.web.origins import MISDIRECTED, Origins, dns_label, split_host

ORIGINS = Origins("My Course_2", ["jupyter", "web"])


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("sample", "sample"),
        ("My Course_2", "my-course-2"),
        ("--x--", "x"),
        ("", "instance"),
        ("é", "instance"),
        ("a" * 80, "a" * 63),
    ],
)
def test_instance_names_become_dns_labels(text: str, label: str) -> None:
    assert dns_label(text) == label


@pytest.mark.parametrize(
    ("host", "service"),
    [
        ("jupyter.my-course-2.localhost:8700", "jupyter"),
        ("WEB.My-Course-2.LocalHost:8700", "web"),
        ("web.my-course-2.localhost", "web"),
    ],
)
def test_a_service_host_is_recognised_and_rebuilt(host: str, service: str) -> None:
    found = ORIGINS.match(host)
    assert found is not None and found is not MISDIRECTED
    assert found.service == service
    assert found.host == host.lower()


@pytest.mark.parametrize(
    "host",
    [
        "nope.my-course-2.localhost:8700",
        "jupyter.other.localhost:8700",
        "x.jupyter.my-course-2.localhost",
        "jupyter.my-course-2.localhost.:8700",
        "jupyter.my-course-2.localhost:99999",
        "jupyter.my-course-2.localhost:abc",
        "a b.localhost",
    ],
)
def test_other_localhost_names_and_bad_ports_are_refused(host: str) -> None:
    assert ORIGINS.match(host) is MISDIRECTED


@pytest.mark.parametrize(
    "host", [None, "", "127.0.0.1:8700", "localhost:8700", "[::1]:8700", "example.org", "localhost"]
)
def test_everything_else_is_the_dashboard(host: str | None) -> None:
    assert ORIGINS.match(host) is None


def test_split_host() -> None:
    assert split_host("[::1]:80") == ("[::1]", 80)
    assert split_host("a:0") is None
    assert split_host(":80") is None
