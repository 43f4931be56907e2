"""Blobs of cached repositories, fetched from the upstream once however many clients ask.

One process of one replica holds the fetch's lease (a `blob_fetch` row in the shared
database); a thread of that fetch receives the upstream's response and hands it on to its
client, while a second thread hashes it and writes it to an upload session in storage. The
digest and size are checked before the client gets the body's end and before the bytes are
committed, so a failed, truncated or corrupted fetch cuts its client off and stores nothing;
the commit follows the body's end.
Everyone else waits for the commit (polling the index) and is then served from storage, or
takes the lease over when the fetch failed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import queue
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import requests

from registry.errors import BlobUnknown
from registry.metadata.blobs import BlobIndex
from registry.metadata.upstreams import UpstreamIndex
from registry.service.blobs import check_digest
from registry.service.upstreams import FETCHES, LOG, Route, UpstreamService
from registry.storage.base import BlobStorage
from registry.upstream.client import UpstreamClient, UpstreamRefused, UpstreamUnavailable

LEASE_SECONDS = 60.0
CHUNK = 4 * 1024 * 1024
"""Bytes received, hashed, written and handed on at a time. Each chunk costs hand-offs between
threads, each a GIL hand-over and a wake-up: per 256 MiB, 1 MiB chunks cost 0.17 s of Python
and 0.06 s of waits and wake-ups, 4 MiB chunks 0.10 and 0.03 s (perf, the benchmark's cold pull)."""
AHEAD = 4
"""Chunks a fetch may receive ahead of its client (memory: AHEAD x CHUNK per fetch)."""
TAIL = 64 * 1024
"""Bytes of a body of known size held back until the blob is verified (at least one byte must
be: a client that has them all has the whole body)."""
HANDOFF_POLL = 0.25
"""How often a fetch whose client is behind looks whether that client went away."""


class FetchFailed(Exception):
    """The upstream's bytes did not make the blob they claimed to be."""


@dataclass(frozen=True, slots=True)
class Ready:
    """The blob is in the repository now: serve it from storage."""


@dataclass(frozen=True, slots=True)
class Busy:
    """Another request is fetching the blob: ask again shortly."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """This request fetches the blob: stream `body` (size from the upstream, if it said)."""

    size: int | None
    body: Relay


@dataclass(frozen=True, slots=True)
class Remote:
    """A HEAD answered by the upstream without fetching."""

    size: int


class UpstreamBlobs:
    def __init__(
        self, upstreams: UpstreamService, index: UpstreamIndex, blobs: BlobIndex, storage: BlobStorage
    ) -> None:
        self.upstreams = upstreams
        self.index = index
        self.blobs = blobs
        self.storage = storage
        self.holder = f"{socket.gethostname()[:40]}:{os.getpid()}"
        """This process; each fetch adds its own suffix, since threads of one process race too."""

    def open(self, repository: str, digest: str, head: bool = False) -> Ready | Busy | Fetch | Remote:
        """What to do about a blob the repository does not hold (BlobUnknown when nothing)."""
        digest = check_digest(digest)
        route = self.upstreams.route(repository)
        if route is None:
            raise BlobUnknown(detail={"digest": digest})
        self.upstreams.check_allowed(route)
        client = self.upstreams.client(route.config)
        try:
            if self._link_stored(route, client, repository, digest):
                return Ready()
            if head:
                size = client.blob_size(route.remote, digest)
                if size is None:
                    raise BlobUnknown(f"upstream {route.config.name} has no blob {digest} in {route.remote}")
                return Remote(size)
            holder = f"{self.holder}:{uuid.uuid4().hex[:12]}"
            if not self.index.take_fetch(digest, holder, LEASE_SECONDS):
                return Busy()
            try:
                # A fetch may have committed the blob and released its lease since the look
                # above: the lease alone does not say the bytes are missing.
                if self._link_stored(route, client, repository, digest):
                    self.index.release_fetch(digest, holder)
                    return Ready()
                response = client.open_blob(route.remote, digest)
            except BaseException:
                self.index.release_fetch(digest, holder)
                raise
        except (UpstreamUnavailable, UpstreamRefused) as exc:
            raise BlobUnknown(
                f"blob {digest} is not cached and upstream {route.config.name} did not provide it: {exc}",
                detail={"digest": digest},
            ) from None
        length = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() != "identity"
        size = int(length) if length.isdigit() and not encoded else None  # an encoded body's length is not the blob's
        handoff = Handoff()
        fetch = functools.partial(self._fetch, route, repository, digest, size, response, holder, handoff)
        threading.Thread(target=fetch, name=f"upstream-fetch-{digest[:19]}", daemon=True).start()
        return Fetch(size, Relay(handoff))

    def _link_stored(self, route: Route, client: UpstreamClient, repository: str, digest: str) -> bool:
        """Whether the repository holds the blob now, linking it when its bytes are stored
        already (another repository, another upstream) and a cached manifest of the
        repository names it or the upstream has it; False when the bytes must be fetched."""
        if self.blobs.size(repository, digest) is not None:
            return True  # a fetch for this repository ended (its pending reference is resolved)
        held = self.index.blob_size(digest)
        if held is None or self.storage.stat(digest) is None:
            return False
        if self.index.referenced(repository, digest) or client.blob_size(route.remote, digest) is not None:
            self.index.blob_arrived(repository, digest, held)
            return True
        raise BlobUnknown(f"upstream {route.config.name} has no blob {digest} in {route.remote}")

    def _fetch(
        self,
        route: Route,
        repository: str,
        digest: str,
        size: int | None,
        response: requests.Response,
        holder: str,
        relay: Handoff,
    ) -> None:
        """Receive the blob, hand each chunk on, hash it and write it to an upload session.

        The end of the body is handed on only once size and digest are verified, so a client
        never receives a complete body that is not the blob: with a known size, every chunk
        goes on as it arrives but the last one's final TAIL bytes; without, each chunk waits
        for the next (the last shows only at the body's end). Then the end of the body is handed on
        and only then is the upload made durable, committed and linked: the client does not
        wait for our fsync (it has verified bytes), while everyone else waits for the lease,
        which is released after the commit. A failure cleans up before it is handed on: the
        client sees its cut only once nothing is stored and the lease is free."""
        landing = Landing(self.storage, digest.partition(":")[0])
        arrived = 0
        held_back: Chunk = b""
        renewed = time.monotonic()
        ended = False
        failed: Exception | None = None
        try:
            for chunk in _coalesced(response.iter_content(CHUNK), CHUNK):
                landing.add(chunk)
                arrived += len(chunk)
                if held_back:
                    relay.put(held_back)
                    held_back = b""
                if size is None:
                    held_back = chunk  # which chunk is the last shows only at the body's end
                elif arrived < size:
                    relay.put(chunk)
                else:  # the last: all but its tail goes on now, the tail once the blob is verified
                    view = memoryview(chunk)
                    if len(view) > TAIL:
                        relay.put(view[:-TAIL])
                    held_back = view[-TAIL:]
                if time.monotonic() - renewed > LEASE_SECONDS / 3:
                    self.index.renew_fetch(digest, holder, LEASE_SECONDS)
                    renewed = time.monotonic()
            received, actual = landing.finish()
            if (size is not None and received != size) or actual != digest:
                raise FetchFailed(
                    f"upstream {route.config.name} sent {received} bytes hashing to {actual} for {digest}"
                )
            if held_back:
                relay.put(held_back)
            relay.put(None)
            ended = True
            self.blobs.touch(digest)
            self.storage.commit_upload(landing.state, received, digest)
            self.index.blob_arrived(repository, digest, received)
            FETCHES.labels(route.config.name, "blob").inc()
        except ClientLeft as exc:
            LOG.info("fetching %s from upstream %s stopped: %s", digest, route.config.name, exc)
            landing.cancel()
        except Exception as exc:
            LOG.warning("fetching %s from upstream %s failed: %s", digest, route.config.name, exc)
            landing.cancel()
            failed = exc
        finally:
            response.close()
            self.index.release_fetch(digest, holder)
        if failed is not None and not ended:
            with contextlib.suppress(ClientLeft):
                relay.put(failed)


LANDERS = ThreadPoolExecutor(thread_name_prefix="upstream-landing")
"""Threads that hash and write fetched chunks (one chunk of a fetch at a time)."""


class Landing:
    """Where a fetch's chunks go besides its client: hashed and written to an upload session in
    order, on a thread of LANDERS, one chunk at a time. Receiving (and handing on) the next
    chunk overlaps hashing and writing this one (hashlib and the write release the GIL), and
    an S3 part's upload overlaps receiving. Alone, the fetch's thread would take turns at all
    three: per 256 MiB about 0.1 s receiving, 0.16 s hashing, 0.07 s writing, which bounds a
    pull where cores are free; on the 2 shared cores of the test machine the CPU is the bound
    and the overlap did not show in wall time."""

    def __init__(self, storage: BlobStorage, algorithm: str) -> None:
        self.storage = storage
        self.hasher = hashlib.new(algorithm)
        self.state = storage.start_upload(str(uuid.uuid4()))
        self.size = 0
        """Bytes written to the upload."""
        self.batch: list[bytes] = []
        self.batched = 0
        self.pending: Future[None] | None = None

    def add(self, chunk: bytes) -> None:
        """Land `chunk` after those before it (this waits for the previous one and raises its failure)."""
        self.wait()
        self.pending = LANDERS.submit(self._land, chunk)

    def finish(self) -> tuple[int, str]:
        """Wait until every chunk is written; their size and digest."""
        self.wait()
        self._write()
        return self.size, f"{self.hasher.name}:{self.hasher.hexdigest()}"

    def cancel(self) -> None:
        """Drop the upload, once no chunk is being written to it any more."""
        with contextlib.suppress(Exception):
            self.wait()
        self.storage.cancel_upload(self.state)

    def wait(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()

    def _land(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.batch.append(chunk)
        self.batched += len(chunk)
        if self.batched >= self.storage.write_batch:
            self._write()

    def _write(self) -> None:
        if self.batch:
            self.state = self.storage.write_upload(self.state, self.size, self.batch, writeback=False)
            self.size += self.batched
            self.batch, self.batched = [], 0


def _coalesced(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The pieces joined into chunks of at least `size` bytes (but the last). A body with a
    length arrives in chunks of `size` already, passed on as they are; a chunked one arrives
    in its sender's chunks, often a few KiB, each of which would cost a hand-off."""
    parts: list[bytes] = []
    gathered = 0
    for piece in pieces:
        if not piece:
            continue
        parts.append(piece)
        gathered += len(piece)
        if gathered >= size:
            yield parts[0] if len(parts) == 1 else b"".join(parts)
            parts, gathered = [], 0
    if parts:
        yield b"".join(parts)


Chunk = bytes | memoryview
"""Bytes of a body, handed on without copying (a memoryview is part of a received chunk)."""


class ClientLeft(Exception):
    """The client stopped reading the body: the fetch is not worth finishing for it."""


class Handoff:
    """The fetch's side of its `Relay`: the chunks, then None (the end) or the failure."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Chunk | BaseException | None] = queue.Queue(AHEAD)
        self.abandoned = threading.Event()
        self.lock = threading.Lock()
        self.wake: Callable[[], None] | None = None
        """What the client asked to be called when the next item arrives (see `Relay.poll`)."""

    def put(self, item: Chunk | BaseException | None) -> None:
        """Hand on a chunk, the end or the failure, waiting while the client is `AHEAD` chunks
        behind; ClientLeft once it went away."""
        while not self.abandoned.is_set():
            try:
                self.queue.put(item, timeout=HANDOFF_POLL)
            except queue.Full:
                continue
            with self.lock:
                wake, self.wake = self.wake, None
            if wake is not None:
                wake()
            return
        raise ClientLeft("the client went away before the blob was received")


class Relay:
    """The client's side: the chunks a fetch's thread hands on.

    The thread runs ahead of the client by up to `AHEAD` chunks, so receiving, hashing and
    writing overlap sending instead of taking turns with it. The client iterates (waiting for
    each chunk), or from an event loop `poll`s: a chunk that has arrived is taken at once, and
    for one that has not, the fetch's thread calls back; no thread waits for the upstream on
    the client's behalf. `close`, or dropping the relay unread (the client went away), stops
    the fetch, which then stores nothing."""

    def __init__(self, handoff: Handoff) -> None:
        self.handoff = handoff
        weakref.finalize(self, handoff.abandoned.set)

    def take(self) -> Chunk | None:
        """The next chunk, waiting for it, or None at the end (raises the fetch's failure)."""
        return _unpacked(self.handoff.queue.get())

    def poll(self, wake: Callable[[], None]) -> Chunk | None:
        """The next chunk if it has arrived, or None at the end (raises the fetch's failure);
        else b"" (a chunk is never empty), and `wake` is called from the fetch's thread once
        the next item has arrived."""
        handoff = self.handoff
        with handoff.lock:
            try:
                item = handoff.queue.get_nowait()
            except queue.Empty:
                handoff.wake = wake
                return b""
        return _unpacked(item)

    def close(self) -> None:
        self.handoff.abandoned.set()

    def __iter__(self) -> Iterator[Chunk]:
        try:
            while (chunk := self.take()) is not None:
                yield chunk
        finally:
            self.close()


def _unpacked(item: Chunk | BaseException | None) -> Chunk | None:
    if isinstance(item, BaseException):
        raise item
    return item
