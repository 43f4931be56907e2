"""Blobs as a repository sees them: visible only when linked to it, mounted across repositories."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from registry.errors import BlobUnknown, DigestInvalid, StillReferenced
from registry.metadata.blobs import BlobIndex
from registry.oci.digest import InvalidDigest, parse_digest
from registry.storage.base import BlobStorage

CanRead = Callable[[str], bool]


def check_digest(value: str) -> str:
    try:
        return str(parse_digest(value))
    except InvalidDigest as exc:
        raise DigestInvalid(str(exc)) from None


class BlobService:
    def __init__(self, blobs: BlobIndex, storage: BlobStorage):
        self.blobs = blobs
        self.storage = storage

    def size(self, repository: str, digest: str) -> int:
        size = self.blobs.size(repository, check_digest(digest))
        if size is None:
            raise BlobUnknown(detail={"digest": digest})
        return size

    def read(self, digest: str, start: int, end: int) -> Iterator[bytes]:
        return self.storage.read(digest, start, end)

    def redirect_url(self, digest: str) -> str | None:
        return self.storage.redirect_url(digest)

    def delete(self, repository: str, digest: str) -> None:
        result = self.blobs.unlink(repository, check_digest(digest))
        if result is False:
            raise BlobUnknown(detail={"digest": digest})
        if isinstance(result, str):
            raise StillReferenced(f"blob {digest} is referenced by manifest {result}; delete the manifest first")

    def mount(self, repository: str, digest: str, source: str | None, can_read: CanRead) -> bool:
        """Link a blob from `source` (or, without one, from any readable repository)."""
        digest = check_digest(digest)
        if self.blobs.size(repository, digest) is not None:
            return True
        sources = [source] if source else self.blobs.holding(digest)
        for candidate in sources:
            if can_read(candidate) and self.blobs.mount(repository, digest, candidate) is not None:
                return True
        return False
