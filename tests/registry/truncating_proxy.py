"""A TCP proxy on a loopback port that can cut every response short: an upstream failing mid-blob."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class TruncatingProxy:
    backend: tuple[str, int]
    listener: socket.socket
    limit: int | None = None
    """Bytes of response after which each connection is cut (None: relay everything)."""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: list[tuple[socket.socket, socket.socket]] = field(default_factory=list)

    @classmethod
    def start(cls, backend: tuple[str, int]) -> TruncatingProxy:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        proxy = cls(backend, listener)
        threading.Thread(target=proxy._accept, daemon=True).start()
        return proxy

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def cut_after(self, limit: int | None) -> None:
        """From now on, cut connections after `limit` more response bytes (open ones too)."""
        with self._lock:
            self.limit = limit

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.backend)
            with self._lock:
                self._connections.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, response: bool) -> None:
        sent = 0
        limit = None
        try:
            while data := source.recv(1 << 16):
                with self._lock:
                    if self.limit != limit:
                        limit, sent = self.limit, 0
                if response and limit is not None and sent + len(data) > limit:
                    sink.sendall(data[: max(limit - sent, 0)])
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for client, upstream in self._connections:
                client.close()
                upstream.close()
