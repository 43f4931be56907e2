"""Exec endpoints: create an exec instance, start it on a hijacked connection, inspect its exit code.

As in dockerd, exec instances live in the service's memory (they mean nothing after a restart);
the process itself runs through `service/exec_process.py` in a fresh process, whose stdout and
stderr arrive as docker's streams 1 and 2.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from dataclasses import dataclass, field
from typing import Any

from engine.api.attach import DEFAULT_DETACH, detach_keys, pump_input, size, until_output_ends
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
    tty: bool = False
    stdin: bool = False
    detach_keys: bytes = DEFAULT_DETACH
    size: tuple[int, int] | None = None
    master: int = -1
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def resize(self, rows: int, columns: int) -> None:
        """Now if the terminal is there, else as soon as it is (the CLI resizes right after start)."""
        from engine.runtime.console import set_size

        self.size = (rows, columns)
        if self.master >= 0:
            set_size(self.master, rows & 0xFFFF, columns & 0xFFFF)

    def to_json(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.tty,
                "entrypoint": self.args[0],
                "arguments": self.args[1:],
                "privileged": False,
                "user": self.user or "",
            },
            "OpenStdin": self.stdin,
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


async def _pump(stream: asyncio.StreamReader, writer: asyncio.StreamWriter | None, number: int | None) -> None:
    """A pipe of the exec process to the client: framed as stream `number`, or raw (None) on a TTY."""
    while chunk := await stream.read(1 << 16):
        if writer is not None:
            writer.write(chunk if number is None else frame(number, chunk))
            await writer.drain()


async def _ready(fd: int, writing: bool = False) -> None:
    """Until `fd` can be read (or written) without blocking."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if writing:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if writing:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


async def _write_all(fd: int, data: bytes) -> None:
    """Into a non-blocking descriptor (the pty master), waiting while it is full."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _ready(fd, writing=True)


def _read_terminal(fd: int) -> bytes | None:
    """What the master holds now: b"" once no process holds the slave, None when nothing is waiting."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


async def _terminal_output(master: int, exited: asyncio.Task[int], writer: asyncio.StreamWriter | None) -> None:
    """The terminal's output until the process has exited and what it left is read (a child it left
    in the background may keep the slave open: the exec is over anyway)."""

    async def emit(data: bytes) -> None:
        if writer is not None:
            writer.write(data)
            await writer.drain()

    while not exited.done():
        readable = asyncio.ensure_future(_ready(master))
        await asyncio.wait({readable, exited}, return_when=asyncio.FIRST_COMPLETED)
        readable.cancel()
        data = _read_terminal(master)
        if data == b"":
            return
        if data:
            await emit(data)
    while data := _read_terminal(master):
        await emit(data)


async def _with_terminal(
    instance: Exec,
    process: asyncio.subprocess.Process,
    console_socket: int,
    reader: asyncio.StreamReader | None,
    writer: asyncio.StreamWriter | None,
) -> None:
    from engine.runtime.console import receive_fd

    assert process.stdout is not None and process.stderr is not None
    try:
        master = await asyncio.get_running_loop().run_in_executor(None, receive_fd, console_socket)
    finally:
        os.close(console_socket)
    messages = asyncio.gather(_pump(process.stdout, writer, None), _pump(process.stderr, writer, None))
    if master is None:  # it failed before it had a terminal: why is on stderr
        await messages
        return
    instance.master = master
    try:
        os.set_blocking(master, False)
        if instance.size is not None:
            instance.resize(*instance.size)

        async def send(data: bytes) -> None:
            if data:
                await _write_all(master, data)

        exited = asyncio.ensure_future(process.wait())
        output = asyncio.ensure_future(asyncio.gather(_terminal_output(master, exited, writer), messages))
        typing = None
        if instance.stdin and reader is not None:
            typing = asyncio.ensure_future(pump_input(reader, send, instance.detach_keys))
        await until_output_ends(output, typing)
    finally:
        instance.master = -1
        os.close(master)


