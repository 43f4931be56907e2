"""The API's one URL table, the version prefix, and the answer for everything not implemented.

Docker's clients put the negotiated version in front of every path (`/v1.41/containers/json`);
a version newer than ours or older than the oldest we speak is refused as dockerd refuses it.
Blocking service calls run in a thread pool (`Handlers.call`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from engine.api.errors import ApiError, translate
from engine.api.http import BadRequest, Request, Response

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
_VERSIONED = re.compile(r"^/v(\d{1,3}\.\d{1,3})(/.*)$")
T = TypeVar("T")
Handler = Callable[..., Awaitable[Response]]
log = logging.getLogger("berth.engine.api")


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


class Router:
    """Routes (method, path pattern) to handlers; the pattern's groups are the handler's arguments."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.pool = ThreadPoolExecutor(64, thread_name_prefix="berth-api")

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(f"^{pattern}$"), handler))

    async def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking service call in the pool; its exceptions come back as they were raised."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, lambda: func(*args, **kwargs))

    async def __call__(self, request: Request) -> Response:
        path = request.path
        match = _VERSIONED.match(path)
        if match:
            version, path = match.groups()
            if _parse_version(version) > _parse_version(API_VERSION):
                return _error(
                    400, f"client version {version} is too new. Maximum supported API version is {API_VERSION}"
                )
            if _parse_version(version) < _parse_version(MIN_API_VERSION):
                return _error(
                    400,
                    f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}, "
                    "please upgrade your client to a newer version",
                )
            request.version = version
        else:
            request.version = API_VERSION
        method = "GET" if request.method == "HEAD" else request.method
        for route_method, pattern, handler in self.routes:
            found = pattern.match(path)
            if found and route_method == method:
                return await self._run(handler, request, found.groups())
        return _error(501, f"berth's engine API does not implement {request.method} {path}")

    async def _run(self, handler: Handler, request: Request, args: tuple[str, ...]) -> Response:
        try:
            return await handler(request, *args)
        except BadRequest as exc:
            if not isinstance(exc, ApiError):
                raise
            return _error(exc.status, exc.message)
        except Exception as exc:
            described = translate(exc)
            if described is None:
                log.exception("%s %s failed", request.method, request.path)
                return _error(500, f"{type(exc).__name__}: {exc}")
            return _error(described.status, described.message)


def _error(status: int, message: str) -> Response:
    return Response.json({"message": message}, status)


def filters(request: Request, known: tuple[str, ...] | None) -> dict[str, list[str]]:
    """The request's `filters` (docker's JSON map), checked against the names an endpoint knows (None: any)."""
    import json

    from engine.service import listing

    text = request.arg("filters") or ""
    try:
        return listing.parse(json.loads(text) if text else None, known)
    except (ValueError, listing.FilterError) as exc:
        raise ApiError(400, f"invalid filters: {exc}") from None


def unix_time(request: Request, name: str) -> int | None:
    """dockerd's `since`/`until` (unix seconds with an optional fraction) in nanoseconds; None when absent."""
    from engine.service.times import BadTime, unix_ns

    text = request.arg(name)
    if not text:
        return None
    try:
        return unix_ns(text)
    except BadTime as exc:
        raise ApiError(400, f"invalid value for {name}: {exc}") from None
