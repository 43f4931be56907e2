"""Blobs of cached repositories, fetched from the upstream once however many clients ask.

One process of one replica holds the fetch's lease (a `blob_fetch` row in the shared
database) and streams the upstream's response to its client while writing it to an upload
session in storage; the digest and size are checked before the bytes are committed, so a
failed, truncated or corrupted fetch stores nothing. Everyone else waits for the commit
(polling the index) and is then served from storage, or takes the lease over when the
fetch failed.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import Iterator
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
CHUNK = 1024 * 1024


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
    body: Iterator[bytes]


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
        size = int(length) if length.isdigit() else None
        return Fetch(size, self._stream(route, repository, digest, size, response, holder))

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

    def _stream(
        self,
        route: Route,
        repository: str,
        digest: str,
        size: int | None,
        response: requests.Response,
        holder: str,
    ) -> Iterator[bytes]:
        """Yield the upstream's bytes while storing them; the last chunk only once verified, so
        a client never receives a complete body that was not committed."""
        algorithm = digest.partition(":")[0]
        hasher = hashlib.new(algorithm)
        state = self.storage.start_upload(str(uuid.uuid4()))
        offset, batched, held_back = 0, 0, b""
        batch: list[bytes] = []
        renewed = time.monotonic()
        committed = False
        try:
            for chunk in response.iter_content(CHUNK):
                if not chunk:
                    continue
                hasher.update(chunk)
                batch.append(chunk)
                batched += len(chunk)
                if batched >= self.storage.write_batch:
                    state = self.storage.write_upload(state, offset, batch)
                    offset, batch, batched = offset + batched, [], 0
                if held_back:
                    yield held_back
                held_back = chunk
                if time.monotonic() - renewed > LEASE_SECONDS / 3:
                    self.index.renew_fetch(digest, holder, LEASE_SECONDS)
                    renewed = time.monotonic()
            if batch:
                state = self.storage.write_upload(state, offset, batch)
                offset += batched
            actual = f"{algorithm}:{hasher.hexdigest()}"
            if (size is not None and offset != size) or actual != digest:
                raise FetchFailed(f"upstream {route.config.name} sent {offset} bytes hashing to {actual} for {digest}")
            self.blobs.touch(digest)
            self.storage.commit_upload(state, offset, digest)
            self.index.blob_arrived(repository, digest, offset)
            committed = True
            FETCHES.labels(route.config.name, "blob").inc()
            if held_back:
                yield held_back
        except Exception as exc:
            LOG.warning("fetching %s from upstream %s failed: %s", digest, route.config.name, exc)
            raise
        finally:
            response.close()
            if not committed:
                self.storage.cancel_upload(state)
            self.index.release_fetch(digest, holder)
