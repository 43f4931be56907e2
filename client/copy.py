"""Copying an image from any source to any target: the one algorithm behind pull, push and copy.

Blobs move in parallel and are skipped when the target has them, or mounted from another
repository on the target's registry: the source's own (registry to registry) or one the local
store recorded the blob in (see `mount_candidates`). Manifests follow, children before the
index, the tagged root last, so a reader never sees a manifest whose blobs are missing. An
index is kept whole with `all_platforms`; otherwise the platform's image manifest is copied
alone. After a copy between a registry and the store, the store records where the blobs are.
"""

from __future__ import annotations

from collections.abc import Iterable

from client.errors import ClientError
from client.image import ImageSource, ImageTarget
from client.platform import Platform, host_platform, select
from client.progress import QuietReporter, Reporter
from registry.oci.digest import digest_bytes
from registry.oci.manifest import Descriptor, InvalidManifest, Manifest, UnsupportedManifest, parse_manifest

MAX_DEPTH = 3


class CopyResult:
    """What a copy did: the top manifest's digest, media type and size, and what happened to each blob.

    A plain class (no dataclass): a record filled in by copy_image, that nothing compares.
    """

    def __init__(self, digest: str, media_type: str, size: int) -> None:
        self.digest = digest
        self.media_type = media_type
        self.size = size
        self.blobs: dict[str, str] = {}
        """digest -> what happened to it: exists, pushed, mounted, stored."""
        self.manifests: list[str] = []


def _parse(data: bytes, media_type: str | None, where: str) -> Manifest:
    try:
        return parse_manifest(data, media_type or None)
    except (InvalidManifest, UnsupportedManifest) as exc:
        raise ClientError(f"{where}: {exc}") from None


class CopyPlan:
    """Manifests to write (children first) and the blobs they need."""

    def __init__(self) -> None:
        self.manifests: list[tuple[Descriptor, bytes]] = []
        self.blobs: dict[str, Descriptor] = {}

    def add_image(self, manifest: Manifest) -> None:
        for blob in manifest.blobs:
            self.blobs.setdefault(blob.digest, blob)


def _walk(
    source: ImageSource, descriptor: Descriptor, data: bytes, manifest: Manifest, plan: CopyPlan, depth: int
) -> None:
    if manifest.is_index:
        if depth >= MAX_DEPTH:
            raise ClientError(f"{source.name}: indexes nested deeper than {MAX_DEPTH}")
        for child in manifest.manifests:
            child_data = source.manifest(child)
            child_manifest = _parse(child_data, child.media_type, f"{source.name}@{child.digest}")
            _walk(source, child, child_data, child_manifest, plan, depth + 1)
    else:
        plan.add_image(manifest)
    plan.manifests.append((descriptor, data))


def plan_copy(source: ImageSource, platform: Platform | None, all_platforms: bool) -> tuple[Descriptor, CopyPlan]:
    data, media_type = source.root()
    manifest = _parse(data, media_type, source.name)
    descriptor = Descriptor(manifest.media_type, digest_bytes(data), len(data))
    if manifest.is_index and not all_platforms:
        descriptor = select(manifest, platform or host_platform())
        data = source.manifest(descriptor)
        manifest = _parse(data, descriptor.media_type, f"{source.name}@{descriptor.digest}")
    plan = CopyPlan()
    _walk(source, descriptor, data, manifest, plan, 0)
    return descriptor, plan


def mount_candidates(source: ImageSource, target: ImageTarget, digests: Iterable[str]) -> dict[str, list[str]]:
    """Per blob, the repositories on the target's registry it could be mounted from, best first.

    The source's repository when it is on that host, then those the source's record holds the
    blob in there, most recent first. Hosts must match exactly (a mount names a repository of
    the registry that receives it), so a push to another host never tries one.
    """
    if target.registry is None:
        return {}
    host = target.registry.host
    own = [source.registry.repository] if source.registry and source.registry.host == host else []
    recorded = source.origins.origins() if source.origins else {}
    return {
        digest: list(dict.fromkeys(own + [r.repository for r in recorded.get(digest, ()) if r.host == host]))
        for digest in digests
    }


def record_origins(source: ImageSource, target: ImageTarget, digests: list[str]) -> None:
    """Tell a layout side which registry repository now holds the blobs, for later mounts."""
    if source.registry and target.origins:
        target.origins.add_origins(digests, source.registry)
    if target.registry and source.origins:
        source.origins.add_origins(digests, target.registry)


def copy_image(
    source: ImageSource,
    target: ImageTarget,
    *,
    platform: Platform | None = None,
    all_platforms: bool = False,
    jobs: int = 4,
    reporter: Reporter | None = None,
) -> CopyResult:
    reporter = reporter or QuietReporter()
    root, plan = plan_copy(source, platform, all_platforms)
    mount_from = mount_candidates(source, target, plan.blobs)

    def transfer(blob: Descriptor) -> tuple[str, str]:
        if target.has_blob(blob):
            reporter.finish(blob, "exists")
            return blob.digest, "exists"
        status = target.put_blob(blob, source, reporter.start(blob), mount_from.get(blob.digest, []))
        reporter.finish(blob, status)
        return blob.digest, status

    result = CopyResult(root.digest, root.media_type, root.size)
    statuses: dict[str, str] = {}
    blobs = list(plan.blobs.values())
    if target.registry is None:
        # A layout answers has_blob with a stat: ask before starting threads, so a pull of an image
        # already present starts none.
        for blob in [b for b in blobs if target.has_blob(b)]:
            reporter.finish(blob, "exists")
            statuses[blob.digest] = "exists"
            blobs.remove(blob)
    if blobs:
        from client.parallel import run_all

        statuses.update(run_all(transfer, blobs, jobs))
    result.blobs = {digest: statuses[digest] for digest in plan.blobs}
    for descriptor, data in plan.manifests:
        is_root = descriptor.digest == root.digest
        target.put_manifest(data, descriptor, is_root)
        result.manifests.append(descriptor.digest)
    target.commit()
    record_origins(source, target, list(result.blobs))
    return result
