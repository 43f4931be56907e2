"""Blob upload sessions: started -> (writing -> started)* -> committed | cancelled.

Opening a session writes nothing: its id is signed for the repository with a secret every
replica shares, and carries its start time, so docker's POST-then-PUT of a small blob costs
one write transaction, not two. The first byte gives the session its row in the index (and
its bytes live in storage), so any replica can continue it; a writer leases the session, so
two requests never interleave bytes. Ending a session leaves a closed row, a tombstone that
keeps a used id unknown until the id expires. The running sha256 is kept in this process
only as a bounded optimisation: when a chunk lands on another replica (or the digest uses
another algorithm) the upload is re-hashed from storage at completion.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from registry.clock import SYSTEM_CLOCK, Clock
from registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    QuotaExceeded,
    RangeInvalid,
    SizeInvalid,
)
from registry.metadata.blobs import BlobIndex
from registry.metadata.uploads import UploadIndex, UploadRow
from registry.service.blobs import check_digest
from registry.service.policies import PolicyService
from registry.storage.base import BlobStorage

LEASE_SECONDS = 300.0
RENEW_AFTER = 60.0
RUNNING_HASH = "sha256"


class UploadStatus(Enum):
    STARTED = "started"
    WRITING = "writing"
    COMMITTED = "committed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[UploadStatus, frozenset[UploadStatus]] = {
    UploadStatus.STARTED: frozenset({UploadStatus.WRITING, UploadStatus.COMMITTED, UploadStatus.CANCELLED}),
    UploadStatus.WRITING: frozenset({UploadStatus.STARTED, UploadStatus.COMMITTED, UploadStatus.CANCELLED}),
    UploadStatus.COMMITTED: frozenset(),
    UploadStatus.CANCELLED: frozenset(),
}


class SessionIds:
    """Upload ids that prove where and when they were issued: `<uuid>.<start>.<mac>`."""

    def __init__(self, secret: bytes, lifetime: timedelta, clock: Clock = SYSTEM_CLOCK):
        self.secret = secret
        self.lifetime = lifetime
        self.clock = clock

    def _mac(self, repository: str, body: str) -> str:
        return hmac.new(self.secret, f"{repository}\n{body}".encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, repository: str) -> str:
        body = f"{uuid.uuid4()}.{int(self.clock.now().timestamp()):x}"
        return f"{body}.{self._mac(repository, body)}"

    def started(self, repository: str, upload_id: str) -> datetime | None:
        """When the session began, or None for an id not issued for `repository` or expired."""
        body, _, mac = upload_id.rpartition(".")
        started = body.rpartition(".")[2]
        if not hmac.compare_digest(mac.encode(), self._mac(repository, body).encode()):
            return None
        try:
            moment = datetime.fromtimestamp(int(started, 16), UTC)
        except ValueError:
            return None
        return moment if self.clock.now() - moment < self.lifetime else None


@dataclass(frozen=True, slots=True)
class Session:
    """A live session: its row in the index, or a fresh one's (offset 0) when it has none yet."""

    started: datetime
    row: UploadRow | None
    offset: int
    state: dict[str, Any]


class HasherCache:
    """Running hashes of uploads this process wrote last, keyed by (upload id, offset)."""

    def __init__(self, capacity: int = 512):
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, upload_id: str, offset: int) -> Any | None:
        with self._lock:
            item = self._items.pop(upload_id, None)
        if item is None or item[0] != offset:
            return None
        return item[1]

    def put(self, upload_id: str, offset: int, hasher: Any) -> None:
        with self._lock:
            self._items[upload_id] = (offset, hasher)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


