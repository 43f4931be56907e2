"""What every handler shares: the registry's services, the repository name, body streaming."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, ParamSpec, TypeVar

from starlette.requests import Request

from registry.errors import NameInvalid
from registry.oci.reference import valid_name
from registry.service.blobs import BlobService
from registry.service.manifests import ManifestService
from registry.service.uploads import UploadService, UploadWriter
from registry.service.upstream_blobs import UpstreamBlobs
from registry.service.upstreams import UpstreamService

T = TypeVar("T")
P = ParamSpec("P")
SMALL_BODY = 1024 * 1024
# A count in a header or query: ASCII digits only (str.isdigit also takes "²", which int()
# refuses), and at most 18 of them, so it fits the database's 64-bit integers.
COUNT = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True)
class Services:
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService
    upstreams: UpstreamService
    upstream_blobs: UpstreamBlobs
    executor: ThreadPoolExecutor
    inline_reads: bool


def services(request: Request) -> Services:
    return request.app.state.services


async def call(request: Request, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking service code on the registry's thread pool (cheaper than anyio's hop)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(services(request).executor, partial(function, *args, **kwargs))


async def read(request: Request, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A one-query read of the index: on SQLite it takes microseconds, less than a thread
    hop, so it runs right here; on a networked database it goes to the pool."""
    if services(request).inline_reads:
        return function(*args, **kwargs)
    return await call(request, function, *args, **kwargs)


def repository(request: Request) -> str:
    name = request.path_params["name"]
    if not valid_name(name):
        raise NameInvalid(detail={"name": name})
    return name


def count(value: str | None) -> int | None:
    """A non-negative decimal number, or None when absent or malformed."""
    return int(value) if value is not None and COUNT.fullmatch(value) else None


def upload_range(offset: int) -> dict[str, str]:
    """The bytes an upload holds, as the spec's (inclusive, unit-less) `Range` header."""
    return {"Range": f"0-{max(offset - 1, 0)}"}


def content_length(request: Request) -> int | None:
    return count(request.headers.get("content-length"))


async def stream_into(request: Request, writer: UploadWriter) -> None:
    """Copy the request body into an upload in batches of the storage's size: while the
    next batch arrives, one thread writes the previous batch and another hashes it."""
    pending: asyncio.Future[Any] | None = None
    batch: list[bytes] = []
    size, limit = 0, writer.batch_size
    try:
        async for chunk in request.stream():
            batch.append(chunk)
            size += len(chunk)
            if size >= limit:
                if pending is not None:
                    await pending
                pending = asyncio.gather(call(request, writer.store, batch), call(request, writer.hash, batch))
                batch, size = [], 0
    finally:
        # Also on a disconnect: what arrived is kept, so the client can resume.
        if pending is not None:
            await pending
        if batch:
            await asyncio.gather(call(request, writer.store, batch), call(request, writer.hash, batch))


def _who(request: Request) -> tuple[str, str, str | None]:
    actor = request.scope.get("berth.user") or "anonymous"
    address = request.app.state.auth.client_address(request)  # a trusted proxy's client, or the peer
    return actor, address, request.scope.get("berth.request_id")


def event(request: Request, action: str, name: str, **target: str | None) -> Callable[[], None]:
    """A call that records an event for this request (who, from where, which request)."""
    events = request.app.state.events
    actor, address, request_id = _who(request)
    if action == "pull":
        return partial(events.record_pull, name, actor, address, request_id=request_id, **target)
    return partial(events.record, action, name, actor, address, request_id=request_id, **target)


def event_in_transaction(request: Request, action: str, name: str, **target: str | None) -> Callable[[Any, str], None]:
    """An event the service writes inside the transaction of the change it makes."""
    actor, address, request_id = _who(request)
    return request.app.state.events.in_transaction(action, name, actor, address, request_id=request_id, **target)
