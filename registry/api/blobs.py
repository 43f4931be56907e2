"""Blob HEAD, GET (whole or one range) and DELETE."""

from __future__ import annotations

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from registry.api.auth import require
from registry.api.base import call, event, read, repository, services
from registry.api.upstream import fetch_blob
from registry.errors import BlobUnknown, RangeNotSatisfiable
from registry.service.blobs import check_digest


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` range as [start, end), or None for the whole blob."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise RangeNotSatisfiable(f"unsupported range {header!r}", headers={"Content-Range": f"bytes */{size}"})
    first, _, last = spec.strip().partition("-")
    try:
        if first:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
        else:
            start, end = max(size - int(last), 0), size
    except ValueError:
        raise RangeNotSatisfiable(f"invalid range {header!r}", headers={"Content-Range": f"bytes */{size}"}) from None
    if start >= size or start >= end or start < 0:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


async def get_blob(request: Request) -> Response:
    # Canonical, so only validated text is echoed into headers.
    name, digest = repository(request), check_digest(request.path_params["digest"])
    await require(request, name, "pull")
    blobs = services(request).blobs
    try:
        size = await read(request, blobs.size, name, digest)
    except BlobUnknown:
        if not services(request).upstreams.active:
            raise
        fetched = await fetch_blob(request, name, digest)
        if fetched is not None:
            return fetched
        size = await read(request, blobs.size, name, digest)
    headers = {
        "Docker-Content-Digest": digest,
        "Accept-Ranges": "bytes",
        "ETag": f'"{digest}"',
        "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000",
    }
    if request.method == "HEAD":
        return Response(status_code=200, headers={**headers, "Content-Length": str(size)})
    url = blobs.redirect_url(digest)
    if url:
        return RedirectResponse(url, status_code=307, headers={"Docker-Content-Digest": digest})
    byte_range = parse_range(request.headers.get("range"), size)
    start, end = byte_range or (0, size)
    headers["Content-Length"] = str(end - start)
    status = 200
    if byte_range:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    body = iterate_in_threadpool(blobs.read(digest, start, end))
    return StreamingResponse(body, status_code=status, headers=headers)


async def delete_blob(request: Request) -> Response:
    name, digest = repository(request), check_digest(request.path_params["digest"])
    await require(request, name, "delete")
    await call(request, services(request).blobs.delete, name, digest)
    await call(request, event(request, "delete", name, digest=digest, media_type="blob"))
    return Response(status_code=202, headers={"Content-Length": "0"})
