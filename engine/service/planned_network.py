"""A container's networks as its spec keeps them, in every state: what `network connect/disconnect` store.

dockerd keeps every network a container is connected to (with its aliases and address) across
stop/start and restart. A berth spec has the network the container was created on (`network`,
`aliases`, `ip`: eth0) and those connected since (`connected`: eth1...), all joined at each
start (`attachments.join`). A running container is wired at once (`attachments.connect`) and its
spec updated; one that is not running only has its spec changed. docker-compose creates a
container on its project network, then disconnects and reconnects it with its service name as an
alias before starting it: disconnecting its only network leaves it on `none`, and connecting then
makes that network its first.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.service.containers import Connection, Container, Spec, Status
from engine.service.networks import DEFAULT, NetworkError, Networks, check_address


def connect(networks: Networks, container: Container, key: str, aliases: list[str], ip: str | None) -> None:
    """Connect `container` to the network `key` (a name or an ID prefix) now if it runs, and from its next start on."""
    from engine.service import attachments, names

    network = networks.resolve(key)
    aliases = [names.check_hostname(a, "network alias") for a in aliases]
    running = container.is_running() and container.pid is not None
    if running:
        attachments.connect(networks, container.id, container.pid or 0, network, aliases, ip)
    elif network == DEFAULT and (ip or aliases):
        raise NetworkError("--ip and --alias are supported on user-defined networks only")
    elif ip is not None:
        if network in ("host", "none"):
            raise NetworkError("--ip is supported on user-defined networks only")
        check_address(networks.get(networks.store.read(), network), ip)  # whether it is free is decided at start
    _store(container, lambda spec: _add(spec, container, network, aliases, ip))


def disconnect(networks: Networks, container: Container, key: str) -> None:
    """Disconnect `container` from the network `key` now if it runs, and for its next starts."""
    from engine.service import attachments

    network = networks.resolve(key)
    running = container.is_running() and container.pid is not None
    if running:
        attachments.disconnect(networks, container.id, network)
    _store(container, lambda spec: _remove(spec, container, network, strict=not running))


def _store(container: Container, change: Callable[[Spec], None]) -> None:
    """Change the spec as it is on disk now (its supervisor may have recorded a transition since `container`
    was read), then save it."""
    fresh = Container.load(container.directory)
    change(fresh.spec)
    fresh.save()
    container.spec = fresh.spec


def _add(spec: Spec, container: Container, network: str, aliases: list[str], ip: str | None) -> None:
    if spec.network == "none" or (spec.network == network and container.status is Status.CREATED):
        spec.network, spec.aliases, spec.ip = network, aliases, ip
        return
    if "host" in (spec.network, network) or network == "none":
        raise NetworkError("container cannot be disconnected from host network or connected to host network")
    if network == spec.network or any(c.network == network for c in spec.connected):
        raise NetworkError(f"endpoint with name {container.name} already exists in network {network}")
    spec.connected.append(Connection(network, aliases, ip))


def _remove(spec: Spec, container: Container, network: str, strict: bool) -> None:
    if spec.network == network:
        first = spec.connected.pop(0) if spec.connected else Connection("none")
        spec.network, spec.aliases, spec.ip = first.network, first.aliases, first.ip
    elif any(c.network == network for c in spec.connected):
        spec.connected = [c for c in spec.connected if c.network != network]
    elif strict:
        raise NetworkError(f"container {container.name} is not connected to network {network}")
