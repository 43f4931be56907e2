"""`berth engine serve`: the Docker-compatible engine API as a long-running service.

A separate command module so that `berth run` never imports the API (engine/cli.py loads
this list only when a command it holds is asked for).
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def engine() -> None:
    """The engine as a service: the Docker Engine API for docker, docker-compose and docker-py."""


@engine.command()
@click.option("--socket", "socket_path", default="/run/berth/engine.sock", show_default=True, help="Unix socket.")
@click.option("--group", help="Group that may use the socket (mode 0660, owner root).")
@click.option("--listen", help="Also serve TCP on HOST:PORT (needs --tls-cert, --tls-key and --tls-ca).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), help="Server certificate (PEM).")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="Server private key (PEM).")
@click.option("--tls-ca", type=click.Path(exists=True, dir_okay=False), help="CA that signs client certificates.")
def serve(
    socket_path: str,
    group: str | None,
    listen: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
) -> None:
    """Serve the Docker Engine API (`DOCKER_HOST=unix://SOCKET docker ps`) over the same engine as `berth`."""
    import asyncio
    import logging

    from engine.api import serve as api
    from engine.service.lifecycle import HostUnsupported, require_host

    tls = None
    if listen is not None:
        if not (tls_cert and tls_key and tls_ca):
            raise click.UsageError("--listen needs --tls-cert, --tls-key and --tls-ca: TCP without TLS is refused")
        host, colon, port = listen.rpartition(":")
        if not colon or not port.isdigit() or not 0 < int(port) < 65536:
            raise click.UsageError(f"--listen {listen!r}: expected HOST:PORT")
        tls = api.tls_context(tls_cert, tls_key, tls_ca)
    elif tls_cert or tls_key or tls_ca:
        raise click.UsageError("--tls-cert/--tls-key/--tls-ca only apply with --listen")
    try:
        require_host("berth engine serve")
    except HostUnsupported as exc:
        raise click.ClickException(str(exc)) from None
    if group is not None:
        import grp

        try:
            grp.getgrnam(group)
        except KeyError:
            raise click.UsageError(f"--group {group!r}: no such group") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(api.serve(Path(socket_path), group, listen, tls))


COMMANDS: list[click.Command] = [engine]
