"""Networks as state: bridges, subnets, address leases, published ports and names, under one lock.

Everything lives in one JSON file (`networks/state.json`, replaced atomically) guarded by one
flock (`networks/.lock`): every `berth` process that creates, joins or leaves a network takes
the lock, first reconciles (a container whose supervisor is gone loses its leases, ports,
veth and names), then decides, so two runs never get the same address and no NAT element ever
points at an address that has since been given to another container. The kernel side (links,
NAT) is plumbed through engine.runtime and can always be found again from this state alone.
"""

from __future__ import annotations

import builtins
import fcntl
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.service.ports import Binding

DEFAULT = "bridge"
DEFAULT_BRIDGE = "berth0"
BUILTIN = ("bridge", "host", "none")
DEFAULT_POOL = [f"172.{n}.0.0/16" for n in range(17, 32)] + [f"192.168.{n}.0/20" for n in range(0, 256, 16)]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class NetworkError(ValueError):
    """A network operation that breaks a rule (exit code 125 / 1 at the CLI)."""


class NetworkNotFound(LookupError):
    pass


@dataclass
class Network:
    """A network's record: its subnet, gateway address and Linux bridge."""

    name: str
    id: str
    subnet: str
    gateway: str
    bridge: str
    internal: bool = False
    created: float = field(default_factory=time.time)

    @property
    def user_defined(self) -> bool:
        """Only user networks resolve container names, as with docker."""
        return self.name != DEFAULT

    def inspect(self, endpoints: list[tuple[str, Attachment, Endpoint]]) -> dict[str, Any]:
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        return {
            "Name": self.name,
            "Id": self.id,
            "Created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "Driver": "bridge",
            "Internal": self.internal,
            "IPAM": {"Config": [{"Subnet": self.subnet, "Gateway": self.gateway}]},
            "Options": {"com.docker.network.bridge.name": self.bridge},
            "Containers": {
                cid: {"Name": a.name, "IPv4Address": f"{e.ip}/{prefix}", "MacAddress": e.mac, "Aliases": e.aliases}
                for cid, a, e in endpoints
            },
        }


@dataclass
class Endpoint:
    """A container's interface on one network."""

    network: str
    ip: str
    mac: str
    ifname: str
    veth: str
    aliases: list[str] = field(default_factory=list)


@dataclass
class Attachment:
    """A container's network record; it lives as long as its owner (the supervisor) does."""

    name: str
    hostname: str
    hosts_file: str
    owner_pid: int
    owner_start: int | None
    extra_hosts: list[list[str]] = field(default_factory=list)
    ports: list[Binding] = field(default_factory=list)
    endpoints: list[Endpoint] = field(default_factory=list)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Attachment:
        doc = dict(doc)
        doc["ports"] = [Binding(**p) for p in doc.get("ports", [])]
        doc["endpoints"] = [Endpoint(**e) for e in doc.get("endpoints", [])]
        return cls(**doc)


@dataclass
class State:
    """Everything in networks/state.json: the networks and each container's attachments."""

    networks: dict[str, Network] = field(default_factory=dict)
    attachments: dict[str, Attachment] = field(default_factory=dict)

    def endpoints(self, network: str) -> list[tuple[str, Attachment, Endpoint]]:
        return [(cid, a, e) for cid, a in self.attachments.items() for e in a.endpoints if e.network == network]


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise NetworkError(f"invalid network name {name[:64]!r}: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 63 characters")
    return name


def host_routes(path: str = "/proc/net/route") -> list[ipaddress.IPv4Network]:
    """The destinations of this network namespace's IPv4 routes (default route excluded)."""
    out: list[ipaddress.IPv4Network] = []
    try:
        with open(path) as f:
            rows = f.read().splitlines()[1:]
    except OSError:
        return out
    for row in rows:
        fields = row.split()
        if len(fields) < 8:
            continue
        dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        if int(mask):
            out.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return out


