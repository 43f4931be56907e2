"""Every URL of the registry, in one table."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from registry.api import blobs, manifests, observe, tags, token, uploads
from registry.api.auth import require

NAME = "/v2/{name:path}"


async def api_base(request: Request) -> Response:
    await require(request, None, "login")
    return Response(b"{}", headers={"Content-Type": "application/json"})


ROUTES = [
    Route("/v2/", api_base, methods=["GET", "HEAD"]),
    Route("/token", token.token, methods=["GET", "POST"]),
    Route("/healthz", observe.healthz, methods=["GET", "HEAD"]),
    Route("/readyz", observe.readyz, methods=["GET", "HEAD"]),
    Route("/metrics", observe.metrics, methods=["GET"]),
    Route("/v2/_catalog", tags.catalog, methods=["GET"]),
    Route(f"{NAME}/tags/list", tags.list_tags, methods=["GET"]),
    Route(f"{NAME}/manifests/{{reference}}", manifests.get_manifest, methods=["GET", "HEAD"]),
    Route(f"{NAME}/manifests/{{reference}}", manifests.put_manifest, methods=["PUT"]),
    Route(f"{NAME}/manifests/{{reference}}", manifests.delete_manifest, methods=["DELETE"]),
    Route(f"{NAME}/referrers/{{digest}}", manifests.referrers, methods=["GET"]),
    Route(f"{NAME}/blobs/uploads/", uploads.start_upload, methods=["POST"]),
    Route(f"{NAME}/blobs/uploads/{{uuid}}", uploads.upload_status, methods=["GET"]),
    Route(f"{NAME}/blobs/uploads/{{uuid}}", uploads.patch_upload, methods=["PATCH"]),
    Route(f"{NAME}/blobs/uploads/{{uuid}}", uploads.finish_upload, methods=["PUT"]),
    Route(f"{NAME}/blobs/uploads/{{uuid}}", uploads.cancel_upload, methods=["DELETE"]),
    Route(f"{NAME}/blobs/{{digest}}", blobs.get_blob, methods=["GET", "HEAD"]),
    Route(f"{NAME}/blobs/{{digest}}", blobs.delete_blob, methods=["DELETE"]),
]
