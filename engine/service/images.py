"""The engine's view of the local store: images (the client's OCI layout) and unpacked layers.

The client pulls into `$BERTH_ROOT/images`, an OCI image layout whose `index.json`
entries carry `org.opencontainers.image.ref.name` = the full reference; the engine reads
it through `client.layout.Layout` (one owner for that format). The unpacked layers under
`$BERTH_ROOT/layers/<algorithm>/<hex>` are the engine's own, shared by every image and
container that uses the same layer blob, and created atomically (unpack into a temporary
directory, then rename) so that concurrent runs never see half a layer.

`berth run` must start fast, and importing the client's layout code (manifest parsing,
the reference grammar, platforms) costs ~10 ms. So resolutions are cached in
`$BERTH_ROOT/resolved-images.json`, keyed by index.json's inode, size and mtime: what a
name resolves to can only change when index.json does, since everything it leads to
is content-addressed. On a hit the client is not imported at all.
"""

from __future__ import annotations

import json
import os
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.service.paths import Paths

if TYPE_CHECKING:
    from client.layout import Layout


def familiar(name: str) -> str:
    """A store name as docker shows it (`docker.io/library/busybox:1` -> `busybox:1`)."""
    return name.removeprefix("docker.io/library/").removeprefix("docker.io/")


class ImageNotFound(LookupError):
    """No image in the local store answers to the name."""


class PlatformMismatch(ValueError):
    """The image exists, but not for this machine's os/architecture."""


class Image(NamedTuple):
    """A resolved, runnable image: its manifest digest, parsed config and layer digests."""

    name: str
    manifest_digest: str
    config_digest: str
    config: dict[str, Any]
    layers: list[str]

    @property
    def id(self) -> str:
        return self.config_digest

    @property
    def runtime(self) -> dict[str, Any]:
        """The image config's `config` object (Env, Cmd, Entrypoint, WorkingDir, User)."""
        return self.config.get("config") or {}


class ImageStore:
    """Resolves names in the local OCI layout to runnable images for this machine."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._layout: Layout | None = None
        self._cache: dict[str, Any] | None = None

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            from client.layout import Layout

            self._layout = Layout.open(self.paths.images, create=True)
        return self._layout

    def blob_path(self, digest: str) -> Path:
        return self.layout.blob_path(digest)

    def names(self) -> list[str]:
        return [e.name for e in self.layout.entries() if e.name]

    def find(self, name: str) -> str | None:
        """The store name for `name`: a full or short reference, or an image/manifest id prefix."""
        from client.errors import ClientError
        from client.layout import store_name

        names = self.names()
        try:
            full = store_name(name)
        except ClientError:
            full = name
        for candidate in (name, full):
            if candidate in names:
                return candidate
        bare = name.removeprefix("sha256:")
        if len(bare) >= 6 and all(c in "0123456789abcdef" for c in bare):
            for entry in self.layout.entries():
                if entry.name and entry.descriptor.digest.removeprefix("sha256:").startswith(bare):
                    return entry.name
            for ref in names:
                try:
                    if self.resolve(ref).id.removeprefix("sha256:").startswith(bare):
                        return ref
                except (LookupError, ValueError):
                    continue
        return None

    def _index_key(self) -> str | None:
        try:
            st = os.stat(self.paths.images / "index.json")
        except FileNotFoundError:
            return None
        return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"

    def resolve(self, name: str) -> Image:
        """The runnable image for `name` on this machine's platform (cached, see the module doc)."""
        key = self._index_key()
        if self._cache is not None and self._cache.get("index") == key:
            cache = self._cache  # one store object resolving many names (a listing) reads the file once
        else:
            try:
                with open(self.paths.resolve_cache) as f:
                    cache = json.load(f)
            except (OSError, ValueError):
                cache = {}
            self._cache = cache
        if key is not None and cache.get("index") == key and name in cache.get("images", {}):
            return Image(**cache["images"][name])
        image = self._resolve(name)
        if key is not None:
            if cache.get("index") != key:
                cache = {"index": key, "images": {}}
            cache["images"][name] = image._asdict()
            tmp = self.paths.resolve_cache.with_name(f".{self.paths.resolve_cache.name}.{os.getpid()}")
            with suppress(OSError):
                tmp.write_text(json.dumps(cache))
                os.replace(tmp, self.paths.resolve_cache)
        return image

    def _resolve(self, name: str) -> Image:
        from client.errors import NotFound
        from client.platform import host_platform

        ref = self.find(name) if name not in self.names() else name
        if ref is None:
            raise ImageNotFound(f"image {name!r} is not in the local store ({self.paths.images})")
        try:
            descriptor, manifest = self.layout.image(ref)
            config = json.loads(self.layout.read_blob(manifest.config.digest)) if manifest.config else {}
        except NotFound as exc:
            raise PlatformMismatch(f"image {ref}: {exc}") from None
        host = host_platform()
        got_os, got_arch = config.get("os", host.os), config.get("architecture", host.architecture)
        if (got_os, got_arch) != (host.os, host.architecture):
            raise PlatformMismatch(
                f"image {ref} is for {got_os}/{got_arch}, but this machine is {host.os}/{host.architecture}"
            )
        assert manifest.config is not None
        return Image(ref, descriptor.digest, manifest.config.digest, config, [d.digest for d in manifest.layers])

    def record(self, action: str, actor: str, **attributes: object) -> None:
        """Append an image event to the engine's journal (`service/events.py`)."""
        from engine.service.events import Journal

        Journal.of_root(self.paths.root).record("image", action, actor, attributes)

    def tag(self, source: str, target: str) -> None:
        """Name the image `source` (a store name) also `target` (a full store name), as `docker tag`."""
        self.layout.add(self.layout.resolve(source), target)
        self.record("tag", self.resolve(target).id, name=familiar(target))

    def remove(self, name: str) -> str:
        """Drop `name` from the index and delete the blobs nothing references any more."""
        ref = self.find(name)
        if ref is None or not self.layout.remove(ref):
            raise ImageNotFound(f"image {name!r} is not in the local store")
        self.layout.gc()
        return ref

    def referenced_layers(self) -> set[str]:
        """Layer digests some image in the store still needs (the rest may be unpacked away)."""
        from client.errors import ClientError

        found: set[str] = set()
        for ref in self.names():
            try:
                found.update(self.resolve(ref).layers)
            except (OSError, ValueError, LookupError, ClientError):
                continue
        return found


