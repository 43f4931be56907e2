"""Blob GETs answered through an upstream: the one fetch streams, everyone else waits for it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from registry.api.base import call, services
from registry.errors import BlobUnknown
from registry.service.upstream_blobs import Busy, Chunk, Fetch, Ready, Relay, Remote

WAIT_SECONDS = 600.0
"""How long a request waits for another's fetch of the same blob (its lease is renewed while it streams)."""


async def fetch_blob(request: Request, name: str, digest: str) -> Response | None:
    """A response for a blob the repository lacks, or None once the blob is local."""
    blobs = services(request).upstream_blobs
    head = request.method == "HEAD"
    deadline = time.monotonic() + WAIT_SECONDS
    delay = 0.02
    while True:
        opened = await call(request, blobs.open, name, digest, head)
        if isinstance(opened, Ready):
            return None
        if isinstance(opened, Remote):
            headers = {"Docker-Content-Digest": digest, "Content-Length": str(opened.size)}
            return Response(status_code=200, headers={**headers, "Content-Type": "application/octet-stream"})
        if isinstance(opened, Fetch):
            headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
            if opened.size is not None:
                headers["Content-Length"] = str(opened.size)
            return StreamingResponse(relayed(opened.body), headers=headers)
        assert isinstance(opened, Busy)
        if time.monotonic() > deadline:
            raise BlobUnknown(
                f"blob {digest} is still being fetched from the upstream; try again", detail={"digest": digest}
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


async def relayed(relay: Relay) -> AsyncIterator[Chunk]:
    """The fetch's chunks as they arrive: those already there at once, and for the next one the
    fetch's thread wakes the event loop (no worker thread waits on the upstream's pace)."""
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    wake = functools.partial(_set_from_thread, loop, arrived)
    try:
        while True:
            arrived.clear()
            chunk = relay.poll(wake)
            if chunk == b"":
                await arrived.wait()
                continue
            if chunk is None:
                return
            yield chunk
    finally:
        relay.close()


def _set_from_thread(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(event.set)
