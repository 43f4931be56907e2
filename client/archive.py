"""`docker save` archives (`docker-archive:FILE[:REF]`), read and written.

Reading follows `manifest.json` (`Config`, `RepoTags`, `Layers`), so both the legacy layout
(`ID/layer.tar`) and docker 25's (`blobs/sha256/HEX`) work. Blobs are read straight from
their offsets in the uncompressed tar, so parallel workers need no shared tarfile.

Writing produces what docker 25 saves: blobs under `blobs/sha256/`, `manifest.json` for
`docker load`, and `index.json` + `oci-layout`, so the archive is an OCI layout too. The tar
is built in a temp file and renamed into place on commit.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import tarfile
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.errors import ClientError, NotFound, UsageError
from client.image import CHUNK, BlobOrigins, BlobStream, ImageSource, Progress, RegistryRepo, StreamReader, verify_bytes
from client.layout import LAYOUT_VERSION, REF_NAME
from registry.oci import mediatypes as mt
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor
from registry.oci.reference import InvalidReference, parse_reference

_MAGIC = {b"\x1f\x8b": mt.OCI_LAYER_GZIP, b"\x28\xb5\x2f\xfd": mt.OCI_LAYER_ZSTD}


def _same_image(tag: str, wanted: str) -> bool:
    try:
        return parse_reference(tag) == parse_reference(wanted)
    except InvalidReference:
        return tag == wanted


class DockerArchiveSource:
    registry: RegistryRepo | None = None
    origins: BlobOrigins | None = None

    def __init__(self, path: Path, reference: str | None) -> None:
        self.path = path
        self.name = f"docker-archive:{path}" + (f":{reference}" if reference else "")
        try:
            with tarfile.open(path, "r:") as tar:
                self._members = _regular_members(tar)
                entries = json.loads(self._read(tar, "manifest.json"))
                entry = self._choose(entries, reference)
                config = self._read(tar, entry["Config"])
        except (OSError, tarfile.TarError, KeyError, ValueError) as exc:
            raise ClientError(f"{path}: not a readable docker archive: {exc}") from None
        self._paths: dict[str, str] = {}
        config_descriptor = Descriptor(mt.OCI_CONFIG, digest_bytes(config), len(config))
        self._paths[config_descriptor.digest] = entry["Config"]
        layers = [self._layer(name) for name in entry.get("Layers") or []]
        manifest = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": config_descriptor.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        self._manifest = json.dumps(manifest, separators=(",", ":")).encode()

    def _read(self, tar: tarfile.TarFile, name: str) -> bytes:
        extracted = tar.extractfile(self._members[name.removeprefix("./")])
        if extracted is None:
            raise KeyError(name)
        return extracted.read()

    @staticmethod
    def _choose(entries: list[dict[str, Any]], reference: str | None) -> dict[str, Any]:
        if reference is None:
            if len(entries) != 1:
                raise UsageError("the archive holds several images: name one as docker-archive:FILE:REF")
            return entries[0]
        if reference.startswith("@") and reference[1:].isdigit():
            return entries[int(reference[1:])]
        for entry in entries:
            if any(_same_image(tag, reference) for tag in entry.get("RepoTags") or []):
                return entry
        raise NotFound(f"no image {reference} in the archive")

    def _layer(self, name: str) -> Descriptor:
        member = self._members[name.removeprefix("./")]
        hasher = hashlib.sha256()
        with open(self.path, "rb") as f:
            f.seek(member.offset_data)
            head = f.read(4)
            hasher.update(head)
            remaining = member.size - len(head)
            while remaining > 0:
                block = f.read(min(CHUNK, remaining))
                if not block:
                    raise ClientError(f"{self.path}: {name} is truncated")
                hasher.update(block)
                remaining -= len(block)
        media_type = next((t for magic, t in _MAGIC.items() if head.startswith(magic)), mt.OCI_LAYER)
        descriptor = Descriptor(media_type, f"sha256:{hasher.hexdigest()}", member.size)
        self._paths[descriptor.digest] = name
        return descriptor

    def root(self) -> tuple[bytes, str]:
        return self._manifest, mt.OCI_MANIFEST

    def manifest(self, descriptor: Descriptor) -> bytes:
        if descriptor.digest != digest_bytes(self._manifest):
            raise NotFound(f"no manifest {descriptor.digest} in {self.path}")
        return verify_bytes(self._manifest, descriptor)

    def open_blob(self, descriptor: Descriptor, offset: int = 0) -> BlobStream:
        member = self._members[self._paths[descriptor.digest].removeprefix("./")]
        f = open(self.path, "rb")
        f.seek(member.offset_data + offset)
        remaining = [member.size - offset]

        def chunks() -> Any:
            while remaining[0] > 0:
                block = f.read(min(CHUNK, remaining[0]))
                if not block:
                    return
                remaining[0] -= len(block)
                yield block

        return BlobStream(chunks(), offset, f.close)

    def close(self) -> None:
        return None


class DockerArchiveTarget:
    registry: RegistryRepo | None = None
    origins: BlobOrigins | None = None

    def __init__(self, path: Path, reference: str | None) -> None:
        self.path = path
        self.name = f"docker-archive:{path}"
        self.repo_tag = None
        if reference:
            try:
                self.repo_tag = parse_reference(reference).familiar()
            except InvalidReference as exc:
                raise UsageError(str(exc)) from None
        fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.")
        os.close(fd)
        self._tmp = Path(tmp)
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.PAX_FORMAT)
        self._lock = threading.Lock()
        self._written: set[str] = set()
        self._root: tuple[Descriptor, dict[str, Any]] | None = None

    def _add(self, name: str, size: int, fileobj: Any) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = int(time.time())
        info.mode = 0o644
        self._tar.addfile(info, fileobj)

    def has_blob(self, descriptor: Descriptor) -> bool:
        return descriptor.digest in self._written

    def put_blob(
        self, descriptor: Descriptor, source: ImageSource, progress: Progress, mount_from: Sequence[str]
    ) -> str:
        with self._lock:
            stream = source.open_blob(descriptor)
            try:
                reader = StreamReader(descriptor, stream, progress)
                self._add(_blob_name(descriptor.digest), descriptor.size, reader)
                reader.read()
            finally:
                stream.close()
            self._written.add(descriptor.digest)
        return "stored"

    def put_manifest(self, data: bytes, descriptor: Descriptor, root: bool) -> None:
        if descriptor.media_type in mt.INDEXES:
            raise UsageError("a docker archive holds single-platform images: choose one with --platform")
        verify_bytes(data, descriptor)
        with self._lock:
            self._add(_blob_name(descriptor.digest), len(data), io.BytesIO(data))
        if root:
            self._root = (descriptor, json.loads(data))

    def commit(self) -> None:
        if self._root is None:
            raise ClientError("no image was written to the archive")
        descriptor, manifest = self._root
        entry = {
            "Config": _blob_name(manifest["config"]["digest"]),
            "RepoTags": [self.repo_tag] if self.repo_tag else [],
            "Layers": [_blob_name(layer["digest"]) for layer in manifest.get("layers", [])],
        }
        index_entry = descriptor.to_json()
        if self.repo_tag:
            index_entry["annotations"] = {REF_NAME: self.repo_tag}
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [index_entry]}
        for name, data in (
            ("manifest.json", json.dumps([entry]).encode()),
            ("oci-layout", LAYOUT_VERSION),
            ("index.json", json.dumps(index).encode()),
        ):
            self._add(name, len(data), io.BytesIO(data))
        self._tar.close()
        os.replace(self._tmp, self.path)

    def close(self) -> None:
        self._tar.close()
        self._tmp.unlink(missing_ok=True)


def _regular_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Files by name, symlinks resolved: legacy `docker save` links repeated layers to one copy."""
    members = {m.name.removeprefix("./"): m for m in tar.getmembers()}
    resolved = {name: _follow(members, name) for name in members}
    return {name: member for name, member in resolved.items() if member is not None}


def _follow(members: dict[str, tarfile.TarInfo], name: str) -> tarfile.TarInfo | None:
    member = members.get(name)
    for _ in range(8):
        if member is None or member.isfile():
            return member
        if not member.issym():
            return None
        name = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        member = members.get(name)
    return None


def _blob_name(digest: str) -> str:
    algorithm, _, hex_ = digest.partition(":")
    return f"blobs/{algorithm}/{hex_}"
