"""The storage protocol every backend implements, like CNCF Distribution's StorageDriver.

Storage knows bytes, digests as opaque keys and upload sessions; it knows nothing of HTTP,
SQL or OCI rules. An upload's backend state is a JSON-serialisable dict that the caller
keeps (in the database), so any replica can continue the upload.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

UploadState = dict[str, Any]


class BlobStorage(Protocol):
    write_batch: int
    """How many bytes callers should gather before each `write_upload`."""

    def stat(self, digest: str) -> int | None:
        """The stored blob's size, or None when it is absent."""

    def read(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end) of a blob in large chunks."""

    def delete(self, digest: str) -> None:
        """Remove a blob's bytes; absent blobs are not an error."""

    def redirect_url(self, digest: str) -> str | None:
        """A URL a client may fetch the blob from directly, or None to stream it."""

    def put(self, digest: str, data: bytes) -> None:
        """Store a whole blob already in memory (and verified), atomically: one step
        where an upload session would take several."""

    def start_upload(self, upload_id: str) -> UploadState:
        """Begin an upload session and return its opaque state."""

    def write_upload(
        self, state: UploadState, offset: int, chunks: Sequence[bytes], writeback: bool = True
    ) -> UploadState:
        """Write `chunks` at `offset` (always the current end) and return the new state.

        `writeback` asks for the bytes to head for the disk now, so that the commit finds
        little left to make durable (a push's client waits for that commit); a writer
        whose client does not wait for the commit passes False and lets the cache absorb them."""

    def read_upload(self, state: UploadState, size: int) -> Iterator[bytes]:
        """Stream the first `size` bytes written so far (to re-hash on another replica)."""

    def commit_upload(self, state: UploadState, size: int, digest: str) -> None:
        """Make the upload's `size` bytes the blob `digest`, atomically."""

    def cancel_upload(self, state: UploadState) -> None:
        """Drop an upload session and everything it stored."""

    def sweep_uploads(self, older_than: float, active: set[str]) -> int:
        """Remove upload leftovers older than the epoch time `older_than` whose session id is
        not in `active` (a crashed writer's parts, abandoned multipart uploads); returns bytes freed."""
