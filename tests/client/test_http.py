"""The client's HTTP/1.1 on sockets: framing, keep-alive, and servers that send garbage or lie.

A raw socket server plays each answer byte for byte, so a response can be malformed in ways
no HTTP library would produce.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
from collections.abc import Callable

import pytest

from client.errors import NetworkError
from client.http import BLOCK, MAX_HEADERS, MAX_LINE, BadResponse, Pool

Answer = Callable[[bytes], bytes]
"""Given the request (head and body), the bytes to send back."""


class RawServer:
    """Accepts connections on loopback and answers every request with `answer(request)`;
    with `close`, hangs up after each answer (so a reader waiting for more sees the end)."""

    def __init__(self, answer: Answer, close: bool) -> None:
        self.answer = answer
        self.close = close
        self.connections = 0
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            reader = conn.makefile("rb")
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next(
                    (int(h.split(b":")[1]) for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")), 0
                )
                request = head + reader.read(length)
                self.requests.append(request)
                conn.sendall(self.answer(request))
                if self.close:
                    return

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture
def serve():
    servers: list[RawServer] = []

    def start(answer: Answer, close: bool = False) -> RawServer:
        servers.append(RawServer(answer, close))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def pool() -> Pool:
    return Pool(ssl.create_default_context, 4)


def get(server: RawServer, path: str = "/v2/", method: str = "GET", stream: bool = False, body=None):
    return pool().send(method, server.url + path, {}, body, follow=True, stream=stream)


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_keep_alive_reuses_one_connection(serve) -> None:
    server = serve(lambda request: ok(b"hello"))
    connections = pool()
    for _ in range(3):
        assert connections.send("GET", server.url + "/v2/", {}, None, True, False).content == b"hello"
    assert server.connections == 1


def test_chunked_body_with_extensions_and_trailers(serve) -> None:
    body = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    server = serve(lambda request: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert get(server).content == b"hello world"


def test_a_body_until_close_and_a_1xx_before_the_answer(serve) -> None:
    server = serve(lambda request: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nall of it", close=True)
    response = get(server)
    assert response.status_code == 200 and response.content == b"all of it"


def test_repeated_headers_are_joined(serve) -> None:
    server = serve(lambda request: ok(b"", 'Link: </a>; rel="prev"\r\nLink: </b>; rel="next"\r\n'))
    assert get(server).links == {"prev": f"{server.url}/a", "next": f"{server.url}/b"}


def test_a_streamed_body_is_sent_whole(serve) -> None:
    data = bytes(range(256)) * (BLOCK // 256 * 2 + 7)
    server = serve(lambda request: ok(str(len(request.split(b"\r\n\r\n", 1)[1])).encode()))
    response = pool().send("PUT", server.url + "/u", {"Content-Length": str(len(data))}, io.BytesIO(data), True, False)
    assert response.content == str(len(data)).encode()


@pytest.mark.parametrize(
    "answer",
    [
        b"garbage\r\n\r\n",
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X" * (MAX_LINE + 10) + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * (MAX_HEADERS + 1) + b"\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1e9\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
        b"HTTP/1.1 200 OK\r\nContent-Le",
    ],
)
def test_a_garbled_or_lying_answer_is_an_error_not_a_hang(serve, answer: bytes) -> None:
    """Each answer is followed by a close, so a reader that waited for more would end, not hang."""
    server = serve(lambda request: answer, close=True)
    with pytest.raises((BadResponse, NetworkError)):
        response = get(server, stream=True)
        b"".join(response.iter_content(1024))


def test_a_body_cut_short_keeps_what_arrived_then_raises(serve) -> None:
    server = serve(lambda request: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", close=True)
    response = get(server, stream=True)
    pieces = []
    with pytest.raises(NetworkError, match="interrupted"):
        for piece in response.iter_content(1024):
            pieces.append(piece)
    assert pieces == [b"hello"]


@pytest.mark.parametrize("field", [("X-Evil", "a\r\nInjected: yes"), ("X-Evil\r\nInjected", "yes"), ("X", "a\nb")])
def test_line_breaks_in_request_headers_are_refused(serve, field: tuple[str, str]) -> None:
    server = serve(lambda request: ok(b""))
    with pytest.raises(ValueError, match="line break"):
        pool().send("GET", server.url + "/v2/", dict([field]), None, True, False)
    assert server.requests == []


def test_a_redirect_to_another_host_drops_authorization(serve) -> None:
    storage = serve(lambda request: ok(b"blob"))
    moved = f"HTTP/1.1 307 Temporary\r\nLocation: {storage.url}/b\r\nContent-Length: 0\r\n\r\n".encode()
    registry = serve(lambda request: moved)
    secret = {"Authorization": "Basic c2VjcmV0"}
    response = pool().send("GET", registry.url + "/v2/r/blobs/x", secret, None, True, False)
    assert response.content == b"blob"
    assert b"authorization" in registry.requests[0].lower()
    assert b"authorization" not in storage.requests[0].lower()
