"""A detached container's output, kept as records that say which stream and when: the log format.

PID 1's stdout and stderr are two pipes; a small process forked by the supervisor (`Capture`) reads
both and appends each piece to `container.log` as records, one line each:

    TIME STREAM PAYLOAD\\n

TIME is the unix time in nanoseconds when the piece was read, 19 digits; STREAM is `o` or `e`
(stdout, stderr) when the output had a newline after PAYLOAD, and `O` or `E` when it had not (a
partial line: the newline ends the record only). A piece of output with several lines makes one
record per line, all with the piece's time.

Why this and not docker's json-file (`{"log","stream","time"}` per line): records are built with
one `bytes.replace` per piece, never a JSON encoding per line, so a container printing many small
lines costs the copier little; payloads stay the exact bytes (JSON would have to mangle output that
is not UTF-8); and like json-file it is one line per record, so `--tail` reads backwards from the
end and `--since` compares a fixed-width prefix.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import dataclass

STREAMS = {1: b"o", 2: b"e"}
TIME_WIDTH = 19
HEADER = TIME_WIDTH + 3  # the time, a space, the stream letter, a space


def encode(stream: int, data: bytes, now_ns: int) -> bytes:
    """`data` read from `stream` (1 stdout, 2 stderr) at `now_ns` as log records."""
    letter = STREAMS[stream]
    prefix = b"%019d %s " % (now_ns, letter)
    end = data.rfind(b"\n")
    out = b""
    if end >= 0:
        out = prefix + data[:end].replace(b"\n", b"\n" + prefix) + b"\n"
    if end + 1 < len(data):
        out += b"%019d %s " % (now_ns, letter.upper()) + data[end + 1 :] + b"\n"
    return out


def copy(sources: dict[int, int], log_fd: int, echo: bool = False) -> None:
    """Append what arrives on `sources` (fd -> stream) to `log_fd` as records until every source ends.

    With `echo` each piece is first written unchanged to the descriptor numbered as its stream (1 or
    2, a foreground `berth run`'s own stdout and stderr); a stream whose reader has gone is no longer
    echoed but still logged, so the container never blocks or gets SIGPIPE for it.
    """
    echoed = set(STREAMS) if echo else set()
    poller = select.poll()
    for fd in sources:
        poller.register(fd, select.POLLIN)
    open_fds = set(sources)
    while open_fds:
        for fd, _ in poller.poll():
            data = os.read(fd, 1 << 16)
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
                continue
            stream = sources[fd]
            if stream in echoed and not _write(stream, data):
                echoed.discard(stream)
            _write(log_fd, encode(sources[fd], data, time.time_ns()))


def _write(fd: int, data: bytes) -> bool:
    """All of `data`, or as much as the disk takes (False then): the pipes must go on being drained
    either way, or the container would block on its next write."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        return False
    return True


@dataclass
class Capture:
    """PID 1's stdout and stderr (`stdout`, `stderr`: the write ends it gets) and the copier process.

    The copier exits when every write end is closed: PID 1 and everything in its PID namespace have
    gone (they die with it) and the supervisor has called `finish`, which then waits for the copier,
    so the log is complete before the supervisor records the exit.
    """

    pid: int
    stdout: int
    stderr: int

    @classmethod
    def start(cls, log_fd: int, echo: bool = False) -> Capture:
        """Fork the copier; with `echo` it also writes the output to our stdout and stderr (`copy`)."""
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:
            try:
                # The supervisor relays signals to PID 1; the copier ends with PID 1's output, not before
                # (^C reaches the whole foreground process group, this copier included).
                for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
                    signal.signal(sig, signal.SIG_IGN)
                keep = {0, 1, 2, out_read, err_read, log_fd}  # nothing else: a pipe held here would never end
                for name in os.listdir("/proc/self/fd"):
                    if int(name) not in keep:
                        try:
                            os.close(int(name))
                        except OSError:
                            pass
                copy({out_read: 1, err_read: 2}, log_fd, echo)
            finally:
                os._exit(0)
        os.close(out_read)
        os.close(err_read)
        return cls(pid, out_write, err_write)

    def finish(self) -> None:
        """PID 1 has been reaped: close our write ends and wait until the copier has written everything."""
        for fd in (self.stdout, self.stderr):
            try:
                os.close(fd)
            except OSError:
                pass
        self.stdout = self.stderr = -1
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