async def _piped(
    instance: Exec,
    process: asyncio.subprocess.Process,
    reader: asyncio.StreamReader | None,
    writer: asyncio.StreamWriter | None,
) -> None:
    assert process.stdout is not None and process.stderr is not None
    stdin = process.stdin

    async def send(data: bytes) -> None:
        assert stdin is not None
        try:
            if data:
                stdin.write(data)
                await stdin.drain()
            else:
                stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            pass

    output = asyncio.ensure_future(asyncio.gather(_pump(process.stdout, writer, 1), _pump(process.stderr, writer, 2)))
    typing = None
    if stdin is not None and reader is not None:
        typing = asyncio.ensure_future(pump_input(reader, send, b""))
    await until_output_ends(output, typing)


async def run(instance: Exec, reader: asyncio.StreamReader | None, writer: asyncio.StreamWriter | None) -> None:
    """Run the exec to its end, its streams on the hijacked connection (none when detached)."""
    from engine.service.exec_process import Request, argv

    ours = theirs = -1
    if instance.tty:
        pair = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours, theirs = pair[0].detach(), pair[1].detach()
    request = Request(
        instance.args,
        instance.env,
        instance.user,
        instance.workdir,
        interactive=instance.stdin and not instance.tty,
        console_fd=theirs,
        console_size=list(instance.size) if instance.size else None,
    )
    command = argv(instance.container.directory, request)
    instance.running = True
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=subprocess.PIPE if instance.stdin and not instance.tty and reader is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ,
            pass_fds=(theirs,) if theirs >= 0 else (),
        )
    except BaseException:
        if ours >= 0:
            os.close(ours)
        raise
    finally:
        if theirs >= 0:
            os.close(theirs)
    instance.pid = process.pid
    try:
        if instance.tty:
            await _with_terminal(instance, process, ours, reader, writer)
        else:
            await _piped(instance, process, reader, writer)
    except ConnectionError:
        pass
    instance.exit_code = await process.wait()
    instance.running = False
    instance.done.set()


def _detach_keys(value: object) -> bytes:
    if value is not None and not isinstance(value, str):
        raise ApiError(400, "DetachKeys must be a string")
    try:
        return detach_keys(value)
    except ApiError:
        raise ApiError(400, f"Invalid escape keys ({str(value)[:100]}) provided") from None


def _console_size(value: object) -> tuple[int, int] | None:
    """ConsoleSize ([rows, columns]) as newer CLIs send it, for the terminal's first moment."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or not all(type(n) is int and 0 <= n <= 0xFFFF for n in value):
        raise ApiError(400, "ConsoleSize must be two numbers of rows and columns from 0 to 65535")
    return (value[0], value[1]) if any(value) else None


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
            tty=bool(body.get("Tty")),
            stdin=bool(body.get("AttachStdin")),
            detach_keys=_detach_keys(body.get("DetachKeys")),
            size=_console_size(body.get("ConsoleSize")),
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
            asyncio.get_running_loop().create_task(run(instance, None, None))
            return Response(200)
        upgrade = request.headers.get("upgrade", "").lower() == "tcp"

        async def hijacked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await run(instance, reader, writer)

        return Response(101 if upgrade else 200, content_type="application/vnd.docker.raw-stream", hijack=hijacked)

    async def resize(request: Request, exec_id: str) -> Response:
        rows, columns = size(request)
        instance = find(exec_id)
        container = await router.call(get, instance.container.id)
        if not container.is_running():
            raise ApiError(409, f"Container {container.id} is not running")
        instance.resize(rows, columns)
        return Response(200)

    async def inspect(request: Request, exec_id: str) -> Response:
        return Response.json(find(exec_id).to_json())

    router.add("POST", r"/containers/([^/]{1,300})/exec", create)
    router.add("POST", r"/exec/([0-9a-f]{1,64})/start", start)
    router.add("POST", r"/exec/([0-9a-f]{1,64})/resize", resize)
    router.add("GET", r"/exec/([0-9a-f]{1,64})/json", inspect)
