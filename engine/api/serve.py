"""Serving the API: the router with every handler, a unix socket (0660, root:GROUP), optional mutual-TLS TCP.

As dockerd: the unix socket is the default and the only way in without configuration;
TCP needs a certificate, a key and a CA whose certificates clients must present.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import signal
import ssl
from pathlib import Path

from engine.api import (
    archives,
    attach,
    builds,
    containers,
    events,
    execs,
    images,
    networks,
    registry_auth,
    streams,
    system,
    usage,
    volumes,
)
from engine.api.http import MAX_HEAD, Server
from engine.api.routes import API_VERSION, Router
from engine.cli import VERSION

DEFAULT_SOCKET = "/run/berth/engine.sock"
log = logging.getLogger("berth.engine.api")


def make_router() -> Router:
    router = Router()
    system.register(router)
    containers.register(router)
    images.register(router)
    streams.register(router)
    attach.register(router)
    archives.register(router)
    execs.register(router)
    volumes.register(router)
    networks.register(router)
    usage.register(router)
    registry_auth.register(router)
    builds.register(router)
    events.register(router)
    return router


def make_server(router: Router) -> Server:
    common = {
        "Api-Version": API_VERSION,
        "Docker-Experimental": "false",
        "Ostype": "linux",
        "Server": f"Berth/{VERSION} (linux)",
    }
    return Server(router, common)


async def keep_restarting(router: Router) -> None:
    """Start again, about once a second, the exited containers whose restart policy asks for it."""
    from engine.service import restarts
    from engine.service.lifecycle import stores

    starting = True
    while True:
        try:
            _, containers = stores()
            for container in await router.call(restarts.due, containers, starting):
                try:
                    await router.call(restarts.restart, container, starting)
                except Exception as exc:  # noqa: BLE001 - one container's failure must not stop the others
                    log.warning("restarting %s failed: %s", container.name, exc)
        except Exception:  # noqa: BLE001 - the loop outlives any one bad pass
            log.exception("the restart pass failed")
        starting = False
        await asyncio.sleep(1)


def tls_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """Server TLS that requires a client certificate signed by `ca` (dockerd's --tlsverify)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca)
    context.load_cert_chain(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def bind_unix(path: Path, group: str | None) -> None:
    """Fail early if the socket's directory cannot be made or `group` does not exist."""
    if group is not None:
        grp.getgrnam(group)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)


async def serve(socket_path: Path, group: str | None, listen: str | None, tls: ssl.SSLContext | None) -> None:
    router = make_router()
    server = make_server(router)
    bind_unix(socket_path, group)
    socket_path.unlink(missing_ok=True)
    old = os.umask(0o117)
    try:
        unix = await asyncio.start_unix_server(server.connection, str(socket_path), limit=MAX_HEAD)
    finally:
        os.umask(old)
    os.chmod(socket_path, 0o660)
    if group is not None:
        os.chown(socket_path, 0, grp.getgrnam(group).gr_gid)
    servers = [unix]
    if listen is not None:
        host, _, port = listen.rpartition(":")
        servers.append(
            await asyncio.start_server(server.connection, host.strip("[]") or None, int(port), ssl=tls, limit=MAX_HEAD)
        )
    keeper = asyncio.create_task(keep_restarting(router))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("serving the engine API on %s", socket_path)
    await stop.wait()
    keeper.cancel()
    for s in servers:
        s.close()
    socket_path.unlink(missing_ok=True)
