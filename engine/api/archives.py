"""`docker cp`: GET, HEAD and PUT /containers/{id}/archive, over `service/archives.py` in a fresh process.

The process works inside the container's root (chrooted, see the service module); the handler only
streams: the tar out of its stdout (after the JSON line with the path's stat, which becomes the
X-Docker-Container-Path-Stat header), or the request body into its stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

from engine.api.containers import get
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router
from engine.service.archives import MAX_UPLOAD, argv, stat_header

TAR = "application/x-tar"


async def _answer(process: asyncio.subprocess.Process) -> dict[str, Any]:
    """The process's JSON line; its error as dockerd's status and message."""
    assert process.stdout is not None
    line = await process.stdout.readline()
    try:
        doc = json.loads(line)
    except ValueError:
        await process.wait()
        raise ApiError(500, f"the copy failed (exit code {process.returncode})") from None
    if "error" in doc:
        await process.wait()
        raise ApiError(int(doc.get("status", 500)), str(doc["error"]))
    return dict(doc)


def _path(request: Request) -> str:
    path = request.arg("path") or ""
    if not path:
        raise ApiError(400, "Bad parameter: path is required")
    if "\0" in path or len(path) > 4096:
        raise ApiError(400, "Bad parameter: invalid path")
    return path


def register(router: Router) -> None:
    async def fetch(request: Request, key: str) -> Response:
        path = _path(request)
        container = await router.call(get, key)
        op = "stat" if request.method == "HEAD" else "get"
        process = await asyncio.create_subprocess_exec(
            *argv(container.directory, op, path, name=key),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env=os.environ,
        )
        doc = await _answer(process)
        headers = {"X-Docker-Container-Path-Stat": stat_header(doc["stat"])}
        if op == "stat":
            await process.wait()
            return Response(200, headers=headers, content_type=TAR)
        stdout = process.stdout
        assert stdout is not None

        async def body() -> AsyncIterator[bytes]:
            try:
                while chunk := await stdout.read(1 << 20):
                    yield chunk
            finally:
                if process.returncode is None:
                    process.kill()
                await process.wait()

        return Response(200, headers=headers, content_type=TAR, stream=body())

    async def put(request: Request, key: str) -> Response:
        path = _path(request)
        options = {
            "overwrite": not request.flag("noOverwriteDirNonDir"),
            "copy_uid_gid": request.flag("copyUIDGID"),
            "name": key,
        }
        container = await router.call(get, key)
        process = await asyncio.create_subprocess_exec(
            *argv(container.directory, "put", path, **options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=os.environ,
        )
        stdin = process.stdin
        assert stdin is not None
        stdin.transport.set_write_buffer_limits(high=1 << 22)  # fewer, larger pipe writes than the default 64 KiB
        async for piece in request.chunks(MAX_UPLOAD):
            if stdin.is_closing():
                continue  # it stopped reading (an error it will tell): the rest of the body is read and dropped
            try:
                stdin.write(piece)
                await stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                stdin.close()
        if not stdin.is_closing():
            stdin.close()
        await _answer(process)
        await process.wait()
        return Response(200)

    router.add("GET", r"/containers/([^/]{1,300})/archive", fetch)
    router.add("PUT", r"/containers/([^/]{1,300})/archive", put)
