"""Connecting and disconnecting a container that has not started: only its spec changes.

docker-compose creates a container on its project network, then disconnects and reconnects
it with its service name as an alias before starting it. A berth container joins one network
when it starts (more with `network connect` once it runs), so before start: disconnecting its
network leaves it on `none`, connecting sets the network with its aliases and address.
"""

from __future__ import annotations

from engine.service.containers import Container, ContainerStateError, Status


def connect(container: Container, network: str, aliases: list[str], ip: str | None) -> None:
    from engine.service import names
    from engine.service.networks import NetworkError, check_name

    if container.status is not Status.CREATED:
        raise ContainerStateError(f"container {container.name} is not running")
    spec = container.spec
    if spec.network not in ("none", network):
        raise NetworkError(
            f"container {container.name} will start on network {spec.network}: berth joins one network at start "
            "(connect more once it runs)"
        )
    check_name(network)
    spec.network = network
    spec.aliases = [names.check_hostname(a, "network alias") for a in aliases]
    spec.ip = ip
    container.save()


def disconnect(container: Container, network: str) -> None:
    from engine.service.networks import NetworkError

    if container.status is not Status.CREATED:
        raise ContainerStateError(f"container {container.name} is not running")
    if container.spec.network != network:
        raise NetworkError(f"container {container.name} is not connected to network {network}")
    container.spec.network, container.spec.aliases, container.spec.ip = "none", [], None
    container.save()
