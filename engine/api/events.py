"""`GET /events`: docker's event stream, from `service/events.py`'s snapshots four times a second."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router, filters

INTERVAL = 0.25


def _snapshot() -> Any:
    from engine.service.events import observe
    from engine.service.lifecycle import stores

    images, containers = stores()
    return observe(containers, images)


def _wanted(event: Any, filters: dict[str, list[str]]) -> bool:
    checks = {
        "type": lambda v: event.type == v,
        "event": lambda v: event.action == v,
        "container": lambda v: event.type == "container" and (event.id.startswith(v) or event.attributes["name"] == v),
        "image": lambda v: event.attributes.get("image") == v or event.attributes.get("name") == v,
    }
    return all(any(checks[name](v) for v in values) for name, values in filters.items())


def to_json(event: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Type": event.type,
        "Action": event.action,
        "Actor": {"ID": event.id, "Attributes": event.attributes},
        "scope": "local",
        "time": int(event.time),
        "timeNano": int(event.time * 1e9),
    }
    if event.type == "container":
        doc.update({"status": event.action, "id": event.id, "from": event.attributes.get("image", "")})
    return doc


def register(router: Router) -> None:
    async def events(request: Request) -> Response:
        for unsupported in ("since", "until"):
            if request.arg(unsupported):
                raise ApiError(501, f"berth's engine API does not implement events?{unsupported}: it keeps no history")
        wanted = filters(request, ("type", "event", "container", "image"))
        before = await router.call(_snapshot)

        async def body() -> AsyncIterator[bytes]:
            from engine.service.events import changes

            nonlocal before
            while not request.reader.at_eof():  # the client hung up: stop watching
                await asyncio.sleep(INTERVAL)
                after = await router.call(_snapshot)
                for event in changes(before, after):
                    if _wanted(event, wanted):
                        yield json.dumps(to_json(event)).encode() + b"\n"
                before = after

        return Response(200, stream=body())

    router.add("GET", "/events", events)
