"""The kernel's packet rules for berth's networks: one nftables table, `ip berth`.

Every rule is fixed and written once; what changes with networks and containers are elements
of named sets and maps. So every rule a container or network adds is an element found and
removed from the state alone (a port, a bridge name, a subnet), never a rule handle:

- `ports_tcp`/`ports_udp` (host port -> container address . port) and `addr_ports_tcp`/
  `addr_ports_udp` (host address . host port -> ...) DNAT published ports, for packets from
  outside (prerouting) and from the host itself (output), loopback included: the bridge has
  `route_localnet`, and loopback-sourced connections are masqueraded. The kernel forwards the
  bytes; no proxy process copies them.
- `subnets` are masqueraded on the way out; `bridges` + `same_bridge` isolate networks from
  each other; `internal` bridges reach nothing but their own bridge.

`nft` is run once per change with the whole batch on stdin (one fork, one netlink transaction).
nftables rather than iptables: named sets and maps make each container's state a handful of
elements added and deleted atomically, with no rule list to search and nothing order-dependent.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

TABLE = "ip berth"

RULESET = """
table ip berth {
  set bridges { type ifname; }
  set same_bridge { type ifname . ifname; }
  set internal { type ifname; }
  set subnets { type ipv4_addr; flags interval; }
  map ports_tcp { type inet_service : ipv4_addr . inet_service; }
  map ports_udp { type inet_service : ipv4_addr . inet_service; }
  map addr_ports_tcp { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
  map addr_ports_udp { type ipv4_addr . inet_service : ipv4_addr . inet_service; }
  chain publish {
    dnat ip to ip daddr . tcp dport map @addr_ports_tcp
    dnat ip to ip daddr . udp dport map @addr_ports_udp
    dnat ip to tcp dport map @ports_tcp
    dnat ip to udp dport map @ports_udp
  }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local jump publish
  }
  chain output {
    type nat hook output priority -100; policy accept;
    fib daddr type local jump publish
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat ip saddr 127.0.0.0/8 masquerade
    ct status dnat ip saddr @subnets masquerade
    ip saddr @subnets oifname != @bridges masquerade
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    ct state established,related accept
    ct status dnat accept
    iifname @internal drop
    oifname @internal drop
    iifname @bridges oifname @bridges iifname . oifname != @same_bridge drop
  }
}
"""


class NatFailure(RuntimeError):
    """nft refused a change (or is missing)."""


@dataclass(frozen=True)
class Forward:
    """One published port: host_ip ("" for every address) and host_port to address:port."""

    proto: str
    host_ip: str
    host_port: int
    address: str
    port: int

    def key(self) -> str:
        return f"{self.host_ip} . {self.host_port}" if self.host_ip else str(self.host_port)

    def map(self) -> str:
        return f"{'addr_' if self.host_ip else ''}ports_{self.proto}"


def _nft(script: str) -> None:
    try:
        result = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    except FileNotFoundError:
        raise NatFailure("nft is not installed (Debian package nftables)") from None
    if result.returncode != 0:
        raise NatFailure(f"nft: {result.stderr.strip()}")


def table_exists() -> bool:
    return subprocess.run(["nft", "list", "table", TABLE], capture_output=True).returncode == 0


def ensure_table() -> None:
    """Create the table with its rules once (again after a reboot); never touch it when present."""
    if not table_exists():
        _nft(RULESET)


def delete_table() -> None:
    if table_exists():
        _nft(f"delete table {TABLE}\n")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', "") + '"'


def network_elements(bridge: str, subnet: str, internal: bool) -> str:
    lines = [
        f"element {TABLE} bridges {{ {_quoted(bridge)} }}",
        f"element {TABLE} same_bridge {{ {_quoted(bridge)} . {_quoted(bridge)} }}",
    ]
    if internal:
        lines.append(f"element {TABLE} internal {{ {_quoted(bridge)} }}")
    else:
        lines.append(f"element {TABLE} subnets {{ {subnet} }}")
    return "\n".join(lines)


def add_network(bridge: str, subnet: str, internal: bool) -> None:
    """Isolate the bridge, and masquerade its subnet unless it is internal (idempotent)."""
    ensure_table()
    _nft("\n".join(f"add {line}" for line in network_elements(bridge, subnet, internal).splitlines()))


def remove_network(bridge: str, subnet: str, internal: bool) -> None:
    if table_exists():
        for line in network_elements(bridge, subnet, internal).splitlines():
            _delete_quietly(f"delete {line}")


def forward_line(forward: Forward) -> str:
    return f"element {TABLE} {forward.map()} {{ {forward.key()} : {forward.address} . {forward.port} }}"


def add_forwards(forwards: list[Forward]) -> None:
    """All of a container's published ports in one transaction: all are added, or none.

    One `nft` run when the table is there (it is made with the network's bridge); only when
    that fails is the table checked for, and made (someone flushed the ruleset).
    """
    if not forwards:
        return
    script = "\n".join(f"add {forward_line(f)}" for f in forwards)
    try:
        _nft(script)
    except NatFailure:
        if table_exists():
            raise
        ensure_table()
        _nft(script)


def remove_forwards(forwards: list[Forward]) -> None:
    """Delete published ports; ones already gone (a reboot, an earlier clean-up) are skipped."""
    if not forwards or not table_exists():
        return
    script = "\n".join(f"delete element {TABLE} {f.map()} {{ {f.key()} }}" for f in forwards)
    try:
        _nft(script)
    except NatFailure:
        for forward in forwards:
            _delete_quietly(f"delete element {TABLE} {forward.map()} {{ {forward.key()} }}")


def _delete_quietly(line: str) -> None:
    subprocess.run(["nft", "-f", "-"], input=line, capture_output=True, text=True)


def enable_forwarding(bridge: str) -> None:
    """ip_forward for outbound traffic; route_localnet so 127.0.0.1:PORT can be DNATed to the bridge."""
    for path, value in (
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        (f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet", "1"),
    ):
        with open(path, "w") as f:
            f.write(value)
