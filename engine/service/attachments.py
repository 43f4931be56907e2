"""Containers on networks: joining at start, connect/disconnect while running, leaving, reconciling.

A container's attachment is owned by its supervisor (pid and start time recorded): while that
process lives, the leases, published ports, veths and names stay; once it is gone, whatever
`berth` command takes the network lock next releases them (after `kill -9` of a supervisor, or a
reboot, where the links and rules are already gone and only the records remain).
"""

from __future__ import annotations

import _socket
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.runtime.process import alive
from engine.runtime.process import start_time as process_start_time
from engine.service import names, ports
from engine.service.networks import (
    DEFAULT,
    Attachment,
    Endpoint,
    Network,
    NetworkError,
    NetworkNotFound,
    Networks,
    State,
    allocate,
    link_present,
    mac_for,
    plumb,
    veth_name,
)

if TYPE_CHECKING:
    from engine.runtime.nat import Forward
    from engine.service.containers import Connection, Spec


@dataclass
class Request:
    """What a container asks of its networks (from its spec): the first, with its ports, then those connected since."""

    network: str
    name: str
    hostname: str
    hosts_file: str
    aliases: list[str] = field(default_factory=list)
    ip: str | None = None
    extra_hosts: list[list[str]] = field(default_factory=list)
    publish: list[ports.Publish] = field(default_factory=list)
    connected: list[Connection] = field(default_factory=list)  # the networks of `network connect`: eth1...


@dataclass
class Joined:
    """What the supervisor holds while the container runs: its wired namespace and port reservations."""

    namespace_fd: int
    sockets: list[_socket.socket]
    bindings: list[ports.Binding]

    def release_namespace(self) -> None:
        """After PID 1 has entered the namespace, the supervisor's handle is no longer needed."""
        if self.namespace_fd >= 0:
            os.close(self.namespace_fd)
            self.namespace_fd = -1


def peers(state: State, attachment: Attachment) -> list[tuple[str, list[str]]]:
    """(address, names) of every container on the user networks `attachment` is on, itself included.

    The names are docker's DNS names there: the container's name, its aliases and its short ID.
    """
    joined = {e.network for e in attachment.endpoints if state.networks.get(e.network, None) is not None}
    out = []
    for network in sorted(joined):
        if not state.networks[network].user_defined:
            continue
        for other_id, other, endpoint in state.endpoints(network):
            out.append((endpoint.ip, list(dict.fromkeys([other.name, *endpoint.aliases, other_id[:12]]))))
    return out


def hosts_for(state: State, attachment: Attachment) -> str:
    own = [e.ip for e in attachment.endpoints[:1]]
    extra = [(n, a) for n, a in attachment.extra_hosts]
    return names.hosts_text(attachment.hostname, own, extra, peers(state, attachment))


def refresh_hosts(state: State, networks: set[str]) -> None:
    """Rewrite /etc/hosts of every container on these networks (the user-defined ones: only they list peers)."""
    networks = {n for n in networks if n in state.networks and state.networks[n].user_defined}
    for attachment in state.attachments.values():
        if any(e.network in networks for e in attachment.endpoints):
            names.rewrite(attachment.hosts_file, hosts_for(state, attachment))


def forwards(attachment: Attachment) -> list[Forward]:
    from engine.runtime.nat import Forward

    if not attachment.endpoints:
        return []
    address = attachment.endpoints[0].ip
    return [Forward(b.proto, b.host_ip, b.host_port, address, b.container_port) for b in attachment.ports]


def release(state: State, container_id: str) -> None:
    """Drop a container's records and everything plumbed for them; the NAT elements go first."""
    attachment = state.attachments.pop(container_id, None)
    if attachment is None:
        return
    if attachment.ports:
        from engine.runtime import nat

        nat.remove_forwards(forwards(attachment))
    for endpoint in attachment.endpoints:
        if link_present(endpoint.veth):
            from engine.runtime import netlink

            netlink.delete_link(endpoint.veth)
    refresh_hosts(state, {e.network for e in attachment.endpoints})


