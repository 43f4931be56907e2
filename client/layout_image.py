"""An OCI layout as a copy source or target (`oci:DIR[:TAG]` and the local store).

Downloads land in `.partial/` inside the layout and are resumed from where they stopped,
within a run (after a dropped connection) and across runs (after an interrupted pull). A lock
on the partial file keeps two concurrent pulls of one blob from writing it together.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from typing import BinaryIO

from client.errors import NetworkError, VerificationError
from client.image import CHUNK, BlobOrigins, BlobStream, ImageSource, Progress, RegistryRepo, Verifier, verify_bytes
from client.layout import Layout
from registry.oci.manifest import Descriptor

RESUME_ATTEMPTS = 4


class LayoutSource:
    registry: RegistryRepo | None = None

    def __init__(self, layout: Layout, name: str, display: str) -> None:
        self.layout = layout
        self.origins: BlobOrigins | None = layout
        self.ref_name = name
        self.name = display

    def root(self) -> tuple[bytes, str]:
        descriptor = self.layout.resolve(self.ref_name)
        return verify_bytes(self.layout.read_blob(descriptor.digest), descriptor), descriptor.media_type

    def manifest(self, descriptor: Descriptor) -> bytes:
        return verify_bytes(self.layout.read_blob(descriptor.digest), descriptor)

    def open_blob(self, descriptor: Descriptor, offset: int = 0) -> BlobStream:
        f = self.layout.open_blob(descriptor.digest)
        f.seek(offset)
        return BlobStream(iter(lambda: f.read(CHUNK), b""), offset, f.close)

    def close(self) -> None:
        return None


class LayoutTarget:
    registry: RegistryRepo | None = None

    def __init__(self, layout: Layout, name: str | None, display: str) -> None:
        self.layout = layout
        self.origins: BlobOrigins | None = layout
        self.ref_name = name
        self.name = display

    def has_blob(self, descriptor: Descriptor) -> bool:
        return self.layout.has_blob(descriptor.digest)

    def put_blob(
        self, descriptor: Descriptor, source: ImageSource, progress: Progress, mount_from: Sequence[str]
    ) -> str:
        """Download under an exclusive lock on the partial file; the rename happens before unlocking."""
        partial = self.layout.partial_path(descriptor.digest)
        partial.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "ab+") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            if self.layout.has_blob(descriptor.digest):
                return "exists"
            verifier = _resume(out, descriptor, progress)
            if verifier.size < descriptor.size:
                verifier = _download(out, verifier, source, progress)
            out.flush()
            os.fsync(out.fileno())
            try:
                verifier.check()
            except VerificationError:
                out.truncate(0)
                raise
            self.layout.commit_partial(descriptor.digest)
        return "stored"

    def put_manifest(self, data: bytes, descriptor: Descriptor, root: bool) -> None:
        self.layout.write_blob(verify_bytes(data, descriptor))
        if root:
            self.layout.add(descriptor, self.ref_name)

    def commit(self) -> None:
        return None

    def close(self) -> None:
        return None


def _resume(out: BinaryIO, descriptor: Descriptor, progress: Progress) -> Verifier:
    """Hash what an earlier attempt left in the partial file, or empty it if it cannot be right."""
    verifier = Verifier(descriptor)
    out.seek(0)
    try:
        while block := out.read(CHUNK):
            verifier.update(block)
    except VerificationError:
        out.truncate(0)
        return Verifier(descriptor)
    if verifier.size:
        progress(verifier.size)
    return verifier


def _download(out: BinaryIO, verifier: Verifier, source: ImageSource, progress: Progress) -> Verifier:
    """Append the rest of the blob, asking again from the current offset when the connection drops."""
    descriptor = verifier.descriptor
    for attempt in range(RESUME_ATTEMPTS):
        stream = source.open_blob(descriptor, verifier.size)
        try:
            if stream.offset != verifier.size:
                progress(-verifier.size)
                out.truncate(0)
                verifier = Verifier(descriptor)
            for chunk in stream.chunks:
                verifier.update(chunk)
                out.write(chunk)
                progress(len(chunk))
            return verifier
        except NetworkError:
            if attempt + 1 == RESUME_ATTEMPTS:
                raise
            out.flush()
        except VerificationError:
            out.truncate(0)
            raise
        finally:
            stream.close()
    return verifier
