"""Which peers may tell us who the client is (`X-Forwarded-For`, `-Proto`, `-Host`).

Forwarded headers are believed only from the proxies named in `--trust-proxy`; from anyone
else they are ignored, so a client cannot pick the address that login throttling counts, nor
the token realm.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
LOOPBACK = "127.0.0.0/8,::1"
# A bare `--trust-proxy` (or `trust_proxy = true`): a proxy on this machine.
ON_WORDS = {"1", "true", "yes", "on"}
OFF_WORDS = {"", "0", "false", "no", "off"}


def parse_trusted(text: str) -> str:
    """Normalise a `--trust-proxy` value (a comma list of addresses and networks, or on/off) to the
    comma list it stands for; ValueError with a clear message for anything else."""
    value = text.strip().lower()
    if value in OFF_WORDS:
        return ""
    if value in ON_WORDS:
        return LOOPBACK
    networks = []
    for item in text.split(","):
        item = item.strip()
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ValueError(
                f"--trust-proxy takes proxy addresses or networks such as 10.0.0.0/8,::1 (got {item[:80]!r})"
            ) from None
    return ",".join(networks)


def parse_address(text: str) -> Address | None:
    """An IP from a forwarded header (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`); None if it is none."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TrustedProxies:
        value = parse_trusted(text)
        return cls(tuple(ipaddress.ip_network(item) for item in value.split(",") if item))

    def trusts(self, peer: str) -> bool:
        address = parse_address(peer)
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: the peer, unless it is a trusted proxy; then the nearest address
        in `X-Forwarded-For` (read from the right) that is not a trusted proxy itself. An entry
        that is no address ends the walk: what lies left of it was written by the client."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for item in reversed(forwarded_for.split(",")[-32:]):
            address = parse_address(item)
            if address is None:
                break
            client = str(address)
            if not any(address in network for network in self.networks):
                break
        return client
