"""Compressing uncompressed layers on their way to a registry, as docker and skopeo do.

`docker save` archives (and OCI layouts built from them) hold plain tar layers; sent as they
are, a registry stores and serves three times the bytes. `CompressingSource` wraps a source
whose root is an image manifest: each uncompressed layer is compressed once into a temporary
file (in parallel: zlib and zstd release the GIL), and the manifest is rewritten to name the
compressed blobs (digest, size, media type). The config, and so its `rootfs.diff_ids` (the
uncompressed digests), stays byte for byte. Indexes pass unchanged: rewriting a child would
change the digest the index names, so their layers travel as they are.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

from client.errors import ClientError, UsageError
from client.image import CHUNK, BlobOrigins, BlobStream, ImageSource, RegistryRepo, Verifier
from registry.oci import mediatypes as mt
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor

COMPRESSIONS = ("gzip", "zstd", "none")
GZIP_LEVEL = 6
"""Go's (and so docker's and skopeo's) default."""
ZSTD_LEVEL = 3
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
COMPRESSED_TYPES = {
    (mt.OCI_LAYER, "gzip"): mt.OCI_LAYER_GZIP,
    (mt.OCI_LAYER, "zstd"): mt.OCI_LAYER_ZSTD,
    (DOCKER_LAYER, "gzip"): mt.DOCKER_LAYER_GZIP,
}


def choose(compression: str | None, preserve_digests: bool) -> str:
    """The compression to apply: gzip unless told otherwise; none when digests must be kept."""
    if compression is not None and compression not in COMPRESSIONS:
        raise UsageError(f"unknown compression {compression[:40]!r} (use one of {', '.join(COMPRESSIONS)})")
    if preserve_digests:
        if compression not in (None, "none"):
            raise UsageError(
                f"--preserve-digests keeps every layer as it is; it contradicts --compression {compression}"
            )
        return "none"
    return compression or "gzip"


class CompressingSource:
    """`source` with its image manifest's uncompressed layers compressed (see the module's docstring)."""

    def __init__(self, source: ImageSource, compression: str, jobs: int = 4) -> None:
        self.source = source
        self.compression = compression
        self.jobs = jobs
        self.name = source.name
        self.registry: RegistryRepo | None = source.registry
        self.origins: BlobOrigins | None = source.origins
        self._dir: Path | None = None
        self._files: dict[str, Path] = {}
        self._root: tuple[bytes, str] | None = None

    def root(self) -> tuple[bytes, str]:
        if self._root is None:
            data, media_type = self.source.root()
            self._root = self._rewrite(data, media_type)
        return self._root

    def _rewrite(self, data: bytes, media_type: str) -> tuple[bytes, str]:
        try:
            doc = json.loads(data)
        except ValueError:
            return data, media_type  # the copy reports the bad manifest
        kind = media_type or (doc.get("mediaType") if isinstance(doc, dict) else None)
        layers = doc.get("layers") if isinstance(doc, dict) else None
        if kind not in mt.IMAGE_MANIFESTS or not isinstance(layers, list):
            return data, media_type
        todo = [i for i, layer in enumerate(layers) if isinstance(layer, dict) and _uncompressed(layer)]
        if not todo:
            return data, media_type
        if kind == mt.DOCKER_MANIFEST and self.compression == "zstd":
            raise UsageError(f"{self.name}: a docker manifest cannot name zstd layers; use --compression gzip")
        import tempfile  # here, as shutil in close(): a pull (into the store) imports this module for choose() only

        from client.parallel import run_all

        self._dir = Path(tempfile.mkdtemp(prefix="berth-compress-"))
        compressed = run_all(lambda i: self._compress(layers[i]), todo, self.jobs)
        for i, descriptor in zip(todo, compressed, strict=True):
            layers[i] = {**layers[i], **descriptor.to_json()}
        return json.dumps(doc, separators=(",", ":")).encode(), media_type

    def _compress(self, layer: dict[str, Any]) -> Descriptor:
        """Compress one layer into a file, checking the plain bytes against the layer's descriptor."""
        plain = Descriptor(layer["mediaType"], layer["digest"], layer["size"])
        assert self._dir is not None
        path = self._dir / plain.digest.replace(":", "-")
        verifier = Verifier(plain)
        stream = self.source.open_blob(plain)
        try:
            with open(path, "wb") as out:
                hashing = _Hashing(out)
                with _compressor(self.compression, hashing, plain.size) as writer:
                    for chunk in stream.chunks:
                        verifier.update(chunk)
                        writer.write(chunk)
        finally:
            stream.close()
        verifier.check()
        media_type = COMPRESSED_TYPES[(plain.media_type, self.compression)]
        descriptor = Descriptor(media_type, f"sha256:{hashing.hasher.hexdigest()}", hashing.size)
        self._files[descriptor.digest] = path
        return descriptor

    def manifest(self, descriptor: Descriptor) -> bytes:
        root = self.root()[0]
        if descriptor.digest == digest_bytes(root):
            return root
        return self.source.manifest(descriptor)

    def open_blob(self, descriptor: Descriptor, offset: int = 0) -> BlobStream:
        path = self._files.get(descriptor.digest)
        if path is None:
            return self.source.open_blob(descriptor, offset)
        f = open(path, "rb")
        f.seek(offset)
        return BlobStream(iter(lambda: f.read(CHUNK), b""), offset, f.close)

    def close(self) -> None:
        if self._dir is not None:
            import shutil

            shutil.rmtree(self._dir, ignore_errors=True)
        self.source.close()


def _uncompressed(layer: dict[str, Any]) -> bool:
    return layer.get("mediaType") in (mt.OCI_LAYER, DOCKER_LAYER) and not layer.get("urls")


class _Hashing:
    """A file that hashes and counts what is written to it: the compressed blob's digest and size."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.hasher.update(view)
        self.size += view.nbytes
        return self.out.write(view)

    def flush(self) -> None:
        self.out.flush()


def _compressor(compression: str, out: _Hashing, size: int) -> Any:
    if compression == "gzip":
        import gzip

        return gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[arg-type]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).stream_writer(out, size=size, closefd=False)  # type: ignore[arg-type]
    raise ClientError(f"no compressor for {compression!r}")
