"""Attach and logs: a container's output as docker's streams.

Without a TTY docker frames output as an 8-byte header (stream 1 stdout / 2 stderr, three zero
bytes, a big-endian length) and the payload. The engine keeps one log per container, written by
its supervisor with stdout and stderr together, so both arrive as stdout (stream 1).

Attach hijacks the connection (101) and follows the log from where it ended when the client
attached, until the container has stopped: the CLI attaches before it starts the container, so
the handler creates the log file first and a container that exits at once (even with --rm, which
deletes the file) is still read to the end through the open descriptor.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path

from engine.api.containers import get
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router
from engine.service.containers import Container, Status

STDOUT = 1


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


def _finished(directory: Path, since: float) -> bool:
    """Stopped (or removed), by an exit after `since` (epoch seconds)."""
    try:
        state = Container.load(directory)
    except FileNotFoundError:
        return True
    return state.status is Status.STOPPED and not state.supervised() and (state.finished_at or 0) >= since


async def follow(
    router: Router, fd: int, directory: Path, keep_following: bool, since: float = 0
) -> AsyncIterator[bytes]:
    """The log's bytes from the descriptor's offset on; with `keep_following`, until the container
    stops by an exit after `since` (an attach to an exited container waits for its next run)."""
    delay = 0.005
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if chunk:
                delay = 0.005
                yield chunk
                continue
            if not keep_following:
                return
            if await router.call(_finished, directory, since):
                while chunk := os.read(fd, 1 << 16):
                    yield chunk
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
    finally:
        os.close(fd)


def _tail(fd: int, lines: int) -> None:
    """Move `fd` to the start of the last `lines` lines."""
    size = os.fstat(fd).st_size
    start = size
    wanted = lines + 1
    while start > 0 and wanted > 0:
        step = min(start, 1 << 16)
        start -= step
        block = os.pread(fd, step, start)
        for index in range(len(block) - 1, -1, -1):
            if block[index] == 10 and not (start + index == size - 1):
                wanted -= 1
                if wanted == 0:
                    os.lseek(fd, start + index + 1, os.SEEK_SET)
                    return
    os.lseek(fd, 0, os.SEEK_SET)


def _open_log(container: Container, at_end: bool) -> int:
    fd = os.open(container.log_file, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    if at_end:
        os.lseek(fd, 0, os.SEEK_END)
    return fd


def register(router: Router) -> None:
    async def logs(request: Request, key: str) -> Response:
        for unsupported in ("since", "until"):
            if request.arg(unsupported) not in (None, "", "0"):
                raise ApiError(501, f"berth's engine API does not implement logs?{unsupported}: its logs have no times")
        if request.flag("timestamps"):
            raise ApiError(501, "berth's engine API does not implement logs?timestamps: its logs have no times")
        if not (request.flag("stdout") or request.flag("stderr")):
            raise ApiError(400, "Bad parameters: you must choose at least one stream")
        tail = request.arg("tail") or "all"
        if tail != "all" and (not tail.isdigit() or len(tail) > 9):
            raise ApiError(400, f"invalid tail {tail[:40]!r}")
        container = await router.call(get, key)
        fd = await router.call(_open_log, container, False)
        if tail != "all":
            _tail(fd, int(tail))

        async def body() -> AsyncIterator[bytes]:
            async for chunk in follow(router, fd, container.directory, request.flag("follow")):
                yield frame(STDOUT, chunk)

        return Response(200, stream=body(), content_type="application/vnd.docker.raw-stream")

    async def attach(request: Request, key: str) -> Response:
        if request.flag("stdin"):
            raise ApiError(501, "berth's engine API does not implement attaching stdin yet")
        container = await router.call(get, key)
        wanted = request.flag("stdout") or request.flag("stderr")
        fd = await router.call(_open_log, container, not request.flag("logs"))
        upgrade = request.headers.get("upgrade", "").lower() == "tcp"

        since = 0.0 if container.is_running() else time.time()

        async def hijacked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async for chunk in follow(router, fd, container.directory, request.flag("stream"), since):
                if wanted:
                    writer.write(frame(STDOUT, chunk))
                    await writer.drain()

        return Response(101 if upgrade else 200, content_type="application/vnd.docker.raw-stream", hijack=hijacked)

    router.add("GET", r"/containers/([^/]{1,300})/logs", logs)
    router.add("POST", r"/containers/([^/]{1,300})/attach", attach)
