"""The client's `berth` commands; engine/cli.py adds `COMMANDS` to the root group.

Exit codes are documented in `client.errors`: 2 usage, 3 auth, 4 not found, 5 network,
6 verification, 1 anything else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from client.compress import COMPRESSIONS
from client.errors import UsageError
from client.front import handled as _handled
from client.front import options_of as _options
from client.front import transfer as _transfer

F = TypeVar("F", bound=Callable[..., Any])
EXIT_CODES = "Exit codes: 0 ok, 1 error, 2 usage, 3 auth refused, 4 not found, 5 network, 6 digest/size mismatch."


def _network_options(func: F) -> F:
    func = click.option("--insecure", is_flag=True, help="Allow plain HTTP and unverified TLS.")(func)
    func = click.option(
        "--ca-cert",
        type=click.Path(exists=True, dir_okay=False),
        help="Trust this CA too (besides /etc/docker/certs.d/HOST/*.crt).",
    )(func)
    return func


def _transfer_options(func: F) -> F:
    func = _network_options(func)
    func = click.option(
        "-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Blobs transferred in parallel."
    )(func)
    func = click.option("-q", "--quiet", is_flag=True, help="No progress output.")(func)
    func = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)(func)
    func = click.option("--platform", help="OS/ARCH[/VARIANT] to pick from an index (default: this host).")(func)
    func = click.option("--all-platforms", is_flag=True, help="Keep a multi-platform index whole.")(func)
    return func


def _compression_options(func: F) -> F:
    func = click.option(
        "--preserve-digests",
        is_flag=True,
        help="Send every blob as it is, so the image keeps its digest (no compression).",
    )(func)
    func = click.option(
        "--compression",
        type=click.Choice(COMPRESSIONS),
        help="Compress uncompressed layers sent to a registry with this (default gzip).",
    )(func)
    return func


@click.command(epilog=EXIT_CODES)
@click.argument("reference")
@_transfer_options
def pull(**params: Any) -> None:
    """Pull REFERENCE from its registry into the local store."""
    from client.front import pull as pull_image

    pull_image(**params)


@click.command(epilog=EXIT_CODES)
@click.argument("source")
@click.argument("destination", required=False)
@_transfer_options
@_compression_options
def push(**params: Any) -> None:
    """Push an image from the local store (or any SOURCE, e.g. oci:DIR:TAG) to a registry.

    With one argument, the local image SOURCE goes to the registry it names.
    """
    from client.front import push as push_image

    push_image(**params)


@click.command(epilog=EXIT_CODES)
@click.argument("source")
@click.argument("destination")
@_transfer_options
@_compression_options
@_handled
def copy(source: str, destination: str, **kw: Any) -> None:
    """Copy an image between registries, OCI layouts, docker archives and the local store.

    Registry to registry streams without touching the disk, mounting blobs on the same host.
    """
    _transfer(source, "docker", destination, "docker", kw)


@click.command(epilog=EXIT_CODES)
@click.argument("source")
@click.argument("target")
@_handled
def tag(source: str, target: str) -> None:
    """Give the local image SOURCE another name TARGET."""
    from client.layout import open_store, store_name

    store = open_store(create=False)
    store.add(store.resolve(store_name(source)), store_name(target))


@click.command(epilog=EXIT_CODES)
@click.argument("reference")
@_network_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_handled
def tags(reference: str, fmt: str, **kw: Any) -> None:
    """List the tags of REFERENCE's repository."""
    from client.location import connect
    from client.location import reference as parse_ref

    ref = parse_ref(reference)
    api = connect(ref, _options(**kw))
    names = api.list_tags(ref.repository)
    click.echo(json.dumps(names) if fmt == "json" else "\n".join(names))


@click.command(epilog=EXIT_CODES)
@click.argument("registry")
@_network_options
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_handled
def catalog(registry: str, fmt: str, **kw: Any) -> None:
    """List the repositories of REGISTRY (HOST[:PORT])."""
    from client.location import connect
    from client.location import reference as parse_ref

    api = connect(parse_ref(f"{_host(registry)}/x"), _options(**kw))
    names = api.catalog()
    click.echo(json.dumps(names) if fmt == "json" else "\n".join(names))


