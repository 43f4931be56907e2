"""An HTTP server in front of a registry that passes every request on and can mangle the blob
bodies it relays: an upstream that sends chunked bodies, lies about Content-Length or
corrupts bytes."""

from __future__ import annotations

import gzip
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import requests

Mode = Literal["pass", "chunked", "longer", "shorter", "corrupt", "stall", "gzip"]
PASSED_HEADERS = ("Content-Type", "Docker-Content-Digest", "WWW-Authenticate", "Location", "Content-Length")
PIECES = (1000, 65536, 7, 300_000, 4096)
"""Sizes of the chunks a chunked blob body is sent in, in turn."""


class ManglingUpstream:
    """`mode` says what happens to blob bodies: sent as they are (`pass`), in chunked transfer
    encoding of small uneven chunks without a length (`chunked`), announced 1000 bytes longer
    than sent before the connection closes (`longer`), cut 1000 bytes short with a length to
    match (`shorter`), with one byte changed (`corrupt`), half sent and the rest only once
    `resume` is set (`stall`; `stalled` counts the bodies waiting), or gzip-encoded whatever
    the client accepts, with the encoded length (`gzip`)."""

    def __init__(self, backend: str) -> None:
        self.backend = backend.rstrip("/")
        self.mode: Mode = "pass"
        self.resume = threading.Event()
        self.stalled = 0
        self._lock = threading.Lock()
        self.session = requests.Session()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.session.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self._relay(body=False)

            def do_GET(self) -> None:
                self._relay(body=True)

            def _relay(self, body: bool) -> None:
                asked = {k: v for k, v in self.headers.items() if k in ("Accept", "Authorization")}
                answer = upstream.session.request(
                    self.command, upstream.backend + self.path, headers=asked, allow_redirects=False, timeout=60
                )
                content = answer.content
                mode = upstream.mode if body and "/blobs/" in self.path and answer.status_code == 200 else "pass"
                self.send_response(answer.status_code)
                for name in PASSED_HEADERS:
                    if name in answer.headers and name != "Content-Length":
                        self.send_header(name, answer.headers[name])
                if mode == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._send_chunked(content)
                    return
                if mode == "gzip":
                    content = gzip.compress(content, compresslevel=1)
                    self.send_header("Content-Encoding", "gzip")
                if mode == "shorter":
                    content = content[:-1000]
                elif mode == "corrupt":
                    middle = len(content) // 2
                    content = content[:middle] + bytes([content[middle] ^ 0xFF]) + content[middle + 1 :]
                length = str(len(content) + (1000 if mode == "longer" else 0))
                self.send_header("Content-Length", length if body else answer.headers.get("Content-Length", "0"))
                if mode == "longer":
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if body and mode == "stall":
                    self.wfile.write(content[: len(content) // 2])
                    self.wfile.flush()
                    with upstream._lock:
                        upstream.stalled += 1
                    upstream.resume.wait()
                    self.wfile.write(content[len(content) // 2 :])
                elif body:
                    self.wfile.write(content)

            def _send_chunked(self, content: bytes) -> None:
                start = 0
                for size in itertools.cycle(PIECES):
                    piece = content[start : start + size]
                    if not piece:
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    start += size
                self.wfile.write(b"0\r\n\r\n")

        return Handler
