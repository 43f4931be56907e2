"""A registry repository as a copy target: blob uploads (mount, monolithic or chunked) and manifests.

A blob another repository on the registry may hold is mounted from it first; a refused mount
(202) leaves an upload session to send the bytes into. Small blobs go in one PUT; blobs
larger than `chunk_size` go in PATCHes of that size, which proxies with body limits accept
and registries can spread over replicas. A failed upload restarts from a fresh session,
since a half-sent stream cannot be replayed.
"""

from __future__ import annotations

from collections.abc import Sequence

from client.api import RegistryAPI
from client.errors import AuthError, NetworkError, RegistryError
from client.image import BlobOrigins, ImageSource, Progress, RegistryRepo, StreamReader
from registry.oci.manifest import Descriptor
from registry.oci.reference import Reference

CHUNK_SIZE = 64 * 1024 * 1024
UPLOAD_ATTEMPTS = 3
MOUNT_ATTEMPTS = 3
"""Candidate repositories tried per blob: a stale record must not cost more requests than an upload."""


class RegistryTarget:
    def __init__(self, api: RegistryAPI, reference: Reference, chunk_size: int = CHUNK_SIZE) -> None:
        self.api = api
        self.reference = reference
        self.name = str(reference)
        self.registry: RegistryRepo | None = RegistryRepo(api.host, reference.repository)
        self.origins: BlobOrigins | None = None
        self.chunk_size = chunk_size

    @property
    def repository(self) -> str:
        return self.reference.repository

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self.api.head_blob(self.repository, descriptor.digest) is not None

    def put_blob(
        self, descriptor: Descriptor, source: ImageSource, progress: Progress, mount_from: Sequence[str]
    ) -> str:
        location = self._mount(descriptor.digest, mount_from)
        if location is None:
            progress(descriptor.size)
            return "mounted"
        attempts = 1
        while True:
            counter = _Counter(progress)
            try:
                self._upload(location, descriptor, source, counter)
                return "pushed"
            except (NetworkError, RegistryError) as exc:
                progress(-counter.sent)
                retryable = isinstance(exc, NetworkError) or exc.status >= 500
                if not retryable or attempts == UPLOAD_ATTEMPTS:
                    self.api.cancel_upload(location)
                    raise
            attempts += 1
            location = self.api.start_upload(self.repository)

    def _mount(self, digest: str, candidates: Sequence[str]) -> str | None:
        """Mount from the first candidate that has the blob (None), else return an upload session.

        Each refused mount (202) opens a session: the last is kept for the upload, the others are
        cancelled. An error answer (no pull access to the candidate, say) skips the candidate: a
        real problem with this repository shows again when the upload starts.
        """
        session: str | None = None
        for repository in [r for r in candidates if r != self.repository][:MOUNT_ATTEMPTS]:
            try:
                answer = self.api.mount_blob(self.repository, digest, repository)
            except (AuthError, RegistryError):
                continue
            if session:
                self.api.cancel_upload(session)
            if answer is None:
                return None
            session = answer
        return session or self.api.start_upload(self.repository)

    def _upload(self, location: str, descriptor: Descriptor, source: ImageSource, progress: Progress) -> None:
        stream = source.open_blob(descriptor)
        try:
            reader = StreamReader(descriptor, stream, progress)
            if descriptor.size <= self.chunk_size:
                self.api.finish_upload(location, descriptor.digest, reader, descriptor.size)
                return
            start = 0
            while chunk := reader.read(self.chunk_size):
                location = self.api.upload_chunk(location, chunk, start)
                start += len(chunk)
            self.api.finish_upload(location, descriptor.digest)
        finally:
            stream.close()

    def put_manifest(self, data: bytes, descriptor: Descriptor, root: bool) -> None:
        reference = (self.reference.tag or descriptor.digest) if root else descriptor.digest
        if root and self.reference.digest and self.reference.digest != descriptor.digest:
            reference = descriptor.digest
        self.api.put_manifest(self.repository, reference, data, descriptor.media_type)

    def commit(self) -> None:
        return None

    def close(self) -> None:
        self.api.close()


class _Counter:
    """Forwards progress and remembers how much, to take it back when an upload restarts."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.sent = 0

    def __call__(self, n: int) -> None:
        self.sent += n
        self.progress(n)
