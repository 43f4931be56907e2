"""Rendering errors as the spec's JSON body, for every failure path."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from registry.api.base import upload_range
from registry.errors import RangeInvalid, RegistryError

LOG = logging.getLogger("berth.registry")


def error_response(request: Request, exc: RegistryError) -> Response:
    body = b"" if request.method == "HEAD" else json.dumps({"errors": [exc.to_json()]}).encode()
    headers = {"Content-Type": "application/json", **exc.headers}
    if isinstance(exc, RangeInvalid) and exc.offset is not None:
        headers.update(upload_range(exc.offset))
    if request.method == "HEAD":
        headers["Content-Length"] = "0"
    return Response(body, status_code=exc.status, headers=headers)


async def registry_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RegistryError)
    return error_response(request, exc)


async def body_stopped(request: Request, exc: Exception) -> Response:
    """A body that stopped arriving (`BodyTimeout`) or a client that went away: 408, which
    only a client still listening after a timeout will read."""
    body = {"errors": [{"code": "UNKNOWN", "message": "the request body stopped arriving", "detail": None}]}
    return Response(json.dumps(body).encode(), status_code=408, headers={"Content-Type": "application/json"})


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown routes) as spec-shaped errors."""
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "UNSUPPORTED"}.get(exc.status_code, "UNKNOWN")
    body = {"errors": [{"code": code, "message": exc.detail, "detail": None}]}
    return Response(
        b"" if request.method == "HEAD" else json.dumps(body).encode(),
        status_code=exc.status_code,
        headers={"Content-Type": "application/json", **(exc.headers or {})},
    )


async def storage_error(request: Request, exc: Exception) -> Response:
    """An I/O failure underneath (disk, object store): counted, logged, and a 500 in the spec's shape."""
    endpoint = request.scope.get("endpoint")
    request.app.state.metrics.storage_errors.labels(getattr(endpoint, "__name__", "unmatched")).inc()
    LOG.error("storage failure in %s %s", request.method, request.url.path, exc_info=exc)
    body = {"errors": [{"code": "UNKNOWN", "message": "storage failure; try again", "detail": None}]}
    return Response(
        b"" if request.method == "HEAD" else json.dumps(body).encode(),
        status_code=500,
        headers={"Content-Type": "application/json"},
    )
