"""A small, fast HTTP/1.1 client for the benchmark's multi-request workloads.

Raw asyncio streams on uvloop with keep-alive connections: a request costs a few tens of
microseconds of client CPU, so the servers, not the load generator, set the pace.
Every unexpected response raises `UnexpectedResponse` carrying the request and the
response, so a failure is reported precisely instead of being worked around.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class UnexpectedResponse(Exception):
    def __init__(
        self,
        server: str,
        method: str,
        path: str,
        request_headers: dict[str, str],
        response: Response | None,
        expected: str,
        note: str = "",
    ):
        self.server = server
        self.method = method
        self.path = path
        self.request_headers = request_headers
        self.response = response
        self.expected = expected
        self.note = note
        super().__init__(self.describe())

    def describe(self) -> str:
        req = f"{self.method} {self.path}"
        if self.request_headers:
            req += " " + ", ".join(f"{k}: {v}" for k, v in self.request_headers.items())
        if self.response is None:
            got = "no response"
        else:
            hdrs = ", ".join(f"{k}: {v}" for k, v in self.response.headers.items())
            got = f"{self.response.status} [{hdrs}] {self.response.body[:400]!r}"
        text = f"[{self.server}] {req} -> expected {self.expected}, got {got}"
        return text + (f" ({self.note})" if self.note else "")


class Connection:
    """One keep-alive connection; requests are sequential on it."""

    def __init__(self, server: str, host: str, port: int, auth: dict[str, str] | None = None):
        self.server = server
        self.host = host
        self.port = port
        self.auth = auth or {}  # sent with every request (an Authorization header)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = None

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        expect: tuple[int, ...] = (200,),
    ) -> Response:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        headers = headers or {}
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        for key, value in (self.auth | headers).items():
            head += f"{key}: {value}\r\n"
        if body or method in ("PUT", "POST", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body if len(body) < 65536 else head.encode() + b"\r\n")
        if len(body) >= 65536:
            self.writer.write(body)
        try:
            response = await self._read_response(method == "HEAD")
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            await self.close()
            raise UnexpectedResponse(self.server, method, path, headers, None, f"status {expect}", repr(exc)) from exc
        if response.headers.get("connection", "").lower() == "close":
            await self.close()
        if response.status not in expect:
            raise UnexpectedResponse(self.server, method, path, headers, response, f"status {expect}")
        return response

    async def _read_response(self, head_only: bool) -> Response:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return Response(status, headers, b"")
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            await self.close()
        return Response(status, headers, body)


@dataclass
class RunResult:
    """Outcome of running jobs over a pool of connections."""

    elapsed: float
    count: int
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def run_pool(
    server: str,
    host: str,
    port: int,
    concurrency: int,
    jobs: Iterable[Any],
    job: Callable[[Connection, Any], Awaitable[None]],
    max_failures: int = 5,
) -> RunResult:
    """Run `job(conn, item)` for every item, `concurrency` connections at a time.

    Latency is per item (which may be several requests). After `max_failures` failed items
    the run stops early: a broken endpoint is reported, not hammered.
    """
    items = iter(jobs)
    result = RunResult(0.0, 0)
    stop = False

    async def worker() -> None:
        nonlocal stop
        conn = Connection(server, host, port)
        await conn.open()
        try:
            for item in items:
                if stop:
                    return
                started = time.perf_counter()
                try:
                    await job(conn, item)
                except UnexpectedResponse as exc:
                    result.failures.append(exc.describe())
                    if len(result.failures) >= max_failures:
                        stop = True
                    continue
                result.latencies.append(time.perf_counter() - started)
                result.count += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = time.perf_counter() - started
    return result


def run(coro: Awaitable[Any]) -> Any:
    """Run a coroutine on uvloop (falling back to asyncio's default loop)."""
    try:
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]


async def hammer(
    server: str,
    host: str,
    port: int,
    concurrency: int,
    seconds: float,
    method: str,
    path: str,
    headers: dict[str, str],
    expect: int,
) -> RunResult:
    """The same request over and over on `concurrency` keep-alive connections for `seconds`.

    Used where wrk cannot be (wrk waits for a body after a HEAD response's Content-Length).
    """
    result = RunResult(0.0, 0)
    deadline = time.perf_counter() + seconds
    clock = time.perf_counter

    async def worker() -> None:
        conn = Connection(server, host, port)
        await conn.open()
        latencies = result.latencies
        try:
            while clock() < deadline:
                started = clock()
                try:
                    await conn.request(method, path, headers, expect=(expect,))
                except UnexpectedResponse as exc:
                    result.failures.append(exc.describe())
                    return
                latencies.append(clock() - started)
        finally:
            await conn.close()

    started = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed = clock() - started
    result.count = len(result.latencies)
    return result