def mac_for(ip: str) -> str:
    """02:42 and the address, as docker derives a container's MAC."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


class Store:
    """The state file and its lock; `locked()` yields the state and saves it on success."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / "state.json"

    def read(self) -> State:
        try:
            with open(self.path) as f:
                return self.parse(f.read())
        except FileNotFoundError:
            return State()

    def parse(self, text: str) -> State:
        """The state in `text`; a file that is not ours (corrupt, edited by hand) is a clear error."""
        try:
            doc = json.loads(text)
            return State(
                {n: Network(**d) for n, d in doc.get("networks", {}).items()},
                {c: Attachment.from_json(d) for c, d in doc.get("attachments", {}).items()},
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise NetworkError(
                f"the network state {self.path} is corrupt ({exc}): move it away to start afresh"
            ) from None

    @staticmethod
    def dump(state: State) -> str:
        doc = {
            "networks": {n: asdict(v) for n, v in state.networks.items()},
            "attachments": {c: asdict(a) for c, a in state.attachments.items()},
        }
        return json.dumps(doc, indent=1)

    def write(self, text: str) -> None:
        tmp = self.root / f".state.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.path)

    @contextmanager
    def locked(self) -> Iterator[State]:
        """The state under the lock; written back (atomically) if the caller changed it and raised nothing."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = self.read()
            before = self.dump(state)
            yield state
            after = self.dump(state)
            if after != before:
                self.write(after)


def free_subnet(state: State, pool: list[str] = DEFAULT_POOL) -> ipaddress.IPv4Network:
    """The first pool subnet overlapping neither a route of this namespace nor another network."""
    taken = host_routes() + [ipaddress.IPv4Network(n.subnet) for n in state.networks.values()]
    for candidate in map(ipaddress.IPv4Network, pool):
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise NetworkError("no free subnet left in the address pools: give one with --subnet")


def new_network(
    state: State, name: str, subnet: str | None, gateway: str | None, internal: bool, bridge: str | None = None
) -> Network:
    """A network's record (validated against the others), not yet plumbed."""
    if name in state.networks or name in BUILTIN and name != DEFAULT:
        raise NetworkError(f"network with name {name} already exists")
    if subnet is None:
        if gateway is not None:
            raise NetworkError("--gateway needs --subnet")
        net = free_subnet(state)
    else:
        try:
            net = ipaddress.IPv4Network(subnet)
        except ValueError as exc:
            raise NetworkError(f"invalid subnet {subnet[:64]!r}: {exc}") from None
        if not 8 <= net.prefixlen <= 29:
            raise NetworkError(f"invalid subnet {subnet}: the prefix must be between /8 and /29")
        for other in state.networks.values():
            if net.overlaps(ipaddress.IPv4Network(other.subnet)):
                raise NetworkError(f"subnet {net} overlaps with network {other.name} ({other.subnet})")
    gw = net.network_address + 1 if gateway is None else _host_address(net, gateway, "gateway", str(net))
    network_id = os.urandom(32).hex()
    return Network(name, network_id, str(net), str(gw), bridge or f"br-{network_id[:12]}", internal)


def check_address(network: Network, wanted: str) -> ipaddress.IPv4Address:
    """`wanted` as an address, if it is a host address of the network's subnet (taken or not)."""
    net = ipaddress.IPv4Network(network.subnet)
    return _host_address(net, wanted, "--ip", f"network {network.name} ({net})")


def _host_address(net: ipaddress.IPv4Network, text: str, label: str, where: str) -> ipaddress.IPv4Address:
    """`text` as an address of `net` other than its network and broadcast addresses."""
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise NetworkError(f"invalid {label} {text[:64]!r}") from None
    if address not in net or address in (net.network_address, net.broadcast_address):
        raise NetworkError(f"{label} {address} is not a host address of {where}")
    return address


def allocate(state: State, network: Network, wanted: str | None) -> str:
    """A free address of the network: `wanted` (checked) or the lowest free one."""
    net = ipaddress.IPv4Network(network.subnet)
    used = {network.gateway} | {e.ip for _, _, e in state.endpoints(network.name)}
    if wanted is not None:
        address = check_address(network, wanted)
        if str(address) in used:
            raise NetworkError(f"address {address} is already in use on network {network.name}")
        return str(address)
    for address in net.hosts():
        if str(address) not in used:
            return str(address)
    raise NetworkError(f"no free address left on network {network.name} ({net})")


def veth_name(container_id: str, network: Network) -> str:
    return "veth" + container_id[:5] + network.id[:6]


def link_present(name: str) -> bool:
    """Whether this network namespace has the link (/proc/net/dev follows the caller's namespace, /sys may not)."""
    try:
        with open("/proc/net/dev") as f:
            return any(line.split(":", 1)[0].strip() == name for line in f.read().splitlines()[2:])
    except OSError:
        return False


def plumb(network: Network) -> None:
    """The network's bridge, sysctls and NAT elements, made if missing (first use, or after a reboot)."""
    if link_present(network.bridge):
        return
    from engine.runtime import nat, netlink

    netlink.ensure_bridge(network.bridge, network.gateway, ipaddress.IPv4Network(network.subnet).prefixlen)
    nat.enable_forwarding(network.bridge)
    nat.add_network(network.bridge, network.subnet, network.internal)


def unplumb(network: Network) -> None:
    from engine.runtime import nat

    nat.remove_network(network.bridge, network.subnet, network.internal)
    if link_present(network.bridge):
        from engine.runtime import netlink

        netlink.delete_link(network.bridge)


class Networks:
    """The front doors' entry to networks: create, list, inspect, remove, prune."""

    def __init__(self, root: Path) -> None:
        self.store = Store(root)

    def record(self, action: str, network: Network, container_id: str | None = None) -> None:
        """Append a network event to the engine's journal (`service/events.py`), as docker's carry it."""
        from engine.service.events import Journal

        attributes = {"container": container_id, "name": network.name, "type": "bridge"}
        Journal.of_root(self.store.root.parent).record("network", action, network.id, attributes)

    def create(
        self, name: str, subnet: str | None = None, gateway: str | None = None, internal: bool = False
    ) -> Network:
        check_name(name)
        if name == DEFAULT or name in BUILTIN:
            raise NetworkError(f"network with name {name} already exists (a pre-defined network)")
        # the default first (committed on its own), as dockerd makes docker0 before any other: it keeps the
        # pool's first subnet
        self.default()
        with self.store.locked() as state:
            network = new_network(state, name, subnet, gateway, internal)
            try:
                plumb(network)
            except BaseException:
                unplumb(network)
                raise
            state.networks[name] = network
        self.record("create", network)
        return network

    def default(self) -> Network:
        """The `bridge` network, created on first use."""
        with self.store.locked() as state:
            return ensure_default(state)

    def list(self) -> list[Network]:
        return sorted(self.store.read().networks.values(), key=lambda n: n.created)

    def shown(self) -> builtins.list[Network]:
        """What `network ls` lists: the default bridge always (made here if not yet used, as dockerd has
        docker0 from its start; only root can make it, and only root runs containers), then the others."""
        if os.geteuid() == 0:
            self.default()
        return self.list()

    def resolve(self, name: str) -> str:
        """A network's name from its name or an ID prefix, as a container's spec keeps it: host and none as
        they are, the default bridge made on its first use (as `run` makes it)."""
        if name in ("host", "none"):
            return name
        if name == DEFAULT:
            return self.default().name
        return self.get(self.store.read(), name).name

    def get(self, state: State, name: str) -> Network:
        if name in state.networks:
            return state.networks[name]
        matches = [n for n in state.networks.values() if n.id.startswith(name)] if len(name) >= 3 else []
        if len(matches) == 1:
            return matches[0]
        raise NetworkNotFound(f"network {name} not found")

    def inspect(self, name: str) -> dict[str, Any]:
        from engine.service.attachments import reconcile

        with self.store.locked() as state:
            reconcile(state)
            network = self.get(state, name)
            return network.inspect(state.endpoints(network.name))

    def remove(self, name: str) -> str:
        from engine.service.attachments import reconcile

        with self.store.locked() as state:
            reconcile(state)
            network = self.get(state, name)
            if network.name == DEFAULT:
                raise NetworkError("bridge is a pre-defined network and cannot be removed")
            users = [a.name for _, a, _ in state.endpoints(network.name)]
            if users:
                raise NetworkError(
                    f"error while removing network {network.name}: it has active endpoints ({', '.join(users)})"
                )
            unplumb(network)
            del state.networks[network.name]
        self.record("destroy", network)
        return network.name

    def prune(self) -> builtins.list[str]:
        from engine.service.attachments import reconcile

        removed = []
        with self.store.locked() as state:
            reconcile(state)
            for network in list(state.networks.values()):
                if network.name != DEFAULT and not state.endpoints(network.name):
                    unplumb(network)
                    del state.networks[network.name]
                    removed.append(network.name)
                    self.record("destroy", network)
        return removed


def ensure_default(state: State) -> Network:
    if DEFAULT not in state.networks:
        state.networks[DEFAULT] = new_network(state, DEFAULT, None, None, False, bridge=DEFAULT_BRIDGE)
    network = state.networks[DEFAULT]
    try:
        plumb(network)
    except BaseException:
        unplumb(network)
        raise
    return network