def reconcile(state: State) -> list[str]:
    """Release every attachment whose supervisor is gone; returns their container ids."""
    dead = [cid for cid, a in state.attachments.items() if not alive(a.owner_pid, a.owner_start)]
    for cid in dead:
        release(state, cid)
    return dead


def join(networks: Networks, container_id: str, request: Request) -> Joined:
    """Wire a new network namespace for a container about to start, with its address, ports and names.

    Called by the supervisor before it forks PID 1, which then enters the namespace. Port
    conflicts, bad addresses and full subnets are refused here, before anything is created.
    """
    from engine.runtime import rtnl

    wanted = [(request.network, request.aliases, request.ip)] + [
        (c.network, c.aliases, c.ip) for c in request.connected
    ]
    for name, aliases, ip in wanted:
        if name == DEFAULT:
            if ip or aliases:
                raise NetworkError("--ip and --network-alias are supported on user-defined networks only")
            networks.default()  # committed on its own: the bridge outlives this container
    with networks.store.locked() as state:
        reconcile(state)
        joining: list[tuple[Network, Endpoint]] = []
        for n, (name, aliases, ip) in enumerate(wanted):
            try:
                other = networks.get(state, name)
            except NetworkNotFound as exc:
                raise NetworkError(str(exc)) from None  # docker's `run` and `start` fail with 125 here
            plumb(other)
            joining.append((other, _endpoint(state, other, container_id, ip, aliases, f"eth{n}")))
        network = joining[0][0]
        bindings, sockets = ports.reserve(request.publish) if not network.internal else ([], [])
        me = os.getpid()
        attachment = Attachment(
            request.name,
            request.hostname,
            request.hosts_file,
            me,
            process_start_time(me),
            request.extra_hosts,
            bindings,
            [endpoint for _, endpoint in joining],
        )
        state.attachments[container_id] = attachment
        namespace = -1
        try:
            namespace = rtnl.new_namespace()
            for n, (other, endpoint) in enumerate(joining):
                _plug(namespace, other, endpoint, default_route=n == 0 and not other.internal)
            if attachment.ports:
                from engine.runtime import nat  # and subprocess, for nft: only with published ports

                nat.add_forwards(forwards(attachment))
        except BaseException:
            if namespace >= 0:
                os.close(namespace)
            for sock in sockets:
                sock.close()
            release(state, container_id)
            raise
        names.rewrite(request.hosts_file, hosts_for(state, attachment))
        refresh_hosts(state, {other.name for other, _ in joining})
    for other, _ in joining:
        networks.record("connect", other, container_id)
    return Joined(namespace, sockets, bindings)


def leave(networks: Networks, container_id: str) -> None:
    """The container has exited: release its addresses, ports, links and names."""
    with networks.store.locked() as state:
        attachment = state.attachments.get(container_id)
        endpoints = attachment.endpoints if attachment else []
        left = [state.networks[e.network] for e in endpoints if e.network in state.networks]
        release(state, container_id)
    for network in left:
        networks.record("disconnect", network, container_id)


def _endpoint(
    state: State, network: Network, container_id: str, ip: str | None, aliases: list[str], ifname: str
) -> Endpoint:
    for alias in aliases:
        names.check_hostname(alias, "network alias")
    address = allocate(state, network, ip)
    return Endpoint(network.name, address, mac_for(address), ifname, veth_name(container_id, network), aliases)


def _plug(namespace: int, network: Network, endpoint: Endpoint, default_route: bool) -> None:
    import ipaddress

    from engine.runtime import rtnl

    rtnl.plug(
        namespace,
        bridge=network.bridge,
        host_name=endpoint.veth,
        ifname=endpoint.ifname,
        address=endpoint.ip,
        prefixlen=ipaddress.IPv4Network(network.subnet).prefixlen,
        mac=endpoint.mac,
        gateway=network.gateway if default_route else None,
    )


