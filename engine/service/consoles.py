"""Attaching to a container's terminal or stdin: what the front doors call to reach its supervisor's relay.

The relay (`runtime/relay.py`) lives as long as the container's supervisor, not as long as the
engine API: after a restart of the service, a new attach connects to the same socket.
"""

from __future__ import annotations

import socket

from engine.runtime import console
from engine.service.containers import Container, ContainerStateError

MAX_SIZE = 0xFFFF


def connect(container: Container) -> socket.socket | None:
    """A connection to the container's relay, or None while none listens (not started, or gone)."""
    try:
        return console.connect(str(container.directory))
    except OSError:
        return None


def resize(container: Container, rows: int, columns: int) -> None:
    """The terminal's new size (nothing to do for a container without one), as TIOCSWINSZ takes it."""
    if not container.is_running():
        raise ContainerStateError(f"Container {container.id} is not running")
    if not container.spec.tty:
        return
    sock = connect(container)
    if sock is None:
        raise ContainerStateError(f"Container {container.id} is not running")
    with sock:
        sock.sendall(console.window(rows & MAX_SIZE, columns & MAX_SIZE))


def output_since(time_ns: int) -> bytes:
    """What a client sends first to get the terminal's output written from `time_ns` (unix ns) on."""
    return console.output_since(time_ns)


def input_message(data: bytes) -> bytes:
    return console.message(console.INPUT, data)


def end_message() -> bytes:
    return console.message(console.END)
