"""A container's terminal and stdin: the pseudo-terminal made inside the container, and the wire format
its supervisor's relay speaks to whoever attaches.

As runc's console does, the pty comes from the container's own devpts (mounted `newinstance` at
/dev/pts), opened by the new process itself once its root is in place: inside, `tty` prints
/dev/pts/0 and no host terminal is reachable. The process becomes a session leader, makes the slave
its controlling terminal (TIOCSCTTY) and its stdio, and passes the master to its parent over a unix
socket (SCM_RIGHTS) before exec.

The relay (`runtime/relay.py`) listens on a unix socket in the container's directory. A client
sends messages of one type byte, a four-byte big-endian length and a payload: output wanted (`o`,
the unix time in nanoseconds, eight big-endian bytes, from which the terminal's output is wanted:
the relay keeps its latest output for a client that attached before it could connect), input
(`i`), end of input (`e`), window size (`w`, rows and columns as two big-endian 16-bit numbers).
Only a client that asked for output gets it, raw.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import socket

# Terminal ioctls as asm-generic numbers them (x86, arm): termios and socket cost an import on every
# `berth run`, and PID 1 cannot import anything once its root is the container's.
TIOCSCTTY = 0x540E
TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
SOCKET_NAME = "console.sock"
OUTPUT, INPUT, END, WINDOW = b"o", b"i", b"e", b"w"
HEADER = struct.Struct(">cI")
MAX_MESSAGE = 1 << 20


def open_terminal() -> tuple[int, int]:
    """A new pty from the devpts at /dev/pts of this mount namespace: (master, slave).

    The slave is opened through the master (TIOCGPTPEER), never by path, so it is the master's peer
    whatever /dev/pts holds.
    """
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(master)
        raise
    return master, slave


def take_terminal(console_socket: int, owner: int = 0, size: list[int] | None = None) -> None:
    """In the new process (a session leader): a new pty's slave becomes its controlling terminal and
    stdio, owned by uid `owner` as runc leaves it, `size` ([rows, columns]) its first window size; the
    master goes to the parent over `console_socket`."""
    master, slave = open_terminal()
    if size and any(size):
        set_size(master, size[0], size[1])
    send_fd(console_socket, master)
    os.close(master)
    os.close(console_socket)
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    if owner:
        os.fchown(slave, owner, -1)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)


def send_fd(sock_fd: int, fd: int) -> None:
    sock = _socket.socket(fileno=sock_fd)
    try:
        sock.sendmsg([b"t"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        sock.detach()


def receive_fd(sock_fd: int) -> int | None:
    """The descriptor sent over `sock_fd`, or None when the peer closed without sending one."""
    import socket

    sock = socket.socket(fileno=sock_fd)
    try:
        _, fds, _, _ = socket.recv_fds(sock, 1, 4)
    finally:
        sock.detach()
    for extra in fds[1:]:
        os.close(extra)
    if fds:
        os.set_inheritable(fds[0], False)
    return fds[0] if fds else None


def set_size(fd: int, rows: int, columns: int) -> None:
    """TIOCSWINSZ on a terminal (the master): the foreground process group gets SIGWINCH."""
    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, columns, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8))
    return rows, columns


def message(kind: bytes, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def window(rows: int, columns: int) -> bytes:
    return message(WINDOW, struct.pack(">HH", rows, columns))


def output_since(time_ns: int) -> bytes:
    return message(OUTPUT, struct.pack(">Q", max(0, time_ns)))


def socket_path(directory_fd: int) -> str:
    """The relay's socket through a descriptor of the container's directory: a unix socket's path has
    at most 107 bytes, a container directory's may have more."""
    return f"/proc/self/fd/{directory_fd}/{SOCKET_NAME}"


def connect(directory: str) -> socket.socket:
    """A connection to the relay of the container at `directory` (OSError when none listens)."""
    import socket

    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.connect(socket_path(fd))
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)


def listen(directory: str) -> socket.socket:
    """The relay's listening socket in `directory` (a stale one from a killed supervisor is replaced)."""
    import socket

    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        path = socket_path(fd)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(path)
        os.chmod(path, 0o600)
        sock.listen(16)
        return sock
    finally:
        os.close(fd)


def relay_local(master: int, stop_fd: int, input_fd: int, output_fd: int) -> None:
    """A terminal's master relayed to this process's own terminal (`berth exec -t`) until the terminal
    ends (every holder of its slave gone) or `stop_fd` becomes readable (the process exited: what the
    master still holds is read out first). `input_fd` -1: nothing is typed into it."""
    import select

    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(stop_fd, select.POLLIN)
    if input_fd >= 0:
        poller.register(input_fd, select.POLLIN)
    os.set_blocking(master, False)
    while True:
        for fd, _ in poller.poll():
            if fd == input_fd:
                typed = os.read(input_fd, 65536)
                if typed:
                    _write_all(master, typed)
                else:
                    poller.unregister(input_fd)
                continue
            if not _copy_out(master, output_fd) or fd == stop_fd:
                return


def _copy_out(master: int, output_fd: int) -> bool:
    """What the master holds now, to `output_fd`; False once the terminal has ended."""
    while True:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return True
        except OSError:
            return False  # EIO: no process holds the slave any more
        if not data:
            return False
        _write_all(output_fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            select_wait(fd)


def select_wait(fd: int) -> None:
    """Until `fd` (a non-blocking terminal master) takes more."""
    import select

    select.select([], [fd], [])
