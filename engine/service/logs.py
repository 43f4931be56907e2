"""Reading a container's log (the records `runtime/output.py` writes): the streams asked for, `since`,
`until`, `tail`, following, and docker's timestamps, for both front doors.

Docker applies `tail` first and then `since`/`until` to what is left, and stops following at `until`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

from engine.runtime.output import HEADER, TIME_WIDTH
from engine.service.containers import Container, Status

STREAM_OF = {ord("o"): 1, ord("O"): 1, ord("e"): 2, ord("E"): 2}


@dataclass
class Record:
    """One record of the log: a line (or a piece of one) of one stream, and when it was read."""

    time_ns: int
    stream: int  # 1 stdout, 2 stderr
    data: bytes  # with its newline, when the output had one

    def timestamp(self) -> bytes:
        """Docker's `-t` prefix: RFC 3339 in UTC with nine fraction digits, then a space."""
        seconds, nanos = divmod(self.time_ns, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode() + b".%09dZ " % nanos


def parse(lines: bytes) -> list[Record]:
    """The records in `lines` (whole lines only); a line that is not a record is skipped."""
    out = []
    for line in lines.split(b"\n"):
        if len(line) < HEADER or line[TIME_WIDTH] != 32 or line[TIME_WIDTH + 2] != 32:
            continue
        stream = STREAM_OF.get(line[TIME_WIDTH + 1])
        if stream is None or not line[:TIME_WIDTH].isdigit():
            continue
        payload = line[HEADER:]
        out.append(Record(int(line[:TIME_WIDTH]), stream, payload + b"\n" if line[TIME_WIDTH + 1] > 96 else payload))
    return out


def seek_tail(fd: int, count: int) -> None:
    """Move `fd` to the start of the log's last `count` records (reading backwards from the end)."""
    size = os.fstat(fd).st_size
    if count <= 0:
        os.lseek(fd, size, os.SEEK_SET)
        return
    position, found = size, 0
    while position > 0:
        step = min(position, 1 << 16)
        position -= step
        block = os.pread(fd, step, position)
        index = len(block)
        while (index := block.rfind(b"\n", 0, index)) >= 0:
            if position + index == size - 1:
                continue  # the newline that ends the last record
            found += 1
            if found == count:
                os.lseek(fd, position + index + 1, os.SEEK_SET)
                return
    os.lseek(fd, 0, os.SEEK_SET)


class Reader:
    """The records of an open log from its offset on, as they arrive, with the filters applied."""

    def __init__(self, fd: int, streams: set[int], since_ns: int | None = None, until_ns: int | None = None) -> None:
        self.fd = fd
        self.streams = streams
        self.since_ns = since_ns
        self.until_ns = until_ns
        self.pending = b""
        self.past_until = False

    def done(self) -> bool:
        """Past `until`: a record after it was read, or the clock has passed it (following stops)."""
        return self.past_until or (self.until_ns is not None and time.time_ns() > self.until_ns)

    def read(self) -> list[Record]:
        """The complete records written since the last call (empty when there are none)."""
        chunks = [self.pending]
        while chunk := os.read(self.fd, 1 << 16):
            chunks.append(chunk)
        complete, _, self.pending = b"".join(chunks).rpartition(b"\n")
        out = []
        for record in parse(complete):
            if self.until_ns is not None and record.time_ns > self.until_ns:
                self.past_until = True
                break
            if record.stream in self.streams and (self.since_ns is None or record.time_ns >= self.since_ns):
                out.append(record)
        return out


def follow(
    container: Container,
    *,
    streams: set[int],
    keep_following: bool,
    since_ns: int | None = None,
    until_ns: int | None = None,
    tail: int | None = None,
) -> Iterator[list[Record]]:
    """The container's records in batches; with `keep_following`, until it has stopped and its
    supervisor is gone (or `until_ns` has passed), polling the file as it grows."""
    try:
        fd = os.open(container.log_file, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if tail is not None:
            seek_tail(fd, tail)
        reader = Reader(fd, streams, since_ns, until_ns)
        while True:
            batch = reader.read()
            if batch:
                yield batch
                continue
            if not keep_following or reader.done():
                return
            try:
                current = Container.load(container.directory)
            except FileNotFoundError:
                current = None
            if current is None or (current.status is Status.STOPPED and not current.supervised()):
                yield reader.read()
                return
            time.sleep(0.05)  # the supervisor appends; polling the file keeps every writer free of readers
    finally:
        os.close(fd)
