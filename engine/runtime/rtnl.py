"""A container's start-up wiring over rtnetlink, in the standard library: its namespace and its veth.

This is the one path every `berth run` on a bridge network takes, so it pays no import:
pyroute2 (engine.runtime.netlink, for bridges and deletions) costs more to import than a whole
`--network none` start. Five requests on a raw NETLINK_ROUTE socket, each acknowledged: the
veth pair (its peer created directly in the container's namespace, named and with its MAC),
then, from inside that namespace, `lo` and the peer up, the address, and the default route.
"""

from __future__ import annotations

import _socket
import os
import struct

from engine.runtime import syscalls as sc

_NETLINK_ROUTE = 0
_RTM_NEWLINK, _RTM_NEWADDR, _RTM_NEWROUTE = 16, 20, 24
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_NLMSG_ERROR = 2
_IFF_UP = 0x1
_IFLA_ADDRESS, _IFLA_IFNAME, _IFLA_MASTER, _IFLA_LINKINFO, _IFLA_NET_NS_FD = 1, 3, 10, 18, 28
_IFLA_INFO_KIND, _IFLA_INFO_DATA, _VETH_INFO_PEER = 1, 2, 1
_IFA_ADDRESS, _IFA_LOCAL, _IFA_BROADCAST = 1, 2, 4
_RTA_OIF, _RTA_GATEWAY = 4, 5
_AF_INET = 2
_RT_TABLE_MAIN, _RTPROT_BOOT, _RTN_UNICAST = 254, 3, 1
_IFINFOMSG = "BxHiII"
_CREATE = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL


def _attr(kind: int, data: bytes) -> bytes:
    header = struct.pack("HH", 4 + len(data), kind)
    return header + data + b"\0" * (-len(data) % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _ipv4(address: str) -> bytes:
    return bytes(int(part) for part in address.split("."))


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


class Rtnl:
    """One NETLINK_ROUTE socket, in the network namespace the caller was in when it was made."""

    def __init__(self) -> None:
        self.sock = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, _NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> None:
        """Send one request and wait for its acknowledgement; a refusal raises OSError(errno, what)."""
        self.seq += 1
        self.sock.send(struct.pack("IHHII", 16 + len(body), kind, flags, self.seq, 0) + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type, _, seq, _ = struct.unpack_from("IHHII", data, offset)
                if msg_type == _NLMSG_ERROR and seq == self.seq:
                    code = struct.unpack_from("i", data, offset + 16)[0]
                    if code:
                        raise OSError(-code, f"{what}: {os.strerror(-code)}")
                    return
                offset += (length + 3) & ~3

    def set_up(self, name: str) -> None:
        index = _socket.if_nametoindex(name)
        body = struct.pack(_IFINFOMSG, 0, 0, index, _IFF_UP, _IFF_UP)
        self.request(_RTM_NEWLINK, _NLM_F_REQUEST | _NLM_F_ACK, body, f"set {name} up")

    def add_veth(self, host_name: str, bridge: str, peer: str, peer_mac: str, netns_fd: int) -> None:
        """`host_name` on `bridge` (and up); its peer `peer` made directly in the namespace `netns_fd`."""
        peer_info = struct.pack(_IFINFOMSG, 0, 0, 0, 0, 0) + _attr(_IFLA_IFNAME, _name(peer))
        peer_info += _attr(_IFLA_ADDRESS, _mac(peer_mac)) + _attr(_IFLA_NET_NS_FD, struct.pack("I", netns_fd))
        info = _attr(_IFLA_INFO_KIND, b"veth") + _attr(_IFLA_INFO_DATA, _attr(_VETH_INFO_PEER, peer_info))
        body = struct.pack(_IFINFOMSG, 0, 0, 0, _IFF_UP, _IFF_UP) + _attr(_IFLA_IFNAME, _name(host_name))
        body += _attr(_IFLA_MASTER, struct.pack("I", _socket.if_nametoindex(bridge)))
        body += _attr(_IFLA_LINKINFO, info)
        self.request(_RTM_NEWLINK, _CREATE, body, f"create veth {host_name}")

    def add_address(self, name: str, address: str, prefixlen: int) -> None:
        index = _socket.if_nametoindex(name)
        packed = _ipv4(address)
        host_bits = (1 << (32 - prefixlen)) - 1
        broadcast = (int.from_bytes(packed, "big") | host_bits).to_bytes(4, "big")
        body = struct.pack("BBBBI", _AF_INET, prefixlen, 0, 0, index)
        body += _attr(_IFA_LOCAL, packed) + _attr(_IFA_ADDRESS, packed) + _attr(_IFA_BROADCAST, broadcast)
        self.request(_RTM_NEWADDR, _CREATE, body, f"add {address}/{prefixlen} to {name}")

    def add_default_route(self, name: str, gateway: str) -> None:
        body = struct.pack("BBBBBBBBI", _AF_INET, 0, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, 0, _RTN_UNICAST, 0)
        body += _attr(_RTA_GATEWAY, _ipv4(gateway)) + _attr(_RTA_OIF, struct.pack("I", _socket.if_nametoindex(name)))
        self.request(_RTM_NEWROUTE, _CREATE, body, f"default route via {gateway}")


def new_namespace() -> int:
    """A fresh network namespace, held open by the returned fd; the caller stays in its own."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.unshare(sc.CLONE_NEWNET)
        try:
            return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            sc.setns(own, sc.CLONE_NEWNET)
    finally:
        os.close(own)


def plug(
    netns_fd: int,
    *,
    bridge: str,
    host_name: str,
    ifname: str,
    address: str,
    prefixlen: int,
    mac: str,
    gateway: str | None,
) -> None:
    """A veth pair: `host_name` on the bridge, its peer `ifname` in the namespace with the address
    (and `lo` up); with `gateway`, the namespace's default route goes through it."""
    outside = Rtnl()
    try:
        outside.add_veth(host_name, bridge, ifname, mac, netns_fd)
    finally:
        outside.close()
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        sc.setns(netns_fd, sc.CLONE_NEWNET)
        try:
            inside = Rtnl()
            try:
                inside.set_up("lo")
                inside.add_address(ifname, address, prefixlen)
                inside.set_up(ifname)
                if gateway is not None:
                    inside.add_default_route(ifname, gateway)
            finally:
                inside.close()
        finally:
            sc.setns(own, sc.CLONE_NEWNET)
    finally:
        os.close(own)
