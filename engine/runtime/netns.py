"""Network namespace plumbing: `none` (a fresh namespace with only `lo`, up), `host` (none of its own),
or a bridge network, whose namespace the supervisor has wired already (engine.service.attachments).

`lo` is brought up with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls on a throw-away socket: two
system calls through the standard library, where `ip link set lo up` would cost a
fork+exec on every start and pyroute2 a dependency and a netlink round trip. The C
`_socket` module is used directly: `socket.py` builds enums at import, a cost on every run.
"""

from __future__ import annotations

import _socket
import fcntl
import struct

from engine.runtime import syscalls

_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"


def namespace_flags(mode: str) -> int:
    """The unshare(2) flags a container on this network needs (a bridged one enters its own with setns)."""
    return syscalls.CLONE_NEWNET if mode == "none" else 0


def bring_up(interface: str = "lo") -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        request = struct.pack(_IFREQ, interface.encode(), 0)
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack(_IFREQ, interface.encode(), flags | _IFF_UP))
    finally:
        sock.close()


def setup(mode: str) -> None:
    """Configure the namespace the calling process is in (called inside the container)."""
    if mode == "none":
        bring_up("lo")
