"""`GET /events`: docker's event stream, read from the engine's journal (`service/events.py`).

`since` and `until` are what dockerd takes (the CLI turns `10m` or RFC 3339 into them): unix
seconds with an optional fraction. Without `until` the stream sends the history from `since`, then
follows the journal until the client hangs up; with an `until` in the future it stops then, and
with one in the past it sends the history alone. Following polls the journal's size: an append costs
a writer nothing extra, and a reader learns of it within `POLL` seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router, filters, unix_time
from engine.service.events import Cursor, Event, Journal, wanted

POLL = 0.05


def to_json(event: Event) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Type": event.type,
        "Action": event.action,
        "Actor": {"ID": event.id, "Attributes": event.attributes},
        "scope": "local",
        "time": event.time_ns // 1_000_000_000,
        "timeNano": event.time_ns,
    }
    if event.type in ("container", "image"):
        doc.update({"status": event.action, "id": event.id})
    if event.type == "container":
        doc["from"] = event.attributes.get("image", "")
    return doc


def _cursor() -> Cursor:
    from engine.service.paths import Paths

    return Journal.of_root(Paths.default().root).cursor()


def register(router: Router) -> None:
    async def events(request: Request) -> Response:
        since, until = unix_time(request, "since"), unix_time(request, "until")
        if since is not None and until is not None and until < since:
            raise ApiError(
                400, f"`since` time ({request.arg('since')}) cannot be after `until` time ({request.arg('until')})"
            )
        wanted_filters = filters(request, None)  # dockerd ignores names it does not know here
        cursor = await router.call(_cursor)
        history = since is not None or until is not None  # as dockerd: no history unless asked for

        def selected(batch: list[Event]) -> bytes:
            lines = [
                json.dumps(to_json(e)).encode() + b"\n"
                for e in batch
                if (since is None or e.time_ns >= since)
                and (until is None or e.time_ns <= until)
                and wanted(e, wanted_filters)
            ]
            return b"".join(lines)

        async def body() -> AsyncIterator[bytes]:
            try:
                if history:
                    yield selected(cursor.read())
                else:
                    cursor.skip_history()
                while until is None or time.time_ns() <= until:
                    if request.reader.at_eof():  # the client hung up
                        return
                    batch = cursor.read()
                    if batch:
                        yield selected(batch)
                    else:
                        await asyncio.sleep(POLL)
            finally:
                cursor.close()

        return Response(200, stream=body())

    router.add("GET", "/events", events)
