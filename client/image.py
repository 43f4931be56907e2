"""What a copy needs from where images come from and where they go, whatever the transport.

A source serves manifests and blob streams; a target receives blobs and manifests. Registry,
OCI layout and docker-archive each implement both, so pull, push and copy are one algorithm.

Both sides also say where they are on a registry (`registry`) and whether they keep a record
of where their blobs came from or went (`origins`, the local store's): with those, a push from
the store to a registry that already holds a blob in another repository mounts it there
instead of uploading it, as docker does with its per-layer distribution metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol

from client.errors import VerificationError
from registry.oci.digest import digest_bytes, parse_digest
from registry.oci.manifest import Descriptor

CHUNK = 1024 * 1024
Progress = Callable[[int], None]


def _nothing() -> None:
    pass


class BlobStream(NamedTuple):
    """Chunks of a blob starting at `offset` (0 when the source could not seek)."""

    chunks: Iterator[bytes]
    offset: int = 0
    close: Callable[[], None] = _nothing


class RegistryRepo(NamedTuple):
    """A repository on a registry, the host as `RegistryAPI.host` names it (what a mount must match)."""

    host: str
    repository: str


class BlobOrigins(Protocol):
    """A record of the registry repositories each blob was pulled from or pushed to.

    It only saves uploads (a mount it suggests may be refused, and the blob is then sent), so
    a record that is missing or unreadable reads as empty.
    """

    def origins(self) -> dict[str, list[RegistryRepo]]:
        """digest -> repositories known to hold it, most recent first."""
        ...

    def add_origins(self, digests: Iterable[str], where: RegistryRepo) -> None:
        """Remember that these blobs are in `where` now."""
        ...


class ImageSource(Protocol):
    name: str
    """Human-readable, for messages."""

    registry: RegistryRepo | None
    """Set for registries: a target on the same host can mount blobs from here, a layout records it."""

    origins: BlobOrigins | None
    """Set for layouts: where blobs were seen before, so a push can mount them; told where they went."""

    def root(self) -> tuple[bytes, str]:
        """The manifest or index the reference names, and its media type."""
        ...

    def manifest(self, descriptor: Descriptor) -> bytes: ...

    def open_blob(self, descriptor: Descriptor, offset: int = 0) -> BlobStream: ...

    def close(self) -> None: ...


class ImageTarget(Protocol):
    name: str
    registry: RegistryRepo | None
    """Set for registries: blobs the source knows on the same host can be mounted; a layout source records it."""

    origins: BlobOrigins | None
    """Set for layouts: told which registry repository the blobs came from."""

    def has_blob(self, descriptor: Descriptor) -> bool: ...

    def put_blob(
        self, descriptor: Descriptor, source: ImageSource, progress: Progress, mount_from: Sequence[str]
    ) -> str:
        """Store the blob; return how ("pushed", "mounted", "stored").

        `mount_from`: repositories on this target's registry that may hold the blob, best first;
        only a registry uses them.
        """
        ...

    def put_manifest(self, data: bytes, descriptor: Descriptor, root: bool) -> None:
        """Children first; the root last, tagged with the target's name."""
        ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


class Verifier:
    """Hashes bytes as they pass and checks the total against a descriptor."""

    def __init__(self, descriptor: Descriptor) -> None:
        self.descriptor = descriptor
        self.hasher = parse_digest(descriptor.digest).hasher()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self.hasher.update(chunk)
        self.size += len(chunk)
        if self.size > self.descriptor.size:
            raise VerificationError(f"{self.descriptor.digest}: more than the {self.descriptor.size} bytes declared")

    def check(self) -> None:
        d = self.descriptor
        if self.size != d.size:
            raise VerificationError(f"{d.digest}: got {self.size} bytes, the descriptor says {d.size}")
        got = f"{d.digest.split(':', 1)[0]}:{self.hasher.hexdigest()}"
        if got != d.digest:
            raise VerificationError(f"content digest {got} does not match {d.digest}")


def verify_bytes(data: bytes, descriptor: Descriptor) -> bytes:
    algorithm = descriptor.digest.split(":", 1)[0]
    if len(data) != descriptor.size or digest_bytes(data, algorithm) != descriptor.digest:
        raise VerificationError(f"manifest content does not match {descriptor.digest}")
    return data


class StreamReader:
    """A verified blob stream as an HTTP body (iterable with a length) or a file (`read`)."""

    def __init__(self, descriptor: Descriptor, stream: BlobStream, progress: Progress) -> None:
        if stream.offset:
            raise ValueError("a StreamReader starts at offset 0")
        self._chunks = stream.chunks
        self._verifier = Verifier(descriptor)
        self._progress = progress
        self._buffer = b""
        self._pos = 0
        self.size = descriptor.size

    def __len__(self) -> int:
        return self.size

    def _next(self) -> bytes | None:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._verifier.check()
            return None
        self._verifier.update(chunk)
        self._progress(len(chunk))
        return chunk

    def __iter__(self) -> Iterator[bytes]:
        if self._pos < len(self._buffer):
            yield self._buffer[self._pos :]
        self._buffer, self._pos = b"", 0
        while (chunk := self._next()) is not None:
            yield chunk

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            return b"".join(self)
        while len(self._buffer) - self._pos < n:
            chunk = self._next()
            if chunk is None:
                break
            self._buffer, self._pos = self._buffer[self._pos :] + chunk, 0
        out = self._buffer[self._pos : self._pos + n]
        self._pos += len(out)
        return out