def ensure_layers(store: ImageStore, image: Image) -> list[Path]:
    """Unpacked directories of the image's layers, bottom first, unpacking what is missing.

    Each layer goes to its own directory, so missing layers are unpacked in parallel:
    zlib, zstd, hashing and file writes all release the GIL.
    """
    targets = [store.paths.layer(digest) for digest in image.layers]
    missing = [(digest, target) for digest, target in zip(image.layers, targets, strict=True) if not target.is_dir()]
    if len(missing) == 1:
        _unpack(store, *missing[0])
    elif missing:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(len(missing), os.cpu_count() or 1, 8)) as pool:
            for future in [pool.submit(_unpack, store, digest, target) for digest, target in missing]:
                future.result()
    return targets


def _unpack(store: ImageStore, digest: str, target: Path) -> None:
    """Unpack into a temporary sibling, then rename: a concurrent run never sees half a layer."""
    import shutil
    import tempfile

    from engine.service.unpack import unpack_layer

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".unpack-"))
    try:
        os.chmod(tmp, 0o755)
        unpack_layer(store.blob_path(digest), tmp, digest=digest)
        os.rename(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.is_dir():
            raise OSError(exc.errno, f"unpacking layer {digest}: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def prune_layers(store: ImageStore, in_use: set[str]) -> None:
    """Delete unpacked layers no image and no container needs any more."""
    import shutil

    keep = store.referenced_layers() | in_use
    for algo_dir in store.paths.layers.iterdir() if store.paths.layers.is_dir() else []:
        for layer in algo_dir.iterdir():
            if not layer.name.startswith(".") and f"{algo_dir.name}:{layer.name}" not in keep:
                shutil.rmtree(layer, ignore_errors=True)


def pull(reference: str, *, quiet: bool = False, reporter: Any = None, credentials: Any = None) -> None:
    """Pull `reference` into the local store with the client, as `berth pull` does.

    `reporter` (a client.progress Reporter) and `credentials` default to the terminal's and the
    docker config's; the engine API passes its own.
    """
    _copy("docker", "local", reference, quiet=quiet, reporter=reporter, credentials=credentials)
    repository, tagged = reference.partition("@")[0], reference
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository[: repository.rfind(":")]
    elif "@" not in reference:
        tagged = f"{reference}:latest"
    ImageStore(Paths.default()).record("pull", tagged, name=repository)


def push(reference: str, *, reporter: Any = None, credentials: Any = None) -> Any:
    """Push the local image `reference` to its registry; the copy's result (digest, size)."""
    return _copy("local", "docker", reference, quiet=True, reporter=reporter, credentials=credentials)


def _copy(source_kind: str, target_kind: str, reference: str, *, quiet: bool, reporter: Any, credentials: Any) -> Any:
    from client.copy import copy_image
    from client.location import Location, Options, open_source, open_target
    from client.location import reference as parse
    from client.platform import host_platform
    from client.progress import make_reporter

    ref = parse(reference)
    options = Options(credentials=credentials)
    source = open_source(Location(source_kind, ref), options)
    try:
        target = open_target(Location(target_kind, ref), options)
        reporter = reporter or make_reporter(quiet)
        try:
            return copy_image(source, target, platform=host_platform(), jobs=options.jobs, reporter=reporter)
        finally:
            reporter.close()
            target.close()
    finally:
        source.close()
