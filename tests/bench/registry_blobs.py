"""Large-blob throughput: push (monolithic and chunked) and pull over one http.client connection.

The payload lives in memory and is sent with `socket.sendall` of memoryview slices; pulled
bytes land in a preallocated buffer with `readinto`. Digests are computed OUTSIDE the timed
region: before a push (of the payload) and after a pull (of the received buffer, to verify it).
"""

from __future__ import annotations

import hashlib
import http.client
import time
from urllib.parse import urlsplit

from registry_http import Response, UnexpectedResponse

SEND_SLICE = 4 * 1024 * 1024
RECV_SLICE = 4 * 1024 * 1024


class BlobClient:
    def __init__(self, server: str, host: str, port: int):
        self.server = server
        self.host = host
        self.port = port
        self.conn = http.client.HTTPConnection(host, port, timeout=300)

    def close(self) -> None:
        self.conn.close()

    def _send(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: memoryview | bytes = b"",
        expect: tuple[int, ...] = (200,),
    ) -> http.client.HTTPResponse:
        conn = self.conn
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        view = memoryview(body)
        for offset in range(0, len(view), SEND_SLICE):
            conn.sock.sendall(view[offset : offset + SEND_SLICE])
        response = conn.getresponse()
        if response.status not in expect:
            body_text = response.read()
            raise UnexpectedResponse(
                self.server,
                method,
                path,
                headers,
                Response(response.status, {k.lower(): v for k, v in response.getheaders()}, body_text),
                f"status {expect}",
            )
        return response

    def _drain(self, response: http.client.HTTPResponse) -> None:
        response.read()

    @staticmethod
    def _path(location: str) -> str:
        parts = urlsplit(location)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _with_digest(self, location: str, digest: str) -> str:
        path = self._path(location)
        return path + ("&" if "?" in path else "?") + f"digest={digest}"

    def start(self, repo: str) -> str:
        response = self._send("POST", f"/v2/{repo}/blobs/uploads/", {}, expect=(202,))
        self._drain(response)
        location = response.getheader("Location")
        if not location:
            raise UnexpectedResponse(
                self.server,
                "POST",
                f"/v2/{repo}/blobs/uploads/",
                {},
                Response(response.status, dict(response.getheaders()), b""),
                "a Location header",
            )
        return location

    def push_monolithic(self, repo: str, data: memoryview, digest: str) -> float:
        """POST, then one PUT carrying the whole body. Returns the elapsed seconds."""
        started = time.perf_counter()
        location = self.start(repo)
        response = self._send(
            "PUT",
            self._with_digest(location, digest),
            {"Content-Type": "application/octet-stream"},
            data,
            expect=(201,),
        )
        self._drain(response)
        self._check_digest(response, "PUT", digest)
        return time.perf_counter() - started

    def push_chunked(self, repo: str, data: memoryview, digest: str, chunk: int) -> float:
        """POST, PATCHes of `chunk` bytes with Content-Range, then an empty PUT ?digest=."""
        started = time.perf_counter()
        location = self.start(repo)
        for offset in range(0, len(data), chunk):
            piece = data[offset : offset + chunk]
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(piece) - 1}",
            }
            response = self._send("PATCH", self._path(location), headers, piece, expect=(202,))
            self._drain(response)
            location = response.getheader("Location") or location
        response = self._send("PUT", self._with_digest(location, digest), {}, b"", expect=(201,))
        self._drain(response)
        self._check_digest(response, "PUT", digest)
        return time.perf_counter() - started

    def _check_digest(self, response: http.client.HTTPResponse, method: str, digest: str) -> None:
        got = response.getheader("Docker-Content-Digest")
        if got != digest:
            raise UnexpectedResponse(
                self.server,
                method,
                "(upload)",
                {},
                Response(response.status, dict(response.getheaders()), b""),
                f"Docker-Content-Digest: {digest}",
            )

    def pull(self, repo: str, digest: str, size: int, verify: bool = True) -> float:
        """GET the blob into a preallocated buffer; the sha256 check runs after the clock stops."""
        buffer = bytearray(size)
        view = memoryview(buffer)
        started = time.perf_counter()
        response = self._send("GET", f"/v2/{repo}/blobs/{digest}", {}, expect=(200,))
        got = 0
        while got < size:
            n = response.readinto(view[got : got + RECV_SLICE])
            if not n:
                break
            got += n
        rest = response.read()
        elapsed = time.perf_counter() - started
        if got != size or rest:
            raise UnexpectedResponse(
                self.server,
                "GET",
                f"/v2/{repo}/blobs/{digest}",
                {},
                Response(response.status, dict(response.getheaders()), b""),
                f"{size} body bytes",
                f"received {got + len(rest)}",
            )
        if verify and "sha256:" + hashlib.sha256(view).hexdigest() != digest:
            raise UnexpectedResponse(
                self.server,
                "GET",
                f"/v2/{repo}/blobs/{digest}",
                {},
                None,
                "body matching its digest",
                "sha256 of the received bytes differs",
            )
        return elapsed


def push_chunked_alternating(clients: list[BlobClient], repo: str, data: memoryview, digest: str, chunk: int) -> float:
    """POST on the first client, PATCH k on client k mod n, the completing PUT on the next one.

    With two processes sharing one index and one store, no process ever holds the running
    sha256 at the offset it is asked to continue from, so the completing PUT re-hashes the
    whole upload from storage: the slow path of a chunked upload hopping between replicas.
    """
    started = time.perf_counter()
    first = clients[0]
    location = first.start(repo)
    index = 0
    for index, offset in enumerate(range(0, len(data), chunk)):
        client = clients[index % len(clients)]
        piece = data[offset : offset + chunk]
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(piece) - 1}",
        }
        response = client._send("PATCH", client._path(location), headers, piece, expect=(202,))
        client._drain(response)
        location = response.getheader("Location") or location
    last = clients[(index + 1) % len(clients)]
    response = last._send("PUT", last._with_digest(location, digest), {}, b"", expect=(201,))
    last._drain(response)
    last._check_digest(response, "PUT", digest)
    return time.perf_counter() - started
