"""The two ends of a replication: this registry (`LocalSide`) and another one over HTTP (`RemoteSide`).

Both answer the same questions (which digest a tag names, a manifest's bytes, whether a blob
is present, the referrers of a digest) and take the same writes, so one copy routine pushes
(local to remote) and pulls (remote to local).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from registry.errors import ManifestUnknown, NameUnknown
from registry.metadata.blobs import BlobIndex
from registry.metadata.upstreams import UpstreamIndex
from registry.service.events import EventService
from registry.service.manifests import ManifestService
from registry.storage.base import BlobStorage
from registry.upstream.client import UpstreamClient, UpstreamRefused, descriptors

CHUNK = 1024 * 1024


class CopyFailed(Exception):
    """Bytes did not make what they claimed to be, or a side refused them."""


def referrer_tag(digest: str) -> str:
    """The OCI 1.1 tag schema's fallback tag listing the referrers of `digest`."""
    algorithm, _, hex_part = digest.partition(":")
    return f"{algorithm}-{hex_part}"[:128]


class Side(Protocol):
    name: str

    def head(self, repository: str, reference: str) -> str | None: ...
    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]: ...
    def has_blob(self, repository: str, digest: str) -> bool: ...
    def blob(self, repository: str, digest: str) -> tuple[int, Iterator[bytes]]: ...
    def put_blob(self, repository: str, digest: str, size: int, body: Iterator[bytes], mounts: list[str]) -> None: ...
    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        """Store a manifest; True when the side indexed its subject (it has a referrers API)."""
        ...

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None: ...
    def tags(self, repository: str) -> list[str]: ...
    def repositories(self) -> list[str]: ...
    def delete(self, repository: str, reference: str) -> bool: ...


class LocalSide:
    """This registry, through its services: writes are validated, held to quotas and recorded as
    events (`actor`), like a push, so they count in usage and drive on-push replications in turn."""

    def __init__(
        self,
        actor: str,
        manifests: ManifestService,
        blobs: BlobIndex,
        storage: BlobStorage,
        arrivals: UpstreamIndex,
        events: EventService,
        check_push: Callable[[str], None],
    ) -> None:
        self.name = "this registry"
        self.check_push = check_push
        """Refuses writes into a pull-through cache's repositories, as for any push."""
        self.actor = actor
        self.manifests = manifests
        self.blobs = blobs
        self.storage = storage
        self.arrivals = arrivals
        self.events = events

    def head(self, repository: str, reference: str) -> str | None:
        try:
            return self.manifests.get(repository, reference, content=False).digest
        except (ManifestUnknown, NameUnknown):
            return None

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        row = self.manifests.get(repository, reference)
        return row.content or b"", row.media_type

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.blobs.size(repository, digest) is not None

    def blob(self, repository: str, digest: str) -> tuple[int, Iterator[bytes]]:
        size = self.blobs.size(repository, digest)
        if size is None:
            raise CopyFailed(f"{repository} has no blob {digest}")
        return size, self.storage.read(digest)

    def put_blob(self, repository: str, digest: str, size: int, body: Iterator[bytes], mounts: list[str]) -> None:
        """Write the bytes to an upload session, verify size and digest, then commit and link
        them into the repository; bytes that are not the blob are never committed."""
        self.check_push(repository)
        self.manifests.policies.check_quota(repository, size, digest)
        hasher = hashlib.new(digest.partition(":")[0])
        state = self.storage.start_upload(str(uuid.uuid4()))
        offset, committed = 0, False
        batch: list[bytes] = []
        batched = 0
        try:
            for chunk in body:
                hasher.update(chunk)
                batch.append(chunk)
                batched += len(chunk)
                # Written in the storage's batch size (S3's multipart parts are at least 5 MiB).
                if batched >= self.storage.write_batch:
                    state = self.storage.write_upload(state, offset, batch)
                    offset, batch, batched = offset + batched, [], 0
                if offset + batched > size:
                    break
            if batch:
                state = self.storage.write_upload(state, offset, batch)
                offset += batched
            actual = f"{digest.partition(':')[0]}:{hasher.hexdigest()}"
            if offset != size or actual != digest:
                raise CopyFailed(f"blob {digest}: received {offset} bytes hashing to {actual}")
            self.storage.commit_upload(state, offset, digest)
            committed = True
        finally:
            if not committed:
                self.storage.cancel_upload(state)
        self.arrivals.blob_arrived(repository, digest, size)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        self.check_push(repository)
        tag = None if ":" in reference else reference
        event = self.events.in_transaction("push", repository, self.actor, "", tag=tag, media_type=media_type)
        self.manifests.put(repository, reference, body, media_type, lambda _name: False, event)
        return True

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        found = self.manifests.referrers(repository, digest, None)
        return [
            {
                "mediaType": r.media_type,
                "digest": r.digest,
                "size": r.size,
                **({"artifactType": r.artifact_type} if r.artifact_type else {}),
                **({"annotations": r.annotations} if r.annotations else {}),
            }
            for r in found
        ]

    def tags(self, repository: str) -> list[str]:
        try:
            return self.manifests.tags(repository, None, None)
        except NameUnknown:
            return []

    def repositories(self) -> list[str]:
        return self.manifests.repositories(None, None, lambda _name: True)

    def delete(self, repository: str, reference: str) -> bool:
        try:
            self.manifests.delete(repository, reference)
        except (ManifestUnknown, NameUnknown):
            return False
        target = {"digest": reference} if ":" in reference else {"tag": reference}
        self.events.record("delete", repository, self.actor, "", **target)  # type: ignore[arg-type]
        return True


class RemoteSide:
    """Another registry (ours, CNCF Distribution, any OCI registry) over HTTP."""

    def __init__(self, client: UpstreamClient) -> None:
        self.name = client.url
        self.client = client

    def head(self, repository: str, reference: str) -> str | None:
        return self.client.head_manifest(repository, reference)

    def manifest(self, repository: str, reference: str) -> tuple[bytes, str]:
        body, media_type, _announced = self.client.get_manifest(repository, reference)
        return body, media_type

    def has_blob(self, repository: str, digest: str) -> bool:
        return self.client.blob_size(repository, digest) is not None

    def blob(self, repository: str, digest: str) -> tuple[int, Iterator[bytes]]:
        response = self.client.open_blob(repository, digest)
        length = response.headers.get("Content-Length", "")
        if not length.isdigit():
            response.close()
            raise CopyFailed(f"{self.name} sent blob {digest} without a Content-Length")

        def chunks() -> Iterator[bytes]:
            with response:
                yield from response.iter_content(CHUNK)

        return int(length), chunks()

    def put_blob(self, repository: str, digest: str, size: int, body: Iterator[bytes], mounts: list[str]) -> None:
        location = self.client.start_upload(repository, digest, mounts[0] if mounts else None)
        if location is not None:
            self.client.finish_upload(repository, location, digest, size, body)

    def put_manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> bool:
        return self.client.put_manifest(repository, reference, body, media_type) is not None

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        found = self.client.referrers(repository, digest)
        if found is not None:
            return found
        try:
            body, _media_type = self.manifest(repository, referrer_tag(digest))
        except UpstreamRefused:
            return []
        return descriptors(body)

    def tags(self, repository: str) -> list[str]:
        return self.client.tags(repository)

    def repositories(self) -> list[str]:
        return self.client.repositories()

    def delete(self, repository: str, reference: str) -> bool:
        return self.client.delete_manifest(repository, reference)
