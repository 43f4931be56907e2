"""Bounds on what one client can hold: a connection slot, time to send its headers, time
between the chunks of its body.

Without them a few thousand idle sockets take every file descriptor (and `/healthz` stops
answering), and a request that declares 1 GiB and then goes quiet keeps its worker forever.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any
from weakref import WeakKeyDictionary

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

CLOSE = (b"connection", b"close")

Waiting = OrderedDict["GuardedHttpToolsProtocol", None]
# Per server (a worker has one): its connections that wait for a request's headers, longest first.
_waiting: WeakKeyDictionary[ServerState, Waiting] = WeakKeyDictionary()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus: a worker holds at most `max_connections`, and a
    connection must deliver each request's headers within `header_timeout` seconds of
    opening or of the previous response (uvicorn only times out idle keep-alive
    connections, never one that opens and says nothing or trickles its headers).

    A connection beyond the limit takes the slot of the one that has waited longest for
    headers (as Apache's event MPM drops idle keep-alive connections when full), so a flood
    of idle sockets keeps cycling and a client that sends its request at once, a health
    check, is served during the flood rather than after the flood's sockets time out. Only
    when every connection is busy with a request is the new one closed."""

    def __init__(self, *args: Any, max_connections: int, header_timeout: float, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.headers_seen = 0
        self.header_timer: asyncio.TimerHandle | None = None
        self.waiting: Waiting = _waiting.setdefault(self.server_state, OrderedDict())

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            if not self.waiting:
                self.transport.close()
                return
            longest, _ = self.waiting.popitem(last=False)
            longest._disarm()
            longest.transport.close()
        self._arm()

    def on_headers_complete(self) -> None:
        self.headers_seen += 1
        self._disarm()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self.header_timer = self.loop.call_later(self.header_timeout, self._headers_late, self.headers_seen)
        self.waiting[self] = None

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
            self.waiting.pop(self, None)

    def _headers_late(self, seen: int) -> None:
        busy = self.cycle is not None and not self.cycle.response_complete
        if seen == self.headers_seen and not busy and not self.transport.is_closing():
            self.transport.close()


class BodyTimeout:
    """A request body that stops arriving for `seconds` is treated as a disconnect: the
    handler sees `ClientDisconnect` (an upload keeps what arrived and answers 400), and
    the connection is closed after the response."""

    def __init__(self, app: ASGIApp, seconds: float):
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending, timed_out = True, False

        async def timed_receive() -> Message:
            nonlocal pending, timed_out
            if not pending:  # the body is complete: this waits for a disconnect, however long
                return await receive()
            try:
                async with asyncio.timeout(self.seconds):
                    message = await receive()
            except TimeoutError:
                pending, timed_out = False, True
                return {"type": "http.disconnect"}
            pending = message["type"] == "http.request" and message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if timed_out and message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), CLOSE]
            await send(message)

        await self.app(scope, timed_receive, closing_send)
