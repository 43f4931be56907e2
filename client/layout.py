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

The store also keeps `berth-origins.json` beside `index.json`: per blob, the few registry
repositories it was last pulled from or pushed to, so a push can mount instead of upload
(docker's distribution metadata). Other layouts (`oci:DIR`) are handed to other tools and
keep no such record; the image-spec allows the extra file, and it is never under `blobs/`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

from client.errors import NotFound, UsageError
from client.files import atomic_write
from client.image import RegistryRepo
from client.platform import Platform, host_platform, select
from registry.oci import mediatypes as mt
from registry.oci.digest import InvalidDigest, digest_bytes, parse_digest
from registry.oci.manifest import Descriptor, Manifest, parse_manifest
from registry.oci.reference import InvalidReference, parse_reference

REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
PARTIAL_DIR = ".partial"
ORIGINS_FILE = "berth-origins.json"
MAX_ORIGINS = 5
"""Repositories remembered per blob: enough to find one that still has it, bounded so the file stays small."""


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


class ImageEntry(NamedTuple):
    """One index.json entry of a layout: its name (None for unnamed entries) and descriptor."""

    name: str | None
    descriptor: Descriptor


def _descriptor(entry: dict[str, Any]) -> Descriptor:
    return Descriptor(
        entry["mediaType"],
        entry["digest"],
        int(entry["size"]),
        entry.get("artifactType"),
        entry.get("annotations"),
        entry.get("platform"),
    )


class Layout:
    def __init__(self, root: Path, keeps_origins: bool = False) -> None:
        self.root = root
        self.keeps_origins = keeps_origins
        """Whether `origins()` and `add_origins()` use `berth-origins.json` (the local store) or do nothing."""

    @classmethod
    def open(cls, root: Path | str, create: bool = False, keeps_origins: bool = False) -> Layout:
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
        return cls(path, keeps_origins)

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
        entry = Descriptor(
            descriptor.media_type,
            descriptor.digest,
            descriptor.size,
            descriptor.artifact_type,
            annotations or None,
            descriptor.platform,
        ).to_json()
        with self._locked():
            current = self._index().get("manifests") or []
            if entry in current:
                return  # already so (a pull of an image already present): no write, no fsync
            entries = [e for e in current if not name or (e.get("annotations") or {}).get(REF_NAME) != name]
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

    def discard(self, unwanted: Callable[[Descriptor], bool]) -> int:
        """Drop every entry whose descriptor `unwanted` picks (blobs stay until `gc`); how many went."""
        with self._locked():
            entries = self._index().get("manifests") or []
            kept = [e for e in entries if not unwanted(_descriptor(e))]
            if len(kept) != len(entries):
                atomic_write(self.root / "index.json", _index_bytes(kept))
            return len(entries) - len(kept)

    def origins(self) -> dict[str, list[RegistryRepo]]:
        """digest -> the registry repositories the blob was pulled from or pushed to, most recent first.

        Empty when the record is missing or unreadable: it only saves uploads, so losing it costs
        time, never correctness.
        """
        return self._recorded_origins() if self.keeps_origins else {}

    def _recorded_origins(self) -> dict[str, list[RegistryRepo]]:
        try:
            return _parse_origins(json.loads((self.root / ORIGINS_FILE).read_bytes()))
        except (OSError, ValueError):
            return {}

    def add_origins(self, digests: Iterable[str], where: RegistryRepo) -> None:
        """Put `where` first in each blob's record, keeping the `MAX_ORIGINS` most recent."""
        if not self.keeps_origins:
            return
        with self._locked():
            recorded = self.origins()
            changed = False
            for digest in digests:
                known = recorded.get(digest, [])
                if known[:1] != [where]:
                    recorded[digest] = [where, *(r for r in known if r != where)][:MAX_ORIGINS]
                    changed = True
            if changed:
                self._write_origins(recorded)

    def _write_origins(self, recorded: dict[str, list[RegistryRepo]]) -> None:
        """Under the lock."""
        data = {"version": 1, "blobs": {digest: [list(r) for r in repos] for digest, repos in recorded.items()}}
        atomic_write(self.root / ORIGINS_FILE, json.dumps(data).encode())

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
        """Delete blobs no index entry reaches, and what the store recorded of them; return their digests."""
        with self._locked():
            keep = self.reachable([e.descriptor for e in self.entries()])
            removed = []
            for algorithm_dir in (self.root / "blobs").iterdir():
                for blob in algorithm_dir.iterdir():
                    digest = f"{algorithm_dir.name}:{blob.name}"
                    if digest not in keep:
                        blob.unlink()
                        removed.append(digest)
            recorded = self._recorded_origins()  # however this layout was opened (the engine's gc too)
            if any(digest not in keep for digest in recorded):
                self._write_origins({d: repos for d, repos in recorded.items() if d in keep})
            return removed


def _index_bytes(manifests: list[dict[str, Any]]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}).encode()


def _parse_origins(data: Any) -> dict[str, list[RegistryRepo]]:
    """The record's blobs, skipping any entry that is not a digest with [host, repository] pairs."""
    blobs = data.get("blobs") if isinstance(data, dict) else None
    found: dict[str, list[RegistryRepo]] = {}
    for digest, places in blobs.items() if isinstance(blobs, dict) else ():
        if not isinstance(places, list):
            continue
        repos = [
            RegistryRepo(*place)
            for place in places
            if isinstance(place, list) and len(place) == 2 and all(isinstance(p, str) for p in place)
        ]
        if repos:
            found[digest] = repos[:MAX_ORIGINS]
    return found


def open_store(create: bool = True) -> Layout:
    """The local image store the engine runs from; it records where its blobs came from and went."""
    return Layout.open(berth_root() / "images", create=create, keeps_origins=True)
