"""Published ports: docker's `-p` grammar, and reserving host ports before a container starts.

A reservation is a socket bound (never listening) to the host address and port, held by the
container's supervisor for the container's life: a port another program uses is refused before
anything is created, and nothing else can take it while the kernel forwards it to the
container. Its packets never reach the socket: DNAT rewrites them before the socket lookup.
"""

from __future__ import annotations

import _socket
import ipaddress
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

MAX_RANGE = 1024
PROTOCOLS = ("tcp", "udp")


class PortError(ValueError):
    """A -p that cannot be published (bad syntax, or a host port in use)."""


@dataclass(frozen=True)
class Publish:
    """One requested mapping; host_port 0 asks for any free port, host_last > host_port for one in a range."""

    proto: str
    host_ip: str
    host_port: int
    container_port: int
    host_last: int = 0


@dataclass(frozen=True)
class Binding:
    """One published port as it is: the host side the kernel forwards to the container's port."""

    proto: str
    host_ip: str
    host_port: int
    container_port: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def describe(bindings: list[Binding], exposed: Sequence[str] = ()) -> str:
    """Docker's PORTS column: consecutive ports collapse into ranges (0.0.0.0:8000-8002->8000-8002/tcp),
    then the exposed ports that are not published (80/tcp, 8000-8001/udp)."""
    return ", ".join(filter(None, (_describe_published(bindings), _describe_exposed(bindings, exposed))))


def _describe_exposed(bindings: list[Binding], exposed: Sequence[str]) -> str:
    published = {f"{b.container_port}/{b.proto}" for b in bindings}
    keys = (key.partition("/") for key in exposed if key not in published)
    ports = sorted((proto, int(port)) for port, _, proto in keys)
    runs: list[list[tuple[str, int]]] = []
    for proto, port in ports:
        if runs and runs[-1][-1] == (proto, port - 1):
            runs[-1].append((proto, port))
        else:
            runs.append([(proto, port)])
    return ", ".join(
        f"{run[0][1]}-{run[-1][1]}/{run[0][0]}" if len(run) > 1 else f"{run[0][1]}/{run[0][0]}" for run in runs
    )


def _describe_published(bindings: list[Binding]) -> str:
    runs: list[list[Binding]] = []
    for b in sorted(bindings, key=lambda b: (b.proto, b.host_ip, b.container_port)):
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and (last.proto, last.host_ip) == (b.proto, b.host_ip)
            and (last.host_port + 1, last.container_port + 1) == (b.host_port, b.container_port)
        ):
            runs[-1].append(b)
        else:
            runs.append([b])
    out = []
    for run in runs:
        first, last = run[0], run[-1]
        host = f"{first.host_port}-{last.host_port}" if len(run) > 1 else str(first.host_port)
        inside = f"{first.container_port}-{last.container_port}" if len(run) > 1 else str(first.container_port)
        out.append(f"{first.host_ip or '0.0.0.0'}:{host}->{inside}/{first.proto}")
    return ", ".join(out)


def _port(text: str, what: str, original: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or not 1 <= int(text) <= 65535:
        raise PortError(f"invalid {what} port {text!r} in {original!r}: expected 1-65535")
    return int(text)


def _range(text: str, what: str, original: str) -> range:
    first, dash, last = text.partition("-")
    start = _port(first, what, original)
    end = _port(last, what, original) if dash else start
    if end < start:
        raise PortError(f"invalid {what} port range {text!r} in {original!r}")
    if end - start >= MAX_RANGE:
        raise PortError(f"port range {text!r} in {original!r} is longer than {MAX_RANGE} ports")
    return range(start, end + 1)


def parse_publish(text: str) -> list[Publish]:
    """`[IP:][HOST[-END]:]CONTAINER[-END][/tcp|udp]` as docker reads it (IPv4 host addresses)."""
    if len(text) > 64:
        raise PortError(f"invalid port mapping {text[:64]!r}…: too long")
    spec, slash, proto = text.partition("/")
    proto = proto if slash else "tcp"
    if proto not in PROTOCOLS:
        raise PortError(f"invalid protocol {proto!r} in {text!r}: expected tcp or udp")
    parts = spec.split(":")
    if len(parts) > 3 or not parts[-1]:
        raise PortError(f"invalid port mapping {text!r}: expected [IP:][HOST:]CONTAINER[/PROTO]")
    host_ip = parts[0] if len(parts) == 3 else ""
    if host_ip:
        try:
            address = ipaddress.IPv4Address(host_ip)
        except ValueError:
            raise PortError(f"invalid host address {host_ip!r} in {text!r}: expected an IPv4 address") from None
        host_ip = "" if address.is_unspecified else str(address)
    container = _range(parts[-1], "container", text)
    host_text = parts[-2] if len(parts) >= 2 else ""
    if not host_text:
        return [Publish(proto, host_ip, 0, port) for port in container]
    host = _range(host_text, "host", text)
    if len(host) != len(container):
        if len(container) != 1:
            raise PortError(f"invalid port mapping {text!r}: host and container ranges differ in length")
        # docker: a host range with one container port means "any one free port of the range"
        return [Publish(proto, host_ip, host.start, container.start, host.stop - 1)]
    return [Publish(proto, host_ip, h, c) for h, c in zip(host, container, strict=True)]


def exposed_keys(exposed: dict[str, Any]) -> list[str]:
    """EXPOSEd ports as sorted `PORT/PROTO` keys; a key berth cannot publish (sctp, garbage from an image)
    is left out, since it only shows in listings."""
    keys: set[str] = set()
    for key in exposed:
        try:
            keys.update(f"{p.container_port}/{p.proto}" for p in parse_publish(str(key)))
        except PortError:
            continue
    return sorted(keys, key=lambda k: (k.partition("/")[2], int(k.partition("/")[0])))


def exposed(config: dict[str, Any]) -> list[Publish]:
    """-P: every EXPOSEd port of the image on a free host port."""
    out = []
    for key in sorted(config.get("ExposedPorts") or {}):
        port, _, proto = str(key).partition("/")
        out += parse_publish(f"{port}/{proto or 'tcp'}")
    return out


def _bind(proto: str, host_ip: str, port: int) -> _socket.socket:
    kind = _socket.SOCK_STREAM if proto == "tcp" else _socket.SOCK_DGRAM
    sock = _socket.socket(_socket.AF_INET, kind)
    try:
        sock.bind((host_ip or "0.0.0.0", port))
    except OSError:
        sock.close()
        raise
    return sock


def reserve(requests: list[Publish]) -> tuple[list[Binding], list[_socket.socket]]:
    """Bind every requested host port (all or none); the sockets must live as long as the container."""
    bindings: list[Binding] = []
    sockets: list[_socket.socket] = []
    try:
        for request in requests:
            sock = _reserve_one(request)
            sockets.append(sock)
            bindings.append(Binding(request.proto, request.host_ip, sock.getsockname()[1], request.container_port))
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return bindings, sockets


def _reserve_one(request: Publish) -> _socket.socket:
    if request.host_last <= request.host_port:
        try:
            return _bind(request.proto, request.host_ip, request.host_port)
        except OSError as exc:
            where = f"{request.host_ip or '0.0.0.0'}:{request.host_port}/{request.proto}"
            raise PortError(f"Bind for {where} failed: port is already allocated ({exc.strerror})") from None
    for port in range(request.host_port, request.host_last + 1):
        try:
            return _bind(request.proto, request.host_ip, port)
        except OSError:
            continue
    raise PortError(
        f"no free host port in {request.host_port}-{request.host_last} for {request.container_port}/{request.proto}"
    )
