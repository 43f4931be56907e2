"""OCI image layouts (`oci-layout`, `index.json`, `blobs/ALG/HEX`): `oci:DIR` and the local store.

The local store is a layout at `$BERTH_ROOT/images` whose index entries carry the full
reference (`docker.io/library/busybox:latest`) in `org.opencontainers.image.ref.name`; the
engine runs images from it through this module's `Layout`:

    layout = open_store()
    for entry in layout.entries(): entry.name, entry.descriptor
    descriptor, manifest = layout.image("docker.io/library/busybox:latest")
    with layout.open_blob(manifest.layers[0].digest) as f: ...

Blobs are written to a temp file, verified and renamed into place; `index.json` is
rewritten atomically under an exclusive lock on the layout directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from client.errors import NotFound, UsageError
from client.files import atomic_write
from client.platform import Platform, host_platform, select
from registry.oci import mediatypes as mt
from registry.oci.digest import InvalidDigest, digest_bytes, parse_digest
from registry.oci.manifest import Descriptor, Manifest, parse_manifest
from registry.oci.reference import InvalidReference, parse_reference

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
PARTIAL_DIR = ".partial"


def berth_root() -> Path:
    if os.environ.get("BERTH_ROOT"):
        return Path(os.environ["BERTH_ROOT"])
    if os.geteuid() == 0:
        return Path("/var/lib/berth")
    return Path.home() / ".local" / "share" / "berth"


def store_name(reference: str) -> str:
    """The name an image has in the local store: the full, normalized reference."""
    try:
        return str(parse_reference(reference))
    except InvalidReference as exc:
        raise UsageError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ImageEntry:
    name: str | None
    descriptor: Descriptor


def _descriptor(entry: dict[str, Any]) -> Descriptor:
    return Descriptor(entry["mediaType"], entry["digest"], int(entry["size"]),
                      entry.get("artifactType"), entry.get("annotations"), entry.get("platform"))


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path | str, create: bool = False) -> Layout:
        """Open the layout at `root`; with `create`, make an empty one if there is none."""
        path = Path(root)
        if not (path / "oci-layout").exists():
            if not create:
                raise NotFound(f"{path} is not an OCI image layout (no oci-layout file)")
            path.mkdir(parents=True, exist_ok=True)
            atomic_write(path / "oci-layout", LAYOUT_VERSION)
            if not (path / "index.json").exists():
                atomic_write(path / "index.json", _index_bytes([]))
        (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        return cls(path)

    def _index(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "index.json").read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "manifests": []}
        return data if isinstance(data, dict) else {"schemaVersion": 2, "manifests": []}

    def entries(self) -> list[ImageEntry]:
        found = []
        for entry in self._index().get("manifests") or []:
            descriptor = _descriptor(entry)
            found.append(ImageEntry((descriptor.annotations or {}).get(REF_NAME), descriptor))
        return found

    def find(self, name: str) -> Descriptor | None:
        for entry in self.entries():
            if entry.name == name:
                return entry.descriptor
        return None

    def resolve(self, name: str) -> Descriptor:
        """The entry named `name`, or, given a digest, the entry or blob with that digest."""
        found = self.find(name)
        if found:
            return found
        if name.startswith("sha256:"):
            for entry in self.entries():
                if entry.descriptor.digest == name:
                    return entry.descriptor
        raise NotFound(f"no image {name!r} in {self.root}")

    def image(self, name: str, platform: Platform | None = None) -> tuple[Descriptor, Manifest]:
        """The image manifest for `name`, descending an index to the platform (default: the host's)."""
        descriptor = self.resolve(name)
        manifest = parse_manifest(self.read_blob(descriptor.digest), descriptor.media_type)
        if manifest.is_index:
            descriptor = select(manifest, platform or host_platform())
            manifest = parse_manifest(self.read_blob(descriptor.digest), descriptor.media_type)
        return descriptor, manifest

    def blob_path(self, digest: str) -> Path:
        try:
            parsed = parse_digest(digest)
        except InvalidDigest as exc:
            raise UsageError(str(exc)) from None
        return self.root / "blobs" / parsed.algorithm / parsed.hex

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).exists()

    def open_blob(self, digest: str) -> IO[bytes]:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from {self.root}") from None

    def read_blob(self, digest: str) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    def write_blob(self, data: bytes) -> str:
        digest = digest_bytes(data)
        path = self.blob_path(digest)
        if not path.exists():
            atomic_write(path, data)
        return digest

    def partial_path(self, digest: str) -> Path:
        """Where an unfinished download of `digest` waits to be resumed."""
        parsed = parse_digest(digest)
        return self.root / PARTIAL_DIR / f"{parsed.algorithm}-{parsed.hex}"

    def commit_partial(self, digest: str) -> None:
        """Move a downloaded and verified partial file into `blobs/`."""
        path = self.blob_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.partial_path(digest), path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def add(self, descriptor: Descriptor, name: str | None) -> None:
        """Point `name` at `descriptor`, replacing the entry that had that name."""
        annotations = dict(descriptor.annotations or {})
        if name:
            annotations[REF_NAME] = name
        entry = Descriptor(descriptor.media_type, descriptor.digest, descriptor.size,
                           descriptor.artifact_type, annotations or None, descriptor.platform).to_json()
        with self._locked():
            entries = [e for e in self._index().get("manifests") or []
                       if not name or (e.get("annotations") or {}).get(REF_NAME) != name]
            if not name and any(e.get("digest") == descriptor.digest for e in entries):
                return
            entries.append(entry)
            atomic_write(self.root / "index.json", _index_bytes(entries))

    def remove(self, name: str) -> bool:
        with self._locked():
            entries = self._index().get("manifests") or []
            kept = [e for e in entries if (e.get("annotations") or {}).get(REF_NAME) != name]
            if len(kept) == len(entries):
                return False
            atomic_write(self.root / "index.json", _index_bytes(kept))
            return True

    def reachable(self, roots: list[Descriptor]) -> dict[str, int]:
        """Every blob `roots` reference, manifests and indexes included: digest -> size."""
        seen: dict[str, int] = {}
        pending = list(roots)
        while pending:
            descriptor = pending.pop()
            if descriptor.digest in seen:
                continue
            seen[descriptor.digest] = descriptor.size
            if descriptor.media_type in mt.MANIFESTS and self.has_blob(descriptor.digest):
                manifest = parse_manifest(self.read_blob(descriptor.digest), descriptor.media_type)
                pending.extend(manifest.manifests)
                pending.extend(((manifest.config,) if manifest.config else ()) + manifest.layers)
        return seen

    def gc(self) -> list[str]:
        """Delete blobs no index entry reaches; return their digests."""
        with self._locked():
            keep = self.reachable([e.descriptor for e in self.entries()])
            removed = []
            for algorithm_dir in (self.root / "blobs").iterdir():
                for blob in algorithm_dir.iterdir():
                    digest = f"{algorithm_dir.name}:{blob.name}"
                    if digest not in keep:
                        blob.unlink()
                        removed.append(digest)
            return removed


def _index_bytes(manifests: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}).encode()


def open_store(create: bool = True) -> Layout:
    """The local image store the engine runs from."""
    return Layout.open(berth_root() / "images", create=create)
