"""`berth build` and `berth system prune` / `berth builder prune`: front doors that only translate.

The build's flags are declared here for click; what they do is `build_front.py`, which the
fast path (`fast.py`) also calls, and the build itself is `engine.service.builds`.
"""

from __future__ import annotations

from typing import Any

import click

from engine.front import ENGINE_FAILED
from engine.front import handled as _handled


@click.command()
@click.option("-t", "--tag", "tags", multiple=True, help="Name the image (repeatable).")
@click.option(
    "-f", "--file", "dockerfile", type=click.Path(dir_okay=False), help="The Dockerfile (default CONTEXT/Dockerfile)."
)
@click.option("--build-arg", multiple=True, help="KEY=VALUE for an ARG (repeatable).")
@click.option("--target", help="Build up to this stage.")
@click.option("--no-cache", is_flag=True, help="Run every step, reuse nothing.")
@click.option("--platform", help="Only this machine's platform (e.g. linux/amd64) is supported.")
@click.option("--push", is_flag=True, help="Push every -t to its registry after building.")
@click.option("--output", "-o", "output", help="Also write the image to oci:DIR or docker-archive:FILE.")
@click.option(
    "--network",
    type=click.Choice(["host", "none", "bridge", "default"]),
    default="default",
    show_default=True,
    help="The network of RUN steps (default: the bridge, as docker build's).",
)
@click.option("--label", multiple=True, help="KEY=VALUE added to the image's labels.")
@click.option("--progress", type=click.Choice(["auto", "plain", "rich", "tty"]), default="auto", show_default=True)
@click.option("--compression", type=click.Choice(["gzip", "zstd"]), default="gzip", show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image digest.")
@click.argument("context", type=click.Path(exists=True, file_okay=False))
def build(**params: Any) -> None:
    """Build an image from a Dockerfile and CONTEXT (a directory)."""
    from engine.build_front import build as build_image

    build_image(**params)


def _prune() -> None:
    from client.layout import berth_root, open_store
    from client.progress import human_size
    from engine.front import stores as _stores
    from engine.service.build_cache import prune
    from engine.service.images import prune_layers

    if not (berth_root() / "images" / "oci-layout").exists():
        click.echo("Total reclaimed space: 0B")
        return
    layout = open_store()
    sizes = {}
    for blob in (layout.root / "blobs" / "sha256").iterdir():
        sizes[f"sha256:{blob.name}"] = blob.stat().st_size
    dropped, removed = prune(layout)
    store, containers = _stores()
    prune_layers(store, {d for c in containers.list() for d in c.spec.layers})
    click.echo(f"Deleted build cache entries: {dropped}")
    click.echo(f"Total reclaimed space: {human_size(sum(sizes.get(d, 0) for d in removed))}")


@click.group()
def system() -> None:
    """Manage berth's local data."""


@system.command("prune")
@click.option("-f", "--force", is_flag=True, help="Do not ask (berth never asks; accepted for docker's scripts).")
@_handled
def system_prune(force: bool) -> None:
    """Remove the build cache, blobs no image uses and unpacked layers nothing needs."""
    _prune()


@click.group()
def builder() -> None:
    """Manage the build cache."""


@builder.command("prune")
@click.option("-f", "--force", is_flag=True, help="Accepted for docker's scripts.")
@_handled
def builder_prune(force: bool) -> None:
    """Remove the build cache (and the blobs only it kept)."""
    _prune()


COMMANDS: list[click.Command] = [build, system, builder]
__all__ = ["COMMANDS", "ENGINE_FAILED"]
