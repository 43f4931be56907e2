"""A round-robin TCP proxy on a loopback port, standing in for the load balancer in front of registry replicas.

Each accepted connection goes to the next backend in turn and is then relayed byte for byte in both
directions (so TLS, keep-alive and chunked bodies pass through untouched). It counts connections and bytes
per backend, so a test can check that every backend really served part of the traffic.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field


@dataclass
class BackendStats:
    address: tuple[str, int]
    connections: int = 0
    bytes_in: int = 0  # client -> backend
    bytes_out: int = 0  # backend -> client


@dataclass
class RoundRobinProxy:
    backends: list[BackendStats]
    listener: socket.socket
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next: int = 0
    _sockets: set[socket.socket] = field(default_factory=set)
    _closed: bool = False

    @classmethod
    def start(cls, backends: list[tuple[str, int]]) -> RoundRobinProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        proxy = cls(backends=[BackendStats(address) for address in backends], listener=listener)
        threading.Thread(target=proxy._accept_loop, name="round-robin-proxy", daemon=True).start()
        return proxy

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                backend = self.backends[self._next % len(self.backends)]
                self._next += 1
                backend.connections += 1
            threading.Thread(target=self._serve, args=(client, backend), daemon=True).start()

    def _serve(self, client: socket.socket, backend: BackendStats) -> None:
        try:
            upstream = socket.create_connection(backend.address, timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._closed:
                client.close()
                upstream.close()
                return
            self._sockets |= {client, upstream}
        forward = threading.Thread(target=self._pump, args=(client, upstream, backend, "bytes_in"), daemon=True)
        forward.start()
        self._pump(upstream, client, backend, "bytes_out")
        forward.join()
        with self._lock:
            self._sockets -= {client, upstream}
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket, backend: BackendStats, counter: str) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                with self._lock:
                    setattr(backend, counter, getattr(backend, counter) + len(data))
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)  # pass the half-close on; the other direction may still be talking
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        except OSError:
            pass
        self.listener.close()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
