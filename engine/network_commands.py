"""`berth network create|ls|inspect|rm|connect|disconnect|prune`: translate arguments, call the service."""

from __future__ import annotations

import json
from typing import Any

import click

from engine.front import handled as _handled
from engine.front import require_root as _require_root
from engine.front import stores as _stores


def _networks() -> Any:
    from engine.service.networks import Networks
    from engine.service.paths import Paths

    return Networks(Paths.default().networks)


@click.group()
def network() -> None:
    """Manage networks."""


@network.command("create")
@click.option("--subnet", help="IPv4 subnet in CIDR form (default: a free one from the pool).")
@click.option("--gateway", help="The bridge's address (default: the subnet's first).")
@click.option("--internal", is_flag=True, help="No route out of the network.")
@click.option("-d", "--driver", default="bridge", type=click.Choice(["bridge"]), help="Only bridge networks.")
@click.argument("name")
@_handled
def create(name: str, subnet: str | None, gateway: str | None, internal: bool, driver: str) -> None:
    """Create a network on its own Linux bridge."""
    _require_root("berth network create")
    click.echo(_networks().create(name, subnet, gateway, internal).id)


@network.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Only IDs.")
@_handled
def ls(quiet: bool) -> None:
    """List networks (bridge, host and none always exist)."""
    rows = [(n.id[:12], n.name, "bridge", "local") for n in _networks().shown()]
    rows += [("host", "host", "host", "local"), ("none", "none", "null", "local")]
    if quiet:
        for row in rows:
            click.echo(row[0])
        return
    fmt = "{:<14} {:<24} {:<10} {}"
    click.echo(fmt.format("NETWORK ID", "NAME", "DRIVER", "SCOPE"))
    for row in rows:
        click.echo(fmt.format(*row))


@network.command("inspect")
@click.argument("names", nargs=-1, required=True)
@_handled
def inspect(names: tuple[str, ...]) -> None:
    """Show networks as JSON: subnet, gateway, bridge, containers and their addresses."""
    service = _networks()
    click.echo(json.dumps([service.inspect(name) for name in names], indent=2))


@network.command("rm")
@click.argument("names", nargs=-1, required=True)
@_handled
def rm(names: tuple[str, ...]) -> None:
    """Remove networks no container uses."""
    _require_root("berth network rm")
    service = _networks()
    for name in names:
        click.echo(service.remove(name))


@network.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask (berth never asks).")
@_handled
def prune(force: bool) -> None:
    """Remove every user network no container uses."""
    _require_root("berth network prune")
    removed = _networks().prune()
    if removed:
        click.echo("Deleted Networks:")
        for name in removed:
            click.echo(name)


@network.command("connect")
@click.option("--alias", "aliases", multiple=True, help="Another name for the container on this network.")
@click.option("--ip", help="The container's IPv4 address on this network.")
@click.argument("network_name")
@click.argument("container")
@_handled
def connect(network_name: str, container: str, aliases: tuple[str, ...], ip: str | None) -> None:
    """Connect a container to a network (a new interface, eth1 and on, now if it runs and at each start)."""
    _require_root("berth network connect")
    from engine.service import planned_network

    _, containers = _stores()
    planned_network.connect(_networks(), containers.get(container), network_name, list(aliases), ip)


@network.command("disconnect")
@click.argument("network_name")
@click.argument("container")
@_handled
def disconnect(network_name: str, container: str) -> None:
    """Disconnect a container from a network (now if it runs, and for its next starts)."""
    _require_root("berth network disconnect")
    from engine.service import planned_network

    _, containers = _stores()
    planned_network.disconnect(_networks(), containers.get(container), network_name)


COMMANDS: list[click.Command] = [network]
