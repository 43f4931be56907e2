"""A small HTTP/1.1 server on asyncio streams, because the engine API must hijack connections.

Docker's attach and exec answer `101 UPGRADED` and then use the raw connection both ways;
an ASGI server (uvicorn) never hands the socket to the application, so the API runs on
this server instead: it parses a request head and body (Content-Length or chunked, both
bounded), calls the router, and writes a whole body, a chunked stream, or gives the
reader and writer to a hijack callback after the 101.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
MAX_BODY = 16 * 1024 * 1024
REASONS = {
    101: "UPGRADED",
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}

Hijack = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class BadRequest(Exception):
    """The request cannot be parsed; the connection is answered, then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    reader: asyncio.StreamReader
    version: str = ""
    consumed: bool = False

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str, default: bool = False) -> bool:
        """Docker's booleans in a query: 1/true/True; 0/false/False or absent."""
        value = self.arg(name)
        if value is None or value == "":
            return default
        if value.lower() in ("1", "true"):
            return True
        if value.lower() in ("0", "false"):
            return False
        raise BadRequest(400, f"invalid boolean for {name}: {value!r}")

    async def chunks(self, limit: int) -> AsyncIterator[bytes]:
        """The body piece by piece (Content-Length or chunked), never more than `limit` bytes in all."""
        self.consumed = True
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            total = 0
            while True:
                line = await self.reader.readline()
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadRequest(400, "malformed chunk size") from None
                total += size
                if size < 0 or total > limit:
                    raise BadRequest(413, f"request body larger than {limit} bytes")
                if size == 0:
                    while (await self.reader.readline()).strip():
                        pass
                    return
                try:
                    yield await self.reader.readexactly(size)
                    await self.reader.readexactly(2)
                except asyncio.IncompleteReadError:
                    raise BadRequest(400, "the request body ended inside a chunk") from None
        length = self.headers.get("content-length", "0") or "0"
        if not length.isdigit():
            raise BadRequest(400, f"invalid Content-Length: {length[:40]!r}")
        remaining = int(length)
        if remaining > limit:
            raise BadRequest(413, f"request body of {length} bytes is larger than {limit}")
        while remaining:
            piece = await self.reader.read(min(remaining, 1 << 20))
            if not piece:
                raise BadRequest(400, "the request body is shorter than its Content-Length")
            remaining -= len(piece)
            yield piece

    async def body(self, limit: int = MAX_BODY) -> bytes:
        return b"".join([piece async for piece in self.chunks(limit)])

    async def json(self) -> Any:
        data = await self.body()
        if not data.strip():
            return {}
        try:
            return json.loads(data)
        except ValueError as exc:
            raise BadRequest(400, f"invalid JSON body: {exc}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None
    hijack: Hijack | None = None

    @classmethod
    def json(cls, doc: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(doc).encode() + b"\n")


def parse_head(head: bytes, reader: asyncio.StreamReader) -> Request:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise BadRequest(400, "undecodable request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400, "malformed request line")
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        headers[name.lower()] = value.strip()
    if len(headers) > MAX_HEADERS:
        raise BadRequest(431, f"more than {MAX_HEADERS} headers")
    if "content-length" in headers and "transfer-encoding" in headers:
        raise BadRequest(400, "both Content-Length and Transfer-Encoding")
    split = urlsplit(target)
    return Request(method, unquote(split.path), parse_qs(split.query, keep_blank_values=True), headers, reader)


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


Router = Callable[[Request], Awaitable[Response]]


class Server:
    """Serves `router` on connections; `common` headers go on every answer (Api-Version, Server...)."""

    def __init__(self, router: Router, common: dict[str, str]) -> None:
        self.router = router
        self.common = common

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is done."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        except asyncio.LimitOverrunError:
            await self._write(writer, Response.json({"message": "request head too large"}, 431), close=True)
            return False
        try:
            request = parse_head(head[:-4], reader)
            response = await self.router(request)
            if not request.consumed and request.method in ("POST", "PUT"):
                await request.body()
        except BadRequest as exc:
            await self._write(writer, Response.json({"message": exc.message}, exc.status), close=True)
            return False
        keep = request.headers.get("connection", "").lower() != "close" and response.hijack is None
        await self._write(writer, response, close=not keep, head=request.method == "HEAD")
        if response.hijack is not None:
            await response.hijack(reader, writer)
            return False
        return keep

    async def _write(self, writer: asyncio.StreamWriter, response: Response, close: bool, head: bool = False) -> None:
        """The answer; to a HEAD, its head alone (a body there would be read as the next answer)."""
        headers = {**self.common, **response.headers}
        if response.body or response.stream is not None or response.hijack or response.status not in (204, 304):
            headers["Content-Type"] = response.content_type
        if response.hijack is not None:
            if response.status == 101:
                headers.update({"Connection": "Upgrade", "Upgrade": "tcp"})
            writer.write(_head(response.status, headers))
            await writer.drain()
            return
        if close:
            headers["Connection"] = "close"
        if response.stream is None or head:
            if response.status not in (204, 304) and response.stream is None:
                headers["Content-Length"] = str(len(response.body))
            writer.write(_head(response.status, headers) + (b"" if head else response.body))
            await writer.drain()
            return
        headers["Transfer-Encoding"] = "chunked"
        writer.write(_head(response.status, headers))
        await writer.drain()
        async for chunk in response.stream:
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
