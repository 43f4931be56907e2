"""docker's -p grammar and its PORTS column, without any namespace."""

from __future__ import annotations

import pytest

from engine.service.ports import Binding, PortError, Publish, describe, exposed, exposed_keys, parse_publish


@pytest.mark.parametrize(
    "text, expected",
    [
        ("80", [Publish("tcp", "", 0, 80)]),
        ("8080:80", [Publish("tcp", "", 8080, 80)]),
        ("127.0.0.1:8080:80/udp", [Publish("udp", "127.0.0.1", 8080, 80)]),
        ("0.0.0.0:8080:80", [Publish("tcp", "", 8080, 80)]),
        ("127.0.0.1::80", [Publish("tcp", "127.0.0.1", 0, 80)]),
        ("8000-8001:9000-9001", [Publish("tcp", "", 8000, 9000), Publish("tcp", "", 8001, 9001)]),
        ("8000-8009:80", [Publish("tcp", "", 8000, 80, 8009)]),
    ],
)
def test_docker_forms(text: str, expected: list[Publish]) -> None:
    assert parse_publish(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "80:",
        "0:80",
        "65536:80",
        "-1:80",
        "80/sctp",
        "80/",
        "a:b:c:d",
        "::1:80:80",
        "1.2.3.4.5:80:80",
        "9-8:9-8",
        "1-2000:1-2000",
        "08" * 40,
        "80:80/tcp/udp",
        "٣:80",
    ],
)
def test_hostile_forms_are_refused(text: str) -> None:
    with pytest.raises(PortError):
        parse_publish(text)


def test_exposed_ports_of_an_image() -> None:
    config = {"ExposedPorts": {"80/tcp": {}, "53/udp": {}, "9000": {}}}
    assert exposed(config) == [Publish("udp", "", 0, 53), Publish("tcp", "", 0, 80), Publish("tcp", "", 0, 9000)]
    assert exposed({}) == []


def test_ps_collapses_consecutive_ports_as_docker_does() -> None:
    bindings = [Binding("tcp", "", 8000 + n, 8000 + n) for n in range(3)]
    bindings += [Binding("udp", "", 5353, 53), Binding("tcp", "127.0.0.1", 9000, 90), Binding("tcp", "", 8004, 8004)]
    assert describe(bindings) == (
        "0.0.0.0:8000-8002->8000-8002/tcp, 0.0.0.0:8004->8004/tcp, 127.0.0.1:9000->90/tcp, 0.0.0.0:5353->53/udp"
    )


def test_exposed_ports_that_are_not_published_follow_the_published_ones() -> None:
    """As docker's PORTS column: 80/tcp, consecutive ports as one range, no host side; a key berth cannot
    read (sctp, garbage in an image's config) is left out of the listing rather than failing the run."""
    keys = exposed_keys({"80/tcp": {}, "81": {}, "443/tcp": {}, "53/udp": {}, "7/sctp": {}, "x/tcp": {}})
    assert keys == ["80/tcp", "81/tcp", "443/tcp", "53/udp"]
    assert describe([], keys) == "80-81/tcp, 443/tcp, 53/udp"
    assert describe([Binding("tcp", "", 8443, 443)], keys) == "0.0.0.0:8443->443/tcp, 80-81/tcp, 53/udp"