@click.command(epilog=EXIT_CODES)
@click.argument("reference")
@click.option("--config", "show_config", is_flag=True, help="Print the image config instead.")
@click.option("--platform", help="OS/ARCH[/VARIANT] for --config on an index (default: this host).")
@_network_options
@_handled
def manifest(reference: str, show_config: bool, platform: str | None, **kw: Any) -> None:
    """Print the raw manifest (or with --config the image config) of REFERENCE, any transport."""
    from client.copy import plan_copy
    from client.location import open_source, parse_location
    from client.platform import parse_platform

    source = open_source(parse_location(reference), _options(**kw))
    try:
        if not show_config:
            data, _ = source.root()
        else:
            _, plan = plan_copy(source, parse_platform(platform) if platform else None, False)
            config = json.loads(plan.manifests[-1][1])["config"]
            data = b"".join(source.open_blob(_descriptor(config)).chunks)
    finally:
        source.close()
    click.echo(data.decode())


def _descriptor(value: dict[str, Any]) -> Any:
    from registry.oci.manifest import Descriptor

    return Descriptor(value["mediaType"], value["digest"], value["size"])


@click.command(epilog=EXIT_CODES)
@click.argument("reference")
@_network_options
@_handled
def delete(reference: str, **kw: Any) -> None:
    """Delete the manifest REFERENCE names from its registry (a tag is resolved to its digest)."""
    from client.errors import NotFound
    from client.location import connect
    from client.location import reference as parse_ref

    ref = parse_ref(reference)
    api = connect(ref, _options(**kw))
    digest = ref.digest
    if digest is None:
        info = api.head_manifest(ref.repository, ref.reference)
        if info is None or not info.digest:
            raise NotFound(f"{ref}: manifest unknown")
        digest = info.digest
    api.delete_manifest(ref.repository, digest)
    click.echo(f"deleted {ref.registry}/{ref.repository}@{digest}")


@click.command(epilog=EXIT_CODES)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@_handled
def images(fmt: str) -> None:
    """List the images in the local store."""
    from client.layout import berth_root, open_store
    from client.progress import human_size

    rows = []
    if (berth_root() / "images" / "oci-layout").exists():
        store = open_store(create=False)
        for entry in store.entries():
            if entry.descriptor.artifact_type:  # not an image (the build cache's entries, say)
                continue
            total = sum(store.reachable([entry.descriptor]).values())
            rows.append((entry.name or "<none>", entry.descriptor, total))
    if fmt == "json":
        click.echo(json.dumps([{"name": n, "imageSize": total, **d.to_json()} for n, d, total in rows]))
        return
    click.echo(f"{'NAME':<60} {'DIGEST':<14} SIZE")
    for name, d, total in rows:
        click.echo(f"{name:<60} {d.digest.split(':')[1][:12]:<14} {human_size(total)}")


def _host(registry: str) -> str:
    host = registry.split("://", 1)[-1].split("/", 1)[0]
    if not host:
        raise UsageError(f"invalid registry {registry!r}")
    return host


@click.command(epilog=EXIT_CODES)
@click.argument("registry", default="docker.io")
@click.option("-u", "--username")
@click.option("-p", "--password", help="Insecure on a shared machine: prefer --password-stdin.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@_network_options
@_handled
def login(registry: str, username: str | None, password: str | None, password_stdin: bool, **kw: Any) -> None:
    """Check credentials against REGISTRY, then store them as docker does."""
    from client.api import RegistryAPI
    from client.credentials import Credentials, store_credentials
    from registry.oci.reference import DOCKER_HUB, DOCKER_HUB_API

    host = _host(registry)
    if password_stdin:
        if password:
            raise UsageError("--password and --password-stdin are exclusive")
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        username = click.prompt("Username")
    if password is None:
        password = click.prompt("Password", hide_input=True)
    api_host = DOCKER_HUB_API if host in (DOCKER_HUB, "index.docker.io") else host
    credentials = Credentials(username, password)
    api = RegistryAPI.connect(api_host, insecure=kw["insecure"], ca_cert=kw["ca_cert"], credentials=credentials)
    try:
        api.ping()
    finally:
        api.close()
    where = store_credentials(host, credentials)
    click.echo(f"Login Succeeded (credentials in {where})")


@click.command(epilog=EXIT_CODES)
@click.argument("registry", default="docker.io")
@_handled
def logout(registry: str) -> None:
    """Forget the credentials stored for REGISTRY."""
    from client.credentials import erase_credentials

    host = _host(registry)
    if erase_credentials(host):
        click.echo(f"Removed login credentials for {host}")
    else:
        click.echo(f"Not logged in to {host}")


COMMANDS: list[click.Command] = [login, logout, pull, push, copy, tag, tags, catalog, manifest, delete, images]
