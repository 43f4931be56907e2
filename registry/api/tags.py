"""Listings answered by the index: a repository's tags and the catalog, paginated."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from registry.api.auth import can_pull, require
from registry.api.base import call, count, read, repository, services
from registry.errors import PaginationInvalid

MAX_LAST = 1024
"""No tag or repository name is longer; a longer `last` is not a cursor we gave out."""


def _page(request: Request) -> tuple[int | None, str | None]:
    text = request.query_params.get("n")
    n = count(text)
    if text is not None and n is None:
        raise PaginationInvalid(detail={"n": text})
    last = request.query_params.get("last") or None
    # PostgreSQL cannot even compare a string holding NUL; no name ever holds one.
    if last is not None and ("\x00" in last or len(last) > MAX_LAST):
        raise PaginationInvalid("last must be a tag or repository name", detail={"last": last[:MAX_LAST]})
    return n, last


def _listing(request: Request, body: dict[str, object], items: list[str], n: int | None) -> Response:
    headers = {"Content-Type": "application/json"}
    if n is not None and n > 0 and len(items) == n:
        query = urlencode({"n": n, "last": items[-1]})
        headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return Response(json.dumps(body).encode(), headers=headers)


async def list_tags(request: Request) -> Response:
    name = repository(request)
    await require(request, name, "pull")
    n, last = _page(request)
    tags = await read(request, services(request).manifests.tags, name, n, last)
    return _listing(request, {"name": name, "tags": tags}, tags, n)


async def catalog(request: Request) -> Response:
    n, last = _page(request)
    principal = await require(request, None, "catalog")
    names = await call(request, services(request).manifests.repositories, n, last, can_pull(request, principal))
    return _listing(request, {"repositories": names}, names, n)