@dataclass
class UploadWriter:
    """One request's exclusive write access to a session."""

    storage: BlobStorage
    upload_id: str
    started: datetime
    repository: str
    state: dict[str, Any]
    offset: int
    hasher: Any | None
    renew: Callable[[], None] | None = None
    allowance: int | None = None
    """The size the session may reach under the repository's quotas (None: no quota)."""
    over_quota: Callable[[UploadWriter, int], int | None] | None = None
    status: UploadStatus = UploadStatus.WRITING
    leased_at: float = field(default_factory=time.monotonic)

    @property
    def batch_size(self) -> int:
        """How many bytes to gather before each `store`: the storage's preferred write size."""
        return self.storage.write_batch

    def write(self, chunks: Sequence[bytes]) -> None:
        self.hash(chunks)
        self.store(chunks)

    def store(self, chunks: Sequence[bytes]) -> None:
        """Write the bytes; `hash` may run at the same time in another thread. A long body
        renews the lease now and then, so a slow upload keeps its session. Bytes count
        against the quota as they arrive, whatever the client declared."""
        end = self.offset + sum(len(chunk) for chunk in chunks)
        if self.allowance is not None and end > self.allowance and self.over_quota is not None:
            self.allowance = self.over_quota(self, end)
        self.state = self.storage.write_upload(self.state, self.offset, chunks)
        self.offset += sum(len(chunk) for chunk in chunks)
        if self.renew is not None and time.monotonic() - self.leased_at > RENEW_AFTER:
            self.renew()
            self.leased_at = time.monotonic()

    def hash(self, chunks: Sequence[bytes]) -> None:
        if self.hasher is not None:
            for chunk in chunks:
                self.hasher.update(chunk)

    def move(self, target: UploadStatus) -> None:
        if target not in TRANSITIONS[self.status]:
            raise BlobUploadInvalid(f"upload cannot go from {self.status.value} to {target.value}")
        self.status = target


def _required_digest(value: str | None) -> str:
    if not value:
        raise DigestInvalid("the digest query parameter is required to complete an upload")
    return check_digest(value)


