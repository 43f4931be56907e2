"""Bridges and link deletion through netlink (pyroute2): what networks need outside a container's start.

Creating or repairing a network's bridge, and deleting a bridge or a leftover veth, are rare
(network create/rm, the first run after a reboot, reconciliation after a lost supervisor), so
they go through pyroute2. A container's own start-up wiring is engine.runtime.rtnl: importing
pyroute2 alone costs more than a whole `--network none` start.
"""

from __future__ import annotations

from contextlib import suppress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

_EEXIST = 17


class NetlinkFailure(RuntimeError):
    """The kernel refused a link or address change."""


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


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
