"""Attach and resize: a container's output, and with a TTY or an open stdin its input, on a hijacked connection.

Output without a TTY follows the container's log (`streams.follow`), each record in docker's
8-byte-header frame of its stream. A container made with a TTY or an open stdin has a relay in
its supervisor (`runtime/relay.py`): attach connects to it once the container has started (the CLI
attaches first), sends the client's input there and, for a TTY, takes the terminal's output from
it raw (docker frames nothing on a TTY), asking for what was written since the attach began: the
relay keeps its latest output, so nothing written before the connection is lost. A relay that
closes having sent nothing may have ended with its container before it read the request: then the
output comes from the log, where the supervisor wrote it too. Docker's detach
keys (ctrl-p ctrl-q unless the request names others) end an attach without touching the container.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from engine.api.containers import get
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router
from engine.api.streams import finished, follow, frames, open_log, unframed
from engine.service import consoles
from engine.service.containers import Container
from engine.service.logs import Reader, Record

CONTROL = ["ctrl-@", *(f"ctrl-{c}" for c in "abcdefghijklmnopqrstuvwxyz"), "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^"]
CONTROL.append("ctrl-_")
DEFAULT_DETACH = b"\x10\x11"
DETACHED = "detached"


def detach_keys(text: str | None) -> bytes:
    """Docker's detach keys ("ctrl-p,ctrl-q", single characters, DEL) as the bytes they type."""
    if not text:
        return DEFAULT_DETACH
    out = bytearray()
    for key in text.split(","):
        if len(key) == 1:
            out += key.encode("latin-1", errors="replace")
        elif key in CONTROL:
            out.append(CONTROL.index(key))
        elif key == "DEL":
            out.append(127)
        else:
            raise ApiError(400, f"Invalid detach keys ({text[:100]}) provided")
    return bytes(out)


class Escape:
    """Docker's escape proxy: the detach sequence is held back while it is being typed, then swallowed."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.held = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """The bytes to pass on, and whether the whole sequence was typed."""
        out = bytearray()
        for byte in data:
            if byte == self.keys[self.held]:
                self.held += 1
                if self.held == len(self.keys):
                    return bytes(out), True
                continue
            out += self.keys[: self.held]
            self.held = 0
            if byte == self.keys[0]:
                self.held = 1
            else:
                out.append(byte)
        return bytes(out), False


async def pump_input(reader: asyncio.StreamReader, send: Callable[[bytes], Awaitable[None]], keys: bytes) -> str:
    """The client's input to `send(data)` (b"" at its end); DETACHED when it typed the detach keys (no
    `keys`: none are looked for, as docker looks for them only on a TTY: piped data may hold them)."""
    escape = Escape(keys) if keys else None
    while True:
        data = await reader.read(1 << 16)
        if not data:
            await send(b"")
            return "ended"
        passed, detached = escape.feed(data) if escape is not None else (data, False)
        if passed:
            await send(passed)
        if detached:
            return DETACHED


async def until_output_ends(output: asyncio.Future[Any], typing: asyncio.Future[str] | None) -> None:
    """Wait for the output to end, or the client to detach; the end of the client's input is no end."""
    waiting: set[asyncio.Future[Any]] = {output} | ({typing} if typing is not None else set())
    try:
        while True:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if output in done:
                output.result()
                return
            assert typing is not None
            if typing.result() == DETACHED:
                return
            waiting = {output}
    finally:
        for task in (output, typing):
            if task is not None and not task.done():
                task.cancel()


async def _connect(router: Router, container: Container, since: float) -> socket.socket | None:
    """The relay's connection once the container runs; None when it finished (by an exit after `since`)."""
    delay = 0.005
    while True:
        sock = await router.call(consoles.connect, container)
        if sock is not None:
            return sock
        if await router.call(finished, container.directory, since):
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


def register(router: Router) -> None:
    async def attach(request: Request, key: str) -> Response:
        container = await router.call(get, key)
        spec = container.spec
        keys = detach_keys(request.arg("detachKeys"))
        stdin = request.flag("stdin") and spec.open_stdin
        streams = {n for n, name in ((1, "stdout"), (2, "stderr")) if request.flag(name)}
        stream = request.flag("stream")
        logs = request.flag("logs")
        fd = await router.call(open_log, container, not logs)
        upgrade = request.headers.get("upgrade", "").lower() == "tcp"
        since = 0.0 if container.is_running() else time.time()
        attached_ns = 0 if logs else time.time_ns()

        def shaped(batch: list[Record]) -> bytes:
            return unframed(batch) if spec.tty else frames(batch)

        async def from_log(writer: asyncio.StreamWriter, keep_following: bool) -> None:
            async for batch in follow(router, Reader(fd, streams), container.directory, keep_following, since):
                if batch:
                    writer.write(shaped(batch))
                    await writer.drain()

        async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await from_log(writer, stream)

        async def relayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = await _connect(router, container, since)
            if sock is None:  # it ran and ended before the relay could be reached: its output is in the log
                await from_log(writer, False)
                return
            relay_reader, relay_writer = await asyncio.open_unix_connection(sock=sock)
            try:

                async def send(data: bytes) -> None:
                    relay_writer.write(consoles.input_message(data) if data else consoles.end_message())
                    await relay_writer.drain()

                async def output() -> None:
                    if not spec.tty:
                        await from_log(writer, True)
                        return
                    relay_writer.write(consoles.output_since(attached_ns))
                    received = 0
                    try:
                        await relay_writer.drain()
                        while chunk := await relay_reader.read(1 << 16):
                            received += len(chunk)
                            if streams:
                                writer.write(chunk)
                                await writer.drain()
                    except ConnectionError:
                        pass
                    if received == 0:
                        # a container that ended as the relay took the connection: it closed before it
                        # read what was asked; the log has the output (nothing, if there was none)
                        await from_log(writer, True)
                    else:
                        os.close(fd)

                typing = asyncio.create_task(pump_input(reader, send, keys if spec.tty else b"")) if stdin else None
                await until_output_ends(asyncio.create_task(output()), typing)
            finally:
                relay_writer.close()

        hijack = relayed if stream and (spec.tty or stdin) else plain
        return Response(101 if upgrade else 200, content_type="application/vnd.docker.raw-stream", hijack=hijack)

    async def resize(request: Request, key: str) -> Response:
        rows, columns = size(request)
        container = await router.call(get, key)
        await router.call(consoles.resize, container, rows, columns)
        return Response(200)

    router.add("POST", r"/containers/([^/]{1,300})/attach", attach)
    router.add("POST", r"/containers/([^/]{1,300})/resize", resize)


def size(request: Request) -> tuple[int, int]:
    """h and w as dockerd parses them (strconv.Atoi: an optional sign and digits, within 64 bits)."""
    out = []
    for name in ("h", "w"):
        text = request.arg(name) or ""
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not digits.isascii() or not digits.isdigit():
            raise ApiError(400, f'strconv.Atoi: parsing "{text[:100]}": invalid syntax')
        if not -(1 << 63) <= int(text) < 1 << 63:
            raise ApiError(400, f'strconv.Atoi: parsing "{text[:100]}": value out of range')
        out.append(int(text))
    return out[0], out[1]
