"""HTTP/1.1 for the client on the standard library: keep-alive connections pooled per origin.

The registry API needs little of an HTTP library: requests with headers and a body (bytes, a
form, or a file-like stream with a known length), responses read whole or streamed, redirects.
`requests` cost 86 ms to import (urllib3, charset_normalizer), more than a whole `berth pull`
of an image already present may take; `http.client` is a few milliseconds.
"""

from __future__ import annotations

import http.client
import json
import re
import select
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from client.errors import NetworkError

CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 300.0
BLOCK = 1024 * 1024
"""Bytes per socket write of a streamed body (http.client's default, 8 KiB, costs a Python call per 8 KiB)."""
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_LINK_RE = re.compile(r'<([^>]*)>\s*;\s*rel="?([^";,]+)"?')
TransportErrors = (OSError, http.client.HTTPException)
"""What a broken connection raises (ssl.SSLError is an OSError too)."""


class Response:
    """One response: whole (`content`, `json()`) or streamed (`iter_content`); `close()` ends it.

    The connection goes back to its pool only once the body was read to the end.
    """

    def __init__(self, raw: http.client.HTTPResponse, url: str, method: str, release: Any) -> None:
        self.raw = raw
        self.url = url
        self.method = method
        self.status_code = raw.status
        self.headers = raw.headers
        self._release = release
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                self._content = self.raw.read()
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
            while block := self.raw.read(size):
                yield block
        except TransportErrors as exc:
            raise NetworkError(f"download interrupted: {exc}") from None
        finally:
            self.close()
        if self.raw.length:  # http.client ends a body cut short as if it were complete
            raise NetworkError(f"download interrupted: the connection closed {self.raw.length} bytes early")

    @property
    def links(self) -> dict[str, str]:
        """`Link` header targets by relation (`next` for pagination), as absolute URLs."""
        return {rel: urljoin(self.url, target) for target, rel in _LINK_RE.findall(self.headers.get("Link", ""))}

    def close(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(self.raw.isclosed() and not self.raw.length)


class _Connection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(READ_TIMEOUT)


class _TLSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(READ_TIMEOUT)


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle connection was closed by the server (it is readable: EOF or junk)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class Pool:
    """Idle keep-alive connections per origin; one TLS context for every https origin."""

    def __init__(self, context: Callable[[], ssl.SSLContext], size: int) -> None:
        self._make_context = context
        self._context: ssl.SSLContext | None = None
        self.size = size
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _take(self, origin: tuple[str, str]) -> http.client.HTTPConnection:
        with self._lock:
            idle = self._idle.get(origin, [])
            while idle:
                connection = idle.pop()
                if not _dropped(connection):
                    return connection
                connection.close()
        scheme, netloc = origin
        if scheme == "https":
            with self._lock:
                if self._context is None:
                    self._context = self._make_context()
            return _TLSConnection(netloc, timeout=CONNECT_TIMEOUT, blocksize=BLOCK, context=self._context)
        return _Connection(netloc, timeout=CONNECT_TIMEOUT, blocksize=BLOCK)

    def _give(self, origin: tuple[str, str], connection: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if connection.sock is not None and len(idle) < self.size:
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
        origin = (parts.scheme, parts.netloc)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise NetworkError(f"cannot follow {url!r}")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._take(origin)
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            raw = connection.getresponse()
        except BaseException:
            connection.close()
            raise

        def release(complete: bool) -> None:
            if complete:
                self._give(origin, connection)
            else:
                connection.close()

        return Response(raw, url, method, release)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


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
