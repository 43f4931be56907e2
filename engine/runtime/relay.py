"""The supervisor's relay: a container's terminal or stdin pipe on one side, attached clients on the other.

A container made with a TTY or an open stdin has a relay instead of a bare wait: the supervisor
(which outlives whoever started it) holds the pty master or the write end of PID 1's stdin and
serves `console.sock` in the container's directory (the wire format is in `console.py`) until PID
1 exits. Terminal output goes to the supervisor's output (the log's copier for a detached
container, the terminal of `berth run`) and to every client that asked for it; the latest output
(`HISTORY` bytes) is kept with its time, so a client that attached before the container started
gets what was written before it could connect. Clients' input goes to the container; window
sizes go to the pty. A client that reads too slowly holds the terminal back, as a docker attach does:
the container's writes block rather than lose output. One loop over poll(), single-threaded, so
nothing here needs a lock.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field

from engine.runtime import console
from engine.runtime.supervisor import exit_code

MAX_PENDING = 1 << 18
HISTORY = 1 << 20
READ = select.POLLIN | select.POLLHUP | select.POLLERR


@dataclass
class Client:
    sock: socket.socket
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    watching: bool = False


@dataclass
class Relay:
    """What PID 1 is given (`child_stdin`, `console_fd`) and what the supervisor keeps.

    `tty`: PID 1 makes a pty and sends its master over `console_fd`; else `stdin`: PID 1 reads
    `child_stdin`, a pipe whose write end the relay holds (closed when a client ends its input and
    `stdin_once` is set, as docker's StdinOnce).
    """

    directory: str
    listener: socket.socket
    tty: bool
    stdin_once: bool
    console_fd: int = -1
    child_stdin: int = -1
    master: int = -1
    target: int = -1
    close_target_when_flushed: bool = False
    local_input: int = -1
    _ours: int = -1
    pending: bytearray = field(default_factory=bytearray)
    clients: list[Client] = field(default_factory=list)
    history: deque[tuple[int, bytes]] = field(default_factory=deque)
    history_size: int = 0

    @classmethod
    def open(cls, directory: str, *, tty: bool, stdin: bool, stdin_once: bool) -> Relay:
        relay = cls(str(directory), console.listen(str(directory)), tty, stdin_once)
        if tty:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            relay._ours, relay.console_fd = ours.detach(), theirs.detach()
        elif stdin:
            relay.child_stdin, relay.target = os.pipe2(os.O_CLOEXEC)
        return relay

    def started(self) -> None:
        """PID 1 has exec'd: take the master it sent, drop the ends that are now its own."""
        for fd in (self.console_fd, self.child_stdin):
            if fd >= 0:
                os.close(fd)
        self.console_fd = self.child_stdin = -1
        if self._ours >= 0:
            master = console.receive_fd(self._ours)
            os.close(self._ours)
            self._ours = -1
            if master is None:
                raise OSError(errno.EIO, "the container did not send its terminal")
            self.master = self.target = master
        if self.target >= 0:
            os.set_blocking(self.target, False)

    def follow_terminal(self, fd: int, typed: bool) -> None:
        """A local terminal shows the container's (`berth run -t`): its size now and at every SIGWINCH
        goes to the pty, and with `typed` what is typed on it."""
        import signal

        def copy_size(_signum: int = 0, _frame: object = None) -> None:
            if self.master >= 0:
                try:
                    console.set_size(self.master, *console.get_size(fd))
                except OSError:
                    pass

        copy_size()
        signal.signal(signal.SIGWINCH, copy_size)
        if typed:
            self.local_input = fd

    def close(self) -> None:
        """Everything the relay holds goes, the socket file too."""
        for fd in {self.console_fd, self.child_stdin, self._ours, self.master, self.target} - {-1}:
            os.close(fd)
        self.console_fd = self.child_stdin = self._ours = self.master = self.target = -1
        for client in self.clients:
            client.sock.close()
        self.clients = []
        self.listener.close()
        fd = os.open(self.directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.unlink(console.socket_path(fd))
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)

    def serve(self, pid: int, output: int) -> int:
        """Relay until PID 1 `pid` exits; its exit code. Terminal output is also written to `output`."""
        pidfd = os.pidfd_open(pid)
        try:
            while True:
                interest = self._interest(pidfd)
                poller = select.poll()
                for fd, events in interest.items():
                    poller.register(fd, events)
                ready = dict(poller.poll())
                if pidfd in ready:
                    _, status = os.waitpid(pid, 0)
                    self._drain(output)
                    self._flush_clients()
                    return exit_code(status)
                self._step(ready, output)
        finally:
            os.close(pidfd)

    def _interest(self, pidfd: int) -> dict[int, int]:
        interest = {pidfd: select.POLLIN, self.listener.fileno(): select.POLLIN}
        held_back = any(len(c.outbox) > MAX_PENDING for c in self.clients)
        if self.master >= 0 and not held_back:
            interest[self.master] = READ
        if self.target >= 0 and self.pending:
            interest[self.target] = interest.get(self.target, 0) | select.POLLOUT
        taking = len(self.pending) < MAX_PENDING
        if self.local_input >= 0 and taking:
            interest[self.local_input] = READ
        for client in self.clients:
            events = (READ if taking else 0) | (select.POLLOUT if client.outbox else 0)
            if events:
                interest[client.sock.fileno()] = events
        return interest

    def _step(self, ready: dict[int, int], output: int) -> None:
        if self.listener.fileno() in ready:
            self._accept()
        if self.master in ready and ready[self.master] & READ:
            self._read_terminal(output)
        if self.target in ready and ready[self.target] & (select.POLLOUT | select.POLLERR | select.POLLHUP):
            self._write_target()
        if self.local_input in ready:
            try:
                data = os.read(self.local_input, 65536)
            except OSError:
                data = b""
            if data:
                self._input(data)
            else:
                self.local_input = -1
        for client in list(self.clients):
            events = ready.get(client.sock.fileno(), 0)
            if events & READ:
                self._read_client(client)
            if events & select.POLLOUT and client in self.clients:
                self._write_client(client)

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        sock.setblocking(False)
        self.clients.append(Client(sock))

    def _read_terminal(self, output: int) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # EIO: no process holds the slave any more
        if not data:
            if self.target == self.master:
                self.target = -1
            os.close(self.master)
            self.master = -1
            return
        self._output(data, output)

    def _output(self, data: bytes, output: int) -> None:
        try:
            os.write(output, data)  # short only on error: a log's copier pipe or a terminal, both blocking
        except OSError:
            pass
        self.history.append((time.time_ns(), data))
        self.history_size += len(data)
        while self.history_size > HISTORY:
            self.history_size -= len(self.history.popleft()[1])
        for client in self.clients:
            if client.watching:
                client.outbox += data

    def _input(self, data: bytes) -> None:
        if self.target >= 0 and not self.close_target_when_flushed:
            self.pending += data

    def _write_target(self) -> None:
        try:
            written = os.write(self.target, self.pending)
        except BlockingIOError:
            return
        except OSError:  # EPIPE: the container closed its stdin
            self.pending.clear()
            written = 0
            self.close_target_when_flushed = True
        del self.pending[:written]
        if not self.pending and self.close_target_when_flushed:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self.target >= 0 and self.target != self.master:
            os.close(self.target)
        self.target = -1
        self.pending.clear()

    def _read_client(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.inbox += data
        while len(client.inbox) >= console.HEADER.size:
            kind, length = console.HEADER.unpack_from(client.inbox)
            if length > console.MAX_MESSAGE or kind not in (console.OUTPUT, console.INPUT, console.END, console.WINDOW):
                self._drop(client)
                return
            if len(client.inbox) < console.HEADER.size + length:
                return
            payload = bytes(client.inbox[console.HEADER.size : console.HEADER.size + length])
            del client.inbox[: console.HEADER.size + length]
            self._message(client, kind, payload)

    def _message(self, client: Client, kind: bytes, payload: bytes) -> None:
        if kind == console.OUTPUT and len(payload) == 8 and not client.watching:
            (since,) = struct.unpack(">Q", payload)
            client.watching = True
            for written, data in self.history:
                if written >= since:
                    client.outbox += data
        elif kind == console.INPUT:
            self._input(payload)
        elif kind == console.END:
            if self.stdin_once and not self.tty and self.target >= 0:
                self.close_target_when_flushed = True
                if not self.pending:
                    self._close_stdin()
        elif kind == console.WINDOW and len(payload) == 4 and self.master >= 0:
            rows, columns = struct.unpack(">HH", payload)
            try:
                console.set_size(self.master, rows, columns)
            except OSError:
                pass

    def _write_client(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.outbox)
        except BlockingIOError:
            return
        except OSError:
            self._drop(client)
            return
        del client.outbox[:sent]

    def _drop(self, client: Client) -> None:
        client.sock.close()
        self.clients.remove(client)

    def _drain(self, output: int) -> None:
        """PID 1 is gone and with it every holder of the slave: read what the terminal still has."""
        while self.master >= 0:
            try:
                data = os.read(self.master, 65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                os.close(self.master)
                if self.target == self.master:
                    self.target = -1
                self.master = -1
                return
            self._output(data, output)

    def _flush_clients(self) -> None:
        """Give every client what it is owed (a few seconds at most each), then the end of the stream."""
        for client in self.clients:
            try:
                client.sock.settimeout(5)
                client.sock.sendall(client.outbox)
            except OSError:
                pass
            client.sock.close()
        self.clients = []
