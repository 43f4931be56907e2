"""Errors as dockerd gives them: `{"message": ...}` with its status, so docker's CLI prints its usual lines.

Handlers raise ApiError; `translate` turns the engine services' exceptions into one (404 for
what does not exist, 409 for name and state conflicts, 400 for bad parameters). Anything else
is a bug and answers 500 with its message.
"""

from __future__ import annotations

from engine.api.http import BadRequest


class ApiError(BadRequest):
    """An answer other than success; unlike a parse failure, the connection stays open."""


def translate(exc: Exception) -> ApiError | None:
    """The API error for a service exception; None when the exception is not one the API knows."""
    from engine.runtime.cgroups import CgroupUnavailable
    from engine.runtime.init import StartError
    from engine.service.containers import ContainerNotFound, ContainerStateError, NameInUse
    from engine.service.images import ImageNotFound, PlatformMismatch
    from engine.service.lifecycle import HostUnsupported
    from engine.service.specs import UsageError

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, StartError):
        # docker's CLI turns "not found" / "permission denied" in this message into 127 / 126
        return ApiError(400 if exc.code in (126, 127) else 500, exc.message)
    if isinstance(exc, ContainerNotFound | ImageNotFound):
        return ApiError(404, str(exc).strip("'\""))
    if isinstance(exc, NameInUse | ContainerStateError):
        return ApiError(409, str(exc).strip("'\""))
    if isinstance(exc, UsageError | PlatformMismatch):
        return ApiError(400, str(exc).strip("'\""))
    if type(exc).__module__ in ("engine.service.networks", "engine.service.ports", "engine.service.names"):
        return ApiError(404 if isinstance(exc, LookupError) else 400, str(exc).strip("'\""))
    if isinstance(exc, HostUnsupported | CgroupUnavailable):
        return ApiError(500, str(exc))
    return None
