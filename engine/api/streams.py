"""Logs, and the log following attach uses (`attach.py`): a container's output as docker's streams.

Without a TTY docker frames output as an 8-byte header (stream 1 stdout / 2 stderr, three zero
bytes, a big-endian length) and the payload. The engine keeps one log per container, records that
say which stream and when (`runtime/output.py`, read by `service/logs.py`), so each record goes out
in the frame of its own stream, and logs can honour since, until, tail and timestamps.

Attach without a TTY hijacks the connection (101) and follows the log from where it ended when the client
attached, until the container has stopped: the CLI attaches before it starts the container, so
the handler creates the log file first and a container that exits at once (even with --rm, which
deletes the file) is still read to the end through the open descriptor.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path

from engine.api.containers import get
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router, unix_time
from engine.service.containers import Container, Status
from engine.service.logs import Reader, Record, seek_tail


def frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(data)) + data


def finished(directory: Path, since: float) -> bool:
    """Stopped (or removed), by an exit after `since` (epoch seconds)."""
    try:
        state = Container.load(directory)
    except FileNotFoundError:
        return True
    return state.status is Status.STOPPED and not state.supervised() and (state.finished_at or 0) >= since


def frames(records: list[Record], timestamps: bool = False) -> bytes:
    """Records as docker's multiplexed stream: one frame per run of records from the same stream."""
    out: list[bytes] = []
    run: list[bytes] = []
    stream = 0
    for record in records:
        if record.stream != stream and run:
            out.append(frame(stream, b"".join(run)))
            run = []
        stream = record.stream
        if timestamps:
            run.append(record.timestamp())
        run.append(record.data)
    if run:
        out.append(frame(stream, b"".join(run)))
    return b"".join(out)


def unframed(records: list[Record], timestamps: bool = False) -> bytes:
    """Records as a terminal's raw stream (a TTY container's: everything arrives as stdout)."""
    if timestamps:
        return b"".join(r.timestamp() + r.data for r in records)
    return b"".join(r.data for r in records)


async def follow(
    router: Router, reader: Reader, directory: Path, keep_following: bool, since: float = 0
) -> AsyncIterator[list[Record]]:
    """The log's records from the reader's offset on; with `keep_following`, until the container
    stops by an exit after `since` (an attach to an exited container waits for its next run) or the
    reader passes its `until`."""
    delay = 0.005
    try:
        while True:
            records = reader.read()
            if records:
                delay = 0.005
                yield records
            if reader.past_until:
                return
            if records:
                continue
            if not keep_following or reader.done():
                return
            if await router.call(finished, directory, since):
                yield reader.read()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)
    finally:
        os.close(reader.fd)


def _tail(text: str | None) -> int | None:
    """dockerd's `tail`: a number of records; anything that is not a non-negative number (`all`, `-5`,
    `abc`) means all of them, as dockerd reads it."""
    if text is None or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


def open_log(container: Container, at_end: bool) -> int:
    fd = os.open(container.log_file, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    if at_end:
        os.lseek(fd, 0, os.SEEK_END)
    return fd


def register(router: Router) -> None:
    async def logs(request: Request, key: str) -> Response:
        streams = {n for n, name in ((1, "stdout"), (2, "stderr")) if request.flag(name)}
        if not streams:
            raise ApiError(400, "Bad parameters: you must choose at least one stream")
        since, until = unix_time(request, "since"), unix_time(request, "until")
        tail = _tail(request.arg("tail"))
        timestamps = request.flag("timestamps")
        container = await router.call(get, key)
        fd = await router.call(open_log, container, False)
        if tail is not None:
            seek_tail(fd, tail)
        reader = Reader(fd, streams, since, until)

        raw = container.spec.tty  # one stream on a terminal: docker sends it unframed

        async def body() -> AsyncIterator[bytes]:
            async for records in follow(router, reader, container.directory, request.flag("follow")):
                yield unframed(records, timestamps) if raw else frames(records, timestamps)

        return Response(200, stream=body(), content_type="application/vnd.docker.raw-stream")

    router.add("GET", r"/containers/([^/]{1,300})/logs", logs)
