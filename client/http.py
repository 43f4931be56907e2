"""HTTP/1.1 for the client on sockets: keep-alive connections pooled per origin.

The registry API needs little of an HTTP library: requests with headers and a body (bytes, a
form, or a file-like stream with a known length), responses read whole or streamed (fixed
length, chunked, or until close), redirects. `requests` cost 86 ms to import (urllib3,
charset_normalizer), and even `http.client` pulls in the `email` package (about 12 ms) to
parse headers, which is most of what a `berth pull` of an image already present may take.
Status line and headers are bounded in length and count, so a hostile server cannot make us
buffer without end.
"""

from __future__ import annotations

import json
import re
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any
from urllib.parse import urlencode, urljoin, urlsplit

from client.errors import NetworkError

CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 300.0
BLOCK = 1024 * 1024
"""Bytes per socket write of a streamed body."""
MAX_LINE = 65536
MAX_HEADERS = 200
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LINK_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')


class BadResponse(ConnectionError):
    """The server's answer is not HTTP/1.x as we can read it, or ended early."""


TransportErrors = (OSError,)
"""What a broken or garbled exchange raises (ssl.SSLError and BadResponse are OSErrors too)."""


class Headers:
    """Response headers by case-insensitive name; repeated fields joined with ", "."""

    def __init__(self) -> None:
        self._fields: dict[str, str] = {}

    def add(self, name: str, value: str) -> None:
        key = name.lower()
        self._fields[key] = f"{self._fields[key]}, {value}" if key in self._fields else value

    def get(self, name: str, default: Any = None) -> Any:
        """The field's value (str), or `default`."""
        return self._fields.get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields


