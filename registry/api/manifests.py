"""Manifests by tag or digest, and the referrers of a manifest."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response

from registry.api.auth import can_pull, require
from registry.api.base import call, event, event_in_transaction, read, repository, services
from registry.errors import ManifestInvalid
from registry.oci import mediatypes as mt
from registry.oci.manifest import MAX_MANIFEST_BYTES
from registry.service.blobs import check_digest
from registry.service.manifests import reference_tag


async def get_manifest(request: Request) -> Response:
    name, reference = repository(request), request.path_params["reference"]
    await require(request, name, "pull")
    head = request.method == "HEAD"
    svc, upstream = services(request), None
    if svc.upstreams.active:
        # Within the tag TTL a cached manifest is a read like a local one; only asking the
        # upstream goes to a thread.
        cached = await read(request, svc.upstreams.cached, name, reference, not head)
        if cached is None:
            cached = await call(request, svc.upstreams.manifest, name, reference, not head)
        row, upstream = cached
    else:
        row = await read(request, svc.manifests.get, name, reference, not head)
    if not head:
        tag = reference_tag(reference)
        event(request, "pull", name, digest=row.digest, tag=tag, media_type=row.media_type, upstream=upstream)()
    headers = {
        "Content-Type": row.media_type,
        # The media type is the pusher's choice (say text/html): never let a browser run it.
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Docker-Content-Digest": row.digest,
        "ETag": f'"{row.digest}"',
        "Content-Length": str(row.size),
    }
    return Response(None if head else row.content, headers=headers)


async def put_manifest(request: Request) -> Response:
    name, reference = repository(request), request.path_params["reference"]
    principal = await require(request, name, "push")
    await read(request, services(request).upstreams.check_push, name)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MANIFEST_BYTES:
            raise ManifestInvalid(f"manifest is over the {MAX_MANIFEST_BYTES} byte limit")
    content_type = request.headers.get("content-type")
    tag = reference_tag(reference)
    digest, subject = await call(
        request,
        services(request).manifests.put,
        name,
        reference,
        bytes(body),
        content_type,
        can_pull(request, principal),
        event_in_transaction(request, "push", name, tag=tag, media_type=content_type),
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{digest}",
        "Docker-Content-Digest": digest,
        "Content-Length": "0",
    }
    if subject:
        headers["OCI-Subject"] = subject
    return Response(status_code=201, headers=headers)


async def delete_manifest(request: Request) -> Response:
    name, reference = repository(request), request.path_params["reference"]
    await require(request, name, "delete")
    await call(request, services(request).manifests.delete, name, reference)
    tag = reference_tag(reference)
    target = {"tag": tag} if tag is not None else {"digest": reference}
    await call(request, event(request, "delete", name, **target))
    return Response(status_code=202, headers={"Content-Length": "0"})


async def referrers(request: Request) -> Response:
    name, digest = repository(request), check_digest(request.path_params["digest"])
    await require(request, name, "pull")
    artifact_type = request.query_params.get("artifactType")
    found = await call(request, services(request).manifests.referrers, name, digest, artifact_type)
    index = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": r.media_type,
                "digest": r.digest,
                "size": r.size,
                **({"artifactType": r.artifact_type} if r.artifact_type else {}),
                **({"annotations": r.annotations} if r.annotations else {}),
            }
            for r in found
        ],
    }
    headers = {"Content-Type": mt.OCI_INDEX}
    if artifact_type:
        headers["OCI-Filters-Applied"] = "artifactType"
    return Response(json.dumps(index).encode(), headers=headers)
