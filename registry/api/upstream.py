"""Blob GETs answered through an upstream: the one fetch streams, everyone else waits for it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from registry.api.base import call, services
from registry.errors import BlobUnknown
from registry.service.upstream_blobs import Busy, Fetch, Ready, Relay, Remote

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
            return StreamingResponse(relayed(request, opened.body), headers=headers)
        assert isinstance(opened, Busy)
        if time.monotonic() > deadline:
            raise BlobUnknown(
                f"blob {digest} is still being fetched from the upstream; try again", detail={"digest": digest}
            )
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.25)


async def relayed(request: Request, relay: Relay) -> AsyncIterator[bytes]:
    """The fetch's chunks as they arrive: those already there without leaving the event loop,
    a wait for the next one in a worker thread."""
    try:
        while True:
            chunk = relay.take(wait=False)
            if chunk == b"":
                chunk = await call(request, relay.take)
            if chunk is None:
                return
            yield chunk
    finally:
        relay.close()
