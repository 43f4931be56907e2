"""Links, addresses and routes through netlink (pyroute2): bridges, veth pairs, a container's netns.

Only the network service and the supervisor import this module, and only for bridge networks:
importing pyroute2 costs more than a whole `--network none` start. A container's network
namespace is made here too: the supervisor unshares one, opens a netlink socket inside it (a
socket stays in the namespace it was made in) and returns to its own, so PID 1 later only has to
setns() into a namespace that is already wired.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from engine.runtime import syscalls as sc

_ENOENT = 2
_EEXIST = 17
_ENODEV = 19


class NetlinkFailure(RuntimeError):
    """The kernel refused a link, address or route change."""


@dataclass
class Namespace:
    """A network namespace held open by `fd`, with a netlink socket inside it."""

    fd: int
    inside: IPRoute

    def close(self) -> None:
        self.inside.close()
        os.close(self.fd)


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return _index(ipr, name) is not None


def ensure_bridge(name: str, gateway: str, prefixlen: int) -> None:
    """The bridge `name`, up, holding the gateway address (created or repaired, e.g. after a reboot)."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except NetlinkError as exc:
                if exc.code != _EEXIST:
                    raise NetlinkFailure(f"cannot create bridge {name}: {exc}") from None
            index = _index(ipr, name)
        try:
            ipr.addr("add", index=index, address=gateway, prefixlen=prefixlen)
        except NetlinkError as exc:
            if exc.code != _EEXIST:
                raise NetlinkFailure(f"cannot address bridge {name} as {gateway}/{prefixlen}: {exc}") from None
        ipr.link("set", index=index, state="up")


def delete_link(name: str) -> None:
    """Delete a link (a bridge, or a veth and with it its peer); a missing one is already gone."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            return
        with suppress(NetlinkError):
            ipr.link("del", index=index)


def links(prefix: str) -> list[str]:
    """Names of the links whose name starts with `prefix`."""
    with IPRoute() as ipr:
        names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
    return [n for n in names if n and n.startswith(prefix)]


def new_namespace() -> Namespace:
    """Unshare a fresh network namespace, keep it open, and come back to our own."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.unshare(sc.CLONE_NEWNET)
        fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            inside = IPRoute()
            inside.link("set", index=_index(inside, "lo"), state="up")
        finally:
            sc.setns(own, sc.CLONE_NEWNET)
    finally:
        os.close(own)
    return Namespace(fd, inside)


def open_namespace(pid: int) -> Namespace:
    """The network namespace of a running process, to wire another interface into it."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(fd, sc.CLONE_NEWNET)
        try:
            inside = IPRoute()
        finally:
            sc.setns(own, sc.CLONE_NEWNET)
    except BaseException:
        os.close(fd)
        raise
    finally:
        os.close(own)
    return Namespace(fd, inside)


def plug(
    namespace: Namespace,
    *,
    bridge: str,
    host_name: str,
    ifname: str,
    address: str,
    prefixlen: int,
    mac: str,
    gateway: str | None,
) -> None:
    """A veth pair: `host_name` on the bridge, its peer `ifname` in the namespace with the address.

    With `gateway` the namespace's default route goes through it (a container's first network).
    """
    with IPRoute() as ipr:
        master = _index(ipr, bridge)
        if master is None:
            raise NetlinkFailure(f"bridge {bridge} does not exist")
        try:
            ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": ifname, "net_ns_fd": namespace.fd})
        except NetlinkError as exc:
            raise NetlinkFailure(f"cannot create veth {host_name}: {exc}") from None
        index = _index(ipr, host_name)
        ipr.link("set", index=index, master=master, state="up")
    inside = namespace.inside
    peer = _index(inside, ifname)
    inside.link("set", index=peer, address=mac)
    inside.addr("add", index=peer, address=address, prefixlen=prefixlen)
    inside.link("set", index=peer, state="up")
    if gateway is not None:
        inside.route("add", dst="0.0.0.0/0", gateway=gateway)


def unplug(namespace: Namespace, ifname: str) -> None:
    """Remove `ifname` from the namespace (its host end goes with it)."""
    index = _index(namespace.inside, ifname)
    if index is not None:
        with suppress(NetlinkError):
            namespace.inside.link("del", index=index)


def interfaces(namespace: Namespace) -> list[str]:
    return [link.get_attr("IFLA_IFNAME") for link in namespace.inside.get_links()]
