"""Blobs as a repository sees them: visible only when linked to it, mounted across repositories."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from registry.errors import BlobUnknown, DigestInvalid, RangeNotSatisfiable, StillReferenced
from registry.metadata.blobs import BlobIndex
from registry.oci.digest import InvalidDigest, parse_digest
from registry.storage.base import BlobStorage

CanRead = Callable[[str], bool]


def check_digest(value: str) -> str:
    try:
        return str(parse_digest(value))
    except InvalidDigest as exc:
        raise DigestInvalid(str(exc)) from None


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=a-b` range as [start, end), or None for the whole blob."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise RangeNotSatisfiable(f"unsupported range {header!r}", headers={"Content-Range": f"bytes */{size}"})
    first, _, last = spec.strip().partition("-")
    try:
        if first:
            start = int(first)
            end = min(int(last) + 1, size) if last else size
        else:
            start, end = max(size - int(last), 0), size
    except ValueError:
        raise RangeNotSatisfiable(f"invalid range {header!r}", headers={"Content-Range": f"bytes */{size}"}) from None
    if start >= size or start >= end or start < 0:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


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