def connect(
    networks: Networks, container_id: str, pid: int, network_name: str, aliases: list[str], ip: str | None
) -> None:
    """Give a running container (PID 1 `pid`) one more interface, on another network."""
    if network_name == DEFAULT:
        networks.default()  # as `run` does: the default bridge exists from its first use on
    with networks.store.locked() as state:
        reconcile(state)
        attachment = state.attachments.get(container_id)
        if attachment is None:
            raise NetworkError("the container is not running on a bridge network (none and host cannot connect)")
        network = networks.get(state, network_name)
        if any(e.network == network.name for e in attachment.endpoints):
            raise NetworkError(f"the container is already connected to network {network.name}")
        if not network.user_defined and (ip or aliases):
            raise NetworkError("--ip and --alias are supported on user-defined networks only")
        plumb(network)
        used = {e.ifname for e in attachment.endpoints}
        ifname = next(f"eth{n}" for n in range(len(used) + 1) if f"eth{n}" not in used)
        endpoint = _endpoint(state, network, container_id, ip, aliases, ifname)
        namespace = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _plug(namespace, network, endpoint, default_route=False)
        finally:
            os.close(namespace)
        attachment.endpoints.append(endpoint)
        refresh_hosts(state, {e.network for e in attachment.endpoints})
    networks.record("connect", network, container_id)


def disconnect(networks: Networks, container_id: str, network_name: str) -> None:
    from engine.runtime import nat, netlink

    with networks.store.locked() as state:
        reconcile(state)
        attachment = state.attachments.get(container_id)
        network = networks.get(state, network_name)
        endpoint = next((e for e in attachment.endpoints if e.network == network.name), None) if attachment else None
        if attachment is None or endpoint is None:
            raise NetworkError(f"the container is not connected to network {network.name}")
        if endpoint is attachment.endpoints[0] and attachment.ports:
            nat.remove_forwards(forwards(attachment))
            attachment.ports = []
        if link_present(endpoint.veth):
            netlink.delete_link(endpoint.veth)  # and with it its peer in the container
        attachment.endpoints.remove(endpoint)
        refresh_hosts(state, {network.name, *(e.network for e in attachment.endpoints)})
        names.rewrite(attachment.hosts_file, hosts_for(state, attachment))
    networks.record("disconnect", network, container_id)


def network_settings(networks: Networks, container_id: str, spec: Spec) -> dict[str, object]:
    """docker inspect's NetworkSettings: published ports and, per network, address, gateway, MAC, aliases.
    A container not running lists the networks it will join, with no address, as dockerd lists them."""
    import ipaddress

    state = networks.store.read()
    attachment = state.attachments.get(container_id)
    if attachment is None:
        planned = [(spec.network, spec.aliases), *((c.network, c.aliases) for c in spec.connected)]
        out = {
            name: {
                "NetworkID": network.id if (network := state.networks.get(name)) else "",
                "IPAddress": "",
                "IPPrefixLen": 0,
                "Gateway": "",
                "MacAddress": "",
                "Aliases": aliases or None,
            }
            for name, aliases in planned
        }
        return {"Ports": {}, "Networks": out, "IPAddress": ""}
    ports: dict[str, list[dict[str, str]] | None] = dict.fromkeys(spec.exposed)
    for b in attachment.ports:  # an exposed port that is not published stays null, as in dockerd's
        key = f"{b.container_port}/{b.proto}"
        ports[key] = [*(ports.get(key) or []), {"HostIp": b.host_ip or "0.0.0.0", "HostPort": str(b.host_port)}]
    out = {}
    for e in attachment.endpoints:
        network = state.networks.get(e.network)
        out[e.network] = {
            "NetworkID": network.id if network else "",
            "IPAddress": e.ip,
            "IPPrefixLen": ipaddress.IPv4Network(network.subnet).prefixlen if network else 0,
            "Gateway": network.gateway if network and not network.internal else "",
            "MacAddress": e.mac,
            "Aliases": e.aliases,
        }
    return {"Ports": ports, "Networks": out, "IPAddress": attachment.endpoints[0].ip if attachment.endpoints else ""}
