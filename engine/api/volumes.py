"""Volume endpoints (`docker volume create/ls/inspect/rm`) over `service/volumes.py`."""

from __future__ import annotations

import time
from typing import Any

from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router
from engine.service.volumes import Volume, VolumeError, VolumeInUse, VolumeNotFound, Volumes


def _volumes() -> Volumes:
    from engine.service.paths import Paths

    return Volumes(Paths.default().volumes)


def to_json(volume: Volume) -> dict[str, Any]:
    return {
        "Name": volume.name,
        "Driver": "local",
        "Mountpoint": str(volume.mountpoint),
        "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(volume.created)),
        "Labels": volume.labels or None,
        "Scope": "local",
        "Options": None,
    }


def _call(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except VolumeNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except VolumeInUse as exc:
        raise ApiError(409, str(exc)) from None
    except VolumeError as exc:
        raise ApiError(400, str(exc)) from None


def _remove(name: str) -> None:
    from engine.service.lifecycle import stores

    _, containers = stores()
    _volumes().remove(name, containers)


def register(router: Router) -> None:
    async def listing(request: Request) -> Response:
        found = await router.call(_call, lambda: _volumes().list())
        return Response.json({"Volumes": [to_json(v) for v in found], "Warnings": None})

    async def create(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the volume config must be a JSON object")
        if (body.get("Driver") or "local") != "local" or body.get("DriverOpts"):
            raise ApiError(501, "berth's engine API implements only the local volume driver, without options")
        labels = body.get("Labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ApiError(400, "Labels must map strings to strings")
        name = body.get("Name") or None
        if name is not None and not isinstance(name, str):
            raise ApiError(400, "Name must be a string")
        volume = await router.call(_call, lambda: _volumes().create(name, labels))
        return Response.json(to_json(volume), 201)

    async def inspect(request: Request, name: str) -> Response:
        return Response.json(to_json(await router.call(_call, lambda: _volumes().get(name))))

    async def remove(request: Request, name: str) -> Response:
        await router.call(_call, _remove, name)
        return Response(204)

    router.add("GET", "/volumes", listing)
    router.add("POST", "/volumes/create", create)
    router.add("GET", r"/volumes/([^/]{1,300})", inspect)
    router.add("DELETE", r"/volumes/([^/]{1,300})", remove)
