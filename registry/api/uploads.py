"""Blob uploads: monolithic, POST then PUT, chunked PATCHes, status, cancel and mounts."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from registry.api.auth import can_pull, require
from registry.api.base import (
    SMALL_BODY,
    call,
    content_length,
    count,
    read,
    repository,
    services,
    stream_into,
    upload_range,
)
from registry.errors import BlobUploadInvalid, RangeInvalid
from registry.service.blobs import check_digest
from registry.service.uploads import UploadWriter


def _session_headers(name: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Docker-Upload-UUID": upload_id,
        "Content-Length": "0",
        **upload_range(offset),
    }


def _created(name: str, digest: str) -> Response:
    return Response(
        status_code=201,
        headers={"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest, "Content-Length": "0"},
    )


def _content_range_start(request: Request) -> int | None:
    """The start of `Content-Range: <start>-<end>`; a malformed header is a 416."""
    value = request.headers.get("content-range")
    if not value:
        return None
    spec = value.removeprefix("bytes ").removeprefix("bytes=").split("/")[0]
    first_text, _, last_text = spec.partition("-")
    first, last = count(first_text), count(last_text)
    if first is None or last is None or last < first:
        raise RangeInvalid(f"invalid Content-Range {value!r}")
    length = content_length(request)
    if length is not None and length != last - first + 1:
        raise RangeInvalid(f"Content-Range {value!r} does not match Content-Length {length}")
    return first


async def _write_body(request: Request, writer: UploadWriter) -> None:
    uploads = services(request).uploads
    try:
        await stream_into(request, writer)
    except ClientDisconnect:
        await call(request, uploads.close, writer)
        raise BlobUploadInvalid("the client disconnected before the body was complete") from None


async def start_upload(request: Request) -> Response:
    name = repository(request)
    principal = await require(request, name, "push")
    svc = services(request)
    await read(request, svc.upstreams.check_push, name)
    params = request.query_params
    mount = params.get("mount")
    if mount:
        readable = can_pull(request, principal)
        mount = check_digest(mount)
        mounted = await call(request, svc.blobs.mount, name, mount, params.get("from"), readable)
        if mounted:
            return _created(name, mount)
    digest = params.get("digest")
    length = content_length(request)
    if digest and length is not None and length <= SMALL_BODY:
        body = await request.body()
        digest = await call(request, svc.uploads.put_whole, name, digest, body, length)
        return _created(name, digest)
    if length:
        await call(request, svc.uploads.check_start, name, length, digest)
    upload_id = svc.uploads.start(name)
    if not digest:
        return Response(status_code=202, headers=_session_headers(name, upload_id, 0))
    writer = await call(request, svc.uploads.open, name, upload_id, None, length, digest)
    try:
        await _write_body(request, writer)
    except BlobUploadInvalid:
        # The client never learnt this session's id, so nothing can resume it: its bytes go now.
        await call(request, svc.uploads.cancel, name, upload_id)
        raise
    digest = await call(request, svc.uploads.complete, writer, digest)
    return _created(name, digest)


async def upload_status(request: Request) -> Response:
    name, upload_id = repository(request), request.path_params["uuid"]
    await require(request, name, "push")
    offset = await call(request, services(request).uploads.offset, name, upload_id)
    return Response(status_code=204, headers=_session_headers(name, upload_id, offset))


async def patch_upload(request: Request) -> Response:
    name, upload_id = repository(request), request.path_params["uuid"]
    await require(request, name, "push")
    uploads = services(request).uploads
    start = _content_range_start(request)
    writer = await call(request, uploads.open, name, upload_id, start, content_length(request))
    await _write_body(request, writer)
    offset = await call(request, uploads.close, writer)
    return Response(status_code=202, headers=_session_headers(name, upload_id, offset))


async def finish_upload(request: Request) -> Response:
    name, upload_id = repository(request), request.path_params["uuid"]
    await require(request, name, "push")
    uploads = services(request).uploads
    digest = request.query_params.get("digest")
    if not digest:
        raise BlobUploadInvalid("the digest query parameter is required to complete an upload")
    start = _content_range_start(request)
    length = content_length(request)
    if length is not None and length <= SMALL_BODY:
        body = await request.body()
        digest = await call(request, uploads.finish_small, name, upload_id, digest, body, start)
        return _created(name, digest)
    writer = await call(request, uploads.open, name, upload_id, start, length)
    await _write_body(request, writer)
    digest = await call(request, uploads.complete, writer, digest)
    return _created(name, digest)


async def cancel_upload(request: Request) -> Response:
    name, upload_id = repository(request), request.path_params["uuid"]
    await require(request, name, "push")
    await call(request, services(request).uploads.cancel, name, upload_id)
    return Response(status_code=204, headers={"Content-Length": "0"})