class _Connection:
    """One socket to one origin, with a buffered reader for responses."""

    def __init__(self, scheme: str, host: str, port: int, context: Callable[[], ssl.SSLContext]) -> None:
        # getaddrinfo encodes a str host with the idna codec (and imports it); ASCII bytes skip that.
        address = host.encode("ascii") if host.isascii() else host
        sock = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)  # type: ignore[arg-type]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = context().wrap_socket(sock, server_hostname=host)
            sock.settimeout(READ_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.reader: IO[bytes] = sock.makefile("rb", buffering=65536)  # type: ignore[assignment]

    def idle_and_open(self) -> bool:
        """An idle connection the server has not closed (nothing, not even EOF, is readable)."""
        try:
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class _Body:
    """A response body: Content-Length, chunked, or until the server closes."""

    def __init__(self, reader: IO[bytes], length: int | None, chunked: bool) -> None:
        self.reader = reader
        self.length = length
        self.chunked = chunked
        self.done = length == 0
        self._chunk_left = 0

    def read(self, amt: int | None = None) -> bytes:
        if amt is None:
            return b"".join(iter(lambda: self.read(BLOCK), b""))
        if self.done:
            return b""
        if self.chunked:
            return self._read_chunked(amt)
        if self.length is None:
            data = self.reader.read(amt)
            self.done = not data
            return data
        data = self.reader.read(min(amt, self.length))
        if not data:
            raise BadResponse(f"the connection closed {self.length} bytes before the body's end")
        self.length -= len(data)
        self.done = self.length == 0
        return data

    def _read_chunked(self, amt: int) -> bytes:
        if self._chunk_left == 0:
            line = _line(self.reader)
            try:
                self._chunk_left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BadResponse(f"bad chunk size {line[:40]!r}") from None
            if self._chunk_left < 0:
                raise BadResponse("negative chunk size")
            if self._chunk_left == 0:
                while _line(self.reader) not in (b"\r\n", b"\n"):
                    pass  # trailer fields
                self.done = True
                return b""
        data = self.reader.read(min(amt, self._chunk_left))
        if not data:
            raise BadResponse("the connection closed inside a chunk")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and _line(self.reader) not in (b"\r\n", b"\n"):
            raise BadResponse("a chunk does not end with CRLF")
        return data


def _line(reader: IO[bytes]) -> bytes:
    line = reader.readline(MAX_LINE + 1)
    if not line:
        raise BadResponse("the connection closed before the response's end")
    if len(line) > MAX_LINE:
        raise BadResponse("a status or header line is too long")
    return line


def _read_head(reader: IO[bytes], method: str) -> tuple[int, Headers, _Body, bool]:
    """Status, headers, body and whether the connection closes after it (1xx answers skipped)."""
    while True:
        status_line = _line(reader).decode("latin-1")
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise BadResponse(f"not an HTTP/1.x response: {status_line[:80]!r}")
        status = int(rest[:3])
        headers = Headers()
        for _ in range(MAX_HEADERS + 1):
            line = _line(reader)
            if line in (b"\r\n", b"\n"):
                break
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon:
                raise BadResponse(f"bad header line {line[:80]!r}")
            headers.add(name.strip(), value.strip())
        else:
            raise BadResponse(f"more than {MAX_HEADERS} header fields")
        if not 100 <= status < 200:
            break
    connection = (headers.get("Connection") or "").lower()
    closes = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
    if method == "HEAD" or status in (204, 304):
        return status, headers, _Body(reader, 0, False), closes
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return status, headers, _Body(reader, None, True), closes
    length = headers.get("Content-Length")
    if length is not None:
        if not length.isdigit():
            raise BadResponse(f"bad Content-Length {length[:40]!r}")
        return status, headers, _Body(reader, int(length), False), closes
    return status, headers, _Body(reader, None, False), True


class Response:
    """One response: whole (`content`, `json()`) or streamed (`iter_content`); `close()` ends it.

    The connection goes back to its pool only once the body was read to the end.
    """

    def __init__(self, status: int, headers: Headers, body: _Body, url: str, release: Any) -> None:
        self.status_code = status
        self.headers = headers
        self.url = url
        self._body = body
        self._release = release
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                self._content = self._body.read()
            except TransportErrors as exc:
                self.close()
                raise NetworkError(f"reading {self.url}: {exc}") from None
            self.close()
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    def iter_content(self, size: int) -> Iterator[bytes]:
        """The body in pieces; a dropped connection raises NetworkError (the caller may resume)."""
        try:
            while block := self._body.read(size):
                yield block
        except TransportErrors as exc:
            raise NetworkError(f"download interrupted: {exc}") from None
        finally:
            self.close()

    @property
    def links(self) -> dict[str, str]:
        """`Link` header targets by relation (`next` for pagination), as absolute URLs."""
        return {rel: urljoin(self.url, target) for target, rel in _LINK_RE.findall(self.headers.get("Link") or "")}

    def close(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(self._body.done)


class Pool:
    """Idle keep-alive connections per origin; one TLS context, made on first use."""

    def __init__(self, context: Callable[[], ssl.SSLContext], size: int) -> None:
        self._make_context = context
        self._context: ssl.SSLContext | None = None
        self.size = size
        self._idle: dict[tuple[str, str], list[_Connection]] = {}
        self._lock = threading.Lock()

    def _tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = self._make_context()
            return self._context

    def _take(self, scheme: str, netloc: str, host: str, port: int) -> _Connection:
        with self._lock:
            idle = self._idle.get((scheme, netloc), [])
            while idle:
                connection = idle.pop()
                if connection.idle_and_open():
                    return connection
                connection.close()
        return _Connection(scheme, host, port, self._tls)

    def _give(self, origin: tuple[str, str], connection: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self.size:
                idle.append(connection)
                return
        connection.close()

    def send(
        self, method: str, url: str, headers: Mapping[str, str], body: Any, follow: bool, stream: bool
    ) -> Response:
        """One exchange, following redirects when `follow` (303 turns into a GET without a body).

        `headers` may hold Authorization only for `url` itself: redirects start without it,
        since a blob redirected to object storage must never see the registry's credentials.
        """
        for _ in range(10):
            response = self._exchange(method, url, headers, body)
            location = response.headers.get("Location")
            if not (follow and response.status_code in REDIRECTS and location):
                if not stream:
                    response.content  # noqa: B018 -- read it whole and free the connection
                return response
            response.content  # noqa: B018 -- drain so the connection can serve the redirect
            url = urljoin(url, location)
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if response.status_code == 303:
                method, body = "GET", None
        raise NetworkError(f"too many redirects from {url}")

    def _exchange(self, method: str, url: str, headers: Mapping[str, str], body: Any) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NetworkError(f"cannot follow {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise NetworkError(f"bad port in {url!r}") from None
        origin = (parts.scheme, parts.netloc)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._take(parts.scheme, parts.netloc, parts.hostname, port)
        try:
            _send(connection.sock, method, target, parts.netloc, headers, body)
            status, response_headers, response_body, closes = _read_head(connection.reader, method)
        except BaseException:
            connection.close()
            raise

        def release(complete: bool) -> None:
            if complete and not closes:
                self._give(origin, connection)
            else:
                connection.close()

        response = Response(status, response_headers, response_body, url, release)
        if response_body.done:
            response.close()
        return response

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _send(sock: socket.socket, method: str, target: str, host: str, headers: Mapping[str, str], body: Any) -> None:
    """The request head, then the body: bytes in the same write, a stream in BLOCK-sized writes."""
    fields = {"Host": host, **headers}
    if any(c in f"{k}{v}" for k, v in fields.items() for c in "\r\n"):
        raise ValueError("a header holds a line break")
    names = {name.lower() for name in fields}
    if isinstance(body, bytes):
        fields["Content-Length"] = str(len(body))
    elif body is None:
        if method in ("POST", "PUT", "PATCH"):
            fields["Content-Length"] = "0"
    elif "content-length" not in names:
        raise ValueError("a streamed body needs a Content-Length")
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    data = head.encode("latin-1")
    if body is None or isinstance(body, bytes):
        sock.sendall(data + (body or b""))
        return
    sock.sendall(data)
    while block := body.read(BLOCK):
        sock.sendall(block)


def with_params(url: str, params: Mapping[str, Any] | list[tuple[str, str]] | None) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params, doseq=True)


def encode_body(data: Any, headers: dict[str, str]) -> Any:
    """A form (dict) as urlencoded bytes, text as UTF-8; bytes and streams as they are."""
    if isinstance(data, dict):
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return urlencode(data).encode()
    if isinstance(data, str):
        return data.encode()
    return data