class UploadService:
    def __init__(
        self,
        uploads: UploadIndex,
        blobs: BlobIndex,
        storage: BlobStorage,
        hashers: HasherCache,
        policies: PolicyService,
        ids: SessionIds,
    ):
        self.uploads = uploads
        self.blobs = blobs
        self.storage = storage
        self.hashers = hashers
        self.policies = policies
        self.ids = ids

    def check_start(self, repository: str, incoming: int, digest: str | None = None) -> None:
        """A session opened with a known size (and digest) is checked against quotas first."""
        self.policies.check_quota(repository, incoming, check_digest(digest) if digest else None)

    def start(self, repository: str) -> str:
        """A new session's id: no storage and no index write until bytes arrive."""
        return self.ids.issue(repository)

    def _session(self, repository: str, upload_id: str) -> Session:
        started = self.ids.started(repository, upload_id)
        row = self.uploads.get(repository, upload_id) if started is not None else None
        if started is None or (row is not None and row.closed):
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        if row is None:
            return Session(started, None, 0, self.storage.start_upload(upload_id))
        return Session(started, row, row.offset, row.state)

    def offset(self, repository: str, upload_id: str) -> int:
        return self._session(repository, upload_id).offset

    def open(
        self,
        repository: str,
        upload_id: str,
        start: int | None = None,
        incoming: int | None = None,
        digest: str | None = None,
    ) -> UploadWriter:
        """Lease the session for writing; `start` is the client's Content-Range start and
        `incoming` its Content-Length, when given (checked against quotas before any byte
        lands), `digest` the blob's when the request names it (a blob the namespace holds
        costs nothing)."""
        session = self._session(repository, upload_id)
        digest = check_digest(digest) if digest else None
        if incoming:
            self.policies.check_quota(repository, session.offset + incoming, digest, upload_id)
        if start is not None and start != session.offset:
            raise RangeInvalid(
                f"chunk starts at {start}, the upload is at {session.offset}",
                offset=session.offset,
            )
        if session.row is None:
            leased = self.uploads.create(repository, upload_id, session.state, session.started, LEASE_SECONDS)
        else:
            leased = self.uploads.lease(upload_id, session.offset, LEASE_SECONDS)
        if not leased:
            raise RangeInvalid("another request is writing to this upload", offset=session.offset)
        hasher = self.hashers.take(upload_id, session.offset)
        if hasher is None and session.offset == 0:
            hasher = hashlib.new(RUNNING_HASH)
        return UploadWriter(
            self.storage,
            upload_id,
            session.started,
            repository,
            session.state,
            session.offset,
            hasher,
            renew=lambda: self.uploads.renew(upload_id, LEASE_SECONDS),
            allowance=self.policies.allowance(repository, digest, upload_id),
            over_quota=self._over_quota,
        )

    def _over_quota(self, writer: UploadWriter, size: int) -> int | None:
        """A body went past the allowance seen at `open`: refuse it and end the session,
        deleting its bytes, unless space was freed meanwhile (then the new allowance)."""
        try:
            self.policies.check_quota(writer.repository, size, upload_id=writer.upload_id)
        except QuotaExceeded:
            self._end(writer)
            raise
        return self.policies.allowance(writer.repository, upload_id=writer.upload_id)

    def _end(self, writer: UploadWriter) -> None:
        """Cancel a session a request was writing: its id becomes unknown, its bytes go now."""
        writer.move(UploadStatus.CANCELLED)
        if self.uploads.close(writer.repository, writer.upload_id, writer.started):
            self.storage.cancel_upload(writer.state)

    def close(self, writer: UploadWriter) -> int:
        """Record what was written (also after a client disconnect) and release the lease."""
        writer.move(UploadStatus.STARTED)
        self.uploads.release(writer.upload_id, writer.offset, writer.state)
        if writer.hasher is not None:
            self.hashers.put(writer.upload_id, writer.offset, writer.hasher)
        return writer.offset

    def complete(self, writer: UploadWriter, digest_param: str | None) -> str:
        """Verify the digest of everything written, then make the blob visible."""
        try:
            digest = _required_digest(digest_param)
            algorithm, _, expected = digest.partition(":")
            hasher = writer.hasher if algorithm == RUNNING_HASH else None
            if hasher is None:
                hasher = hashlib.new(algorithm)
                for chunk in self.storage.read_upload(writer.state, writer.offset):
                    hasher.update(chunk)
        except Exception:
            writer.hasher = None
            self.close(writer)
            raise
        if hasher.hexdigest() != expected:
            # Rejected bytes are not kept for a day until collection: they go now.
            self._end(writer)
            raise DigestInvalid(detail={"digest": digest})
        try:
            self.policies.check_quota(writer.repository, writer.offset, digest, writer.upload_id)
        except QuotaExceeded:
            self._end(writer)
            raise
        writer.move(UploadStatus.COMMITTED)
        self.blobs.touch(digest)
        self._store(writer.state, writer.offset, digest)
        session = (writer.upload_id, writer.started)
        if not self.uploads.finish(session, writer.repository, digest, writer.offset):
            raise BlobUploadUnknown("the upload was completed or cancelled by another request")
        return digest

    def _store(self, state: dict[str, Any], size: int, digest: str) -> None:
        if self.storage.stat(digest) == size:
            self.storage.cancel_upload(state)
        else:
            self.storage.commit_upload(state, size, digest)

    def put_whole(self, repository: str, digest_param: str | None, body: bytes, length: int | None) -> str:
        """A monolithic upload whose body is already in memory: no session row needed."""
        digest = self._verify_body(repository, digest_param, body, length)
        self.blobs.touch(digest)
        self._store_body(digest, body)
        self.uploads.finish(None, repository, digest, len(body))
        return digest

    def finish_small(
        self, repository: str, upload_id: str, digest_param: str | None, body: bytes, start: int | None
    ) -> str:
        """The final PUT of a session, its whole (small) body in memory. On a session with
        nothing written yet this is one write transaction and no lease: closing the
        session in `finish_upload` decides which request wins."""
        session = self._session(repository, upload_id)
        if session.offset or (start is not None and start != session.offset):
            writer = self.open(repository, upload_id, start, len(body))
            writer.write([body])
            return self.complete(writer, digest_param)
        digest = self._verify_body(repository, digest_param, body, None)
        self.blobs.touch(digest)
        # A fresh file, not the session's: a concurrent request on the same session must
        # never be able to change bytes this request verified.
        self._store_body(digest, body)
        if session.row is not None:
            self.storage.cancel_upload(session.state)
        if not self.uploads.finish((upload_id, session.started), repository, digest, len(body)):
            raise BlobUploadUnknown("the upload was completed or cancelled by another request")
        return digest

    def _verify_body(self, repository: str, digest_param: str | None, body: bytes, length: int | None) -> str:
        digest = _required_digest(digest_param)
        if length is not None and length != len(body):
            raise SizeInvalid(detail={"expected": length, "received": len(body)})
        self.policies.check_quota(repository, len(body), digest)
        algorithm, _, expected = digest.partition(":")
        if hashlib.new(algorithm, body).hexdigest() != expected:
            raise DigestInvalid(detail={"digest": digest})
        return digest

    def _store_body(self, digest: str, body: bytes) -> None:
        if self.storage.stat(digest) != len(body):
            self.storage.put(digest, body)

    def cancel(self, repository: str, upload_id: str) -> None:
        session = self._session(repository, upload_id)
        if not self.uploads.close(repository, upload_id, session.started):
            raise BlobUploadUnknown(detail={"uuid": upload_id})
        if session.row is not None:
            self.storage.cancel_upload(session.state)
