"""Exec endpoints: create an exec instance, start it on a hijacked connection, inspect its exit code.

As in dockerd, exec instances live in the service's memory (they mean nothing after a restart);
the process itself runs through `service/exec_process.py` in a fresh process, whose stdout and
stderr arrive as docker's streams 1 and 2.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass, field
from typing import Any

from engine.api.containers import get
from engine.api.errors import ApiError
from engine.api.http import Request, Response
from engine.api.routes import Router
from engine.api.streams import frame
from engine.service.containers import Container

MAX_EXECS = 1024


@dataclass
class Exec:
    id: str
    container: Container
    args: list[str]
    env: list[str]
    user: str | None
    workdir: str | None
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": False,
                "entrypoint": self.args[0],
                "arguments": self.args[1:],
                "privileged": False,
                "user": self.user or "",
            },
            "OpenStdin": False,
            "OpenStderr": True,
            "OpenStdout": True,
            "CanRemove": False,
            "ContainerID": self.container.id,
            "DetachKeys": "",
            "Pid": self.pid,
        }


def _strings(doc: dict[str, Any], key: str) -> list[str]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key} must be a list of strings")
    return value


async def _pump(stream: asyncio.StreamReader, number: int, writer: asyncio.StreamWriter | None) -> None:
    while chunk := await stream.read(1 << 16):
        if writer is not None:
            writer.write(frame(number, chunk))
            await writer.drain()


async def run(instance: Exec, writer: asyncio.StreamWriter | None) -> None:
    from engine.service.exec_process import argv

    command = argv(instance.container.directory, instance.args, instance.env, instance.user, instance.workdir)
    instance.running = True
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ
    )
    instance.pid = process.pid
    assert process.stdout is not None and process.stderr is not None
    try:
        await asyncio.gather(_pump(process.stdout, 1, writer), _pump(process.stderr, 2, writer))
    except ConnectionError:
        pass
    instance.exit_code = await process.wait()
    instance.running = False
    instance.done.set()


def register(router: Router) -> None:
    execs: dict[str, Exec] = {}

    def find(exec_id: str) -> Exec:
        if exec_id not in execs:
            raise ApiError(404, f"No such exec instance: {exec_id}")
        return execs[exec_id]

    async def create(request: Request, key: str) -> Response:
        body = await request.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the exec config must be a JSON object")
        if body.get("Tty") or body.get("AttachStdin"):
            raise ApiError(501, "berth's engine API does not implement exec with a TTY or stdin (-i, -t) yet")
        args = _strings(body, "Cmd")
        if not args:
            raise ApiError(400, "No exec command specified")
        container = await router.call(get, key)
        if not container.is_running():
            raise ApiError(409, f"Container {container.id} is not running")
        if len(execs) >= MAX_EXECS:
            for old in [k for k, v in execs.items() if v.done.is_set()]:
                del execs[old]
        instance = Exec(
            os.urandom(32).hex(),
            container,
            args,
            _strings(body, "Env"),
            body.get("User") or None,
            body.get("WorkingDir") or None,
        )
        execs[instance.id] = instance
        await router.call(container.record, f"exec_create: {' '.join(args)}", execID=instance.id)
        return Response.json({"Id": instance.id}, 201)

    async def start(request: Request, exec_id: str) -> Response:
        instance = find(exec_id)
        body = await request.json()
        if instance.running or instance.done.is_set():
            raise ApiError(409, f"Error: Exec command {exec_id} has already run")
        if isinstance(body, dict) and body.get("Detach"):
            asyncio.get_running_loop().create_task(run(instance, None))
            return Response(200)
        upgrade = request.headers.get("upgrade", "").lower() == "tcp"

        async def hijacked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await run(instance, writer)

        return Response(101 if upgrade else 200, content_type="application/vnd.docker.raw-stream", hijack=hijacked)

    async def inspect(request: Request, exec_id: str) -> Response:
        return Response.json(find(exec_id).to_json())

    router.add("POST", r"/containers/([^/]{1,300})/exec", create)
    router.add("POST", r"/exec/([0-9a-f]{1,64})/start", start)
    router.add("GET", r"/exec/([0-9a-f]{1,64})/json", inspect)
