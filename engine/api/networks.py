"""Network endpoints (`docker network create/ls/inspect/rm/connect/disconnect/prune`) over `service/networks.py`.

`host` and `none` always exist, as in dockerd; `bridge` is the engine's default network. Service
errors keep their words; statuses are dockerd's (404 unknown, 409 name taken or in use, 400 bad
options).
"""

from __future__ import annotations

from typing import Any

from engine.api.containers import get
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router

BUILTIN = {"host": "host", "none": "null"}


def _service() -> Any:
    from engine.service.networks import Networks
    from engine.service.paths import Paths

    return Networks(Paths.default().networks)


def _docker_shape(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "Scope": "local",
        "EnableIPv6": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Labels": {},
        **doc,
        "IPAM": {"Driver": "default", "Options": None, **doc.get("IPAM", {})},
    }


def _builtin(name: str) -> dict[str, Any]:
    return _docker_shape(
        {"Name": name, "Id": name, "Created": "0001-01-01T00:00:00Z", "Driver": BUILTIN[name], "Internal": False}
        | {"IPAM": {"Config": []}, "Options": {}, "Containers": {}}
    )


def _guard(func: Any, *args: Any) -> Any:
    from engine.service.networks import NetworkError, NetworkNotFound

    try:
        return func(*args)
    except NetworkNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except NetworkError as exc:
        text = str(exc)
        raise ApiError(409 if "already" in text or "active endpoints" in text else 400, text) from None


def _list() -> list[dict[str, Any]]:
    service = _service()
    out = [_docker_shape(service.inspect(n.name)) for n in service.shown()]
    return out + [_builtin(name) for name in BUILTIN]


def _inspect(key: str) -> dict[str, Any]:
    if key in BUILTIN:
        return _builtin(key)
    return _docker_shape(_service().inspect(key))


def _create(body: dict[str, Any]) -> str:
    name = body.get("Name")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "network name must be given")
    if (body.get("Driver") or "bridge") != "bridge":
        raise ApiError(501, f"berth's engine API implements only bridge networks, not {str(body['Driver'])[:40]}")
    if name in BUILTIN:
        raise ApiError(409, f"network with name {name} already exists")
    configs = (body.get("IPAM") or {}).get("Config") or []
    if not isinstance(configs, list) or len(configs) > 1 or not all(isinstance(c, dict) for c in configs):
        raise ApiError(400, "at most one IPAM config (one IPv4 subnet) is supported")
    config = configs[0] if configs else {}
    subnet, gateway = config.get("Subnet") or None, config.get("Gateway") or None
    return _service().create(name, subnet, gateway, bool(body.get("Internal"))).id


def _connect(key: str, body: dict[str, Any], connect: bool) -> None:
    from engine.service import planned_network

    target = get(str(body.get("Container") or ""))
    endpoint = body.get("EndpointConfig") or {}
    aliases = endpoint.get("Aliases") or []
    ip = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise ApiError(400, "Aliases must be a list of strings")
    if connect:
        planned_network.connect(_service(), target, key, aliases, ip)
    else:
        planned_network.disconnect(_service(), target, key)


def register(router: Router) -> None:
    async def listing(request: Request) -> Response:
        return Response.json(await router.call(_guard, _list))

    async def inspect(request: Request, key: str) -> Response:
        return Response.json(await router.call(_guard, _inspect, key))

    async def create(request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the network config must be a JSON object")
        return Response.json({"Id": await router.call(_guard, _create, body), "Warning": ""}, 201)

    async def remove(request: Request, key: str) -> Response:
        if key in BUILTIN:
            raise ApiError(403, f"{key} is a pre-defined network and cannot be removed")
        await router.call(_guard, lambda: _service().remove(key))
        return Response(204)

    async def prune(request: Request) -> Response:
        return Response.json({"NetworksDeleted": await router.call(_guard, lambda: _service().prune())})

    def joining(connect: bool) -> Any:
        async def handler(request: Request, key: str) -> Response:
            body = await request.json()
            if not isinstance(body, dict):
                raise ApiError(400, "the body must be a JSON object")
            await router.call(_guard, _connect, key, body, connect)
            return Response(200)

        return handler

    router.add("GET", "/networks", listing)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", r"/networks/([^/]{1,300})", inspect)
    router.add("DELETE", r"/networks/([^/]{1,300})", remove)
    router.add("POST", r"/networks/([^/]{1,300})/connect", joining(True))
    router.add("POST", r"/networks/([^/]{1,300})/disconnect", joining(False))
