"""How containers find each other and the world: /etc/hosts and /etc/resolv.conf.

On user networks a container's /etc/hosts lists every container of its networks by name and
alias. The network service rewrites the files (in place: they are bind-mounted, so the inode
must stay) of every container on a network whenever one joins or leaves it. No resolver process
has to stay alive between commands; see docs/architecture.md.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")  # docker's, when the host has only loopback ones
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,252})$")


class BadName(ValueError):
    """A --add-host, --dns or alias that cannot be written into the container's files."""


def check_hostname(name: str, what: str) -> str:
    if not _HOSTNAME.fullmatch(name):
        raise BadName(f"invalid {what} {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def parse_add_host(text: str) -> tuple[str, str]:
    """NAME:IP (IPv4 or IPv6), as docker's --add-host."""
    name, sep, address = text.partition(":")
    if not sep:
        raise BadName(f"invalid --add-host {text!r}: expected NAME:IP")
    try:
        address = str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        raise BadName(f"invalid address in --add-host {text!r}") from None
    return check_hostname(name, "host name in --add-host"), address


def parse_dns(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise BadName(f"invalid --dns {text!r}: expected an IP address") from None


def hosts_text(hostname: str, own: list[str], extra: list[tuple[str, str]], peers: list[tuple[str, list[str]]]) -> str:
    """localhost, the container's own addresses, --add-host entries, then its networks' containers."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{address}\t{hostname}" for address in own] or [f"127.0.1.1\t{hostname}"]
    lines += [f"{address}\t{name}" for name, address in extra]
    lines += [f"{address}\t{' '.join(names)}" for address, names in peers if names]
    return "\n".join(lines) + "\n"


def resolv_text(dns: list[str], host_file: Path = Path("/etc/resolv.conf")) -> str:
    """The host's resolv.conf without loopback nameservers (unreachable from a container), or --dns."""
    try:
        host_lines = host_file.read_text().splitlines()
    except OSError:
        host_lines = []
    servers = list(dns)
    others = []
    for line in host_lines:
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if not dns and not _loopback(words[1]):
                servers.append(words[1])
        elif words and words[0] in ("search", "domain", "options"):
            others.append(line)
    servers = servers or list(DEFAULT_NAMESERVERS)
    return "".join(f"nameserver {s}\n" for s in servers) + "".join(f"{line}\n" for line in others)


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def rewrite(path: str, text: str) -> None:
    """Replace a bind-mounted file's content in place (a rename would leave the container the old inode).

    A container whose directory is gone is skipped.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError:
        return
    try:
        data = text.encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
    finally:
        os.close(fd)
