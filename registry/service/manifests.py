"""Manifests: validated on PUT, stored byte for byte in the index, served by tag or digest."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from registry.errors import (
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameUnknown,
    StillReferenced,
    TagImmutable,
    TagInvalid,
    Unsupported,
)
from registry.metadata.manifests import ManifestIndex, ManifestRow, NewManifest, Referrer, TagLocked
from registry.metadata.repositories import RepositoryIndex
from registry.metadata.tags import TagIndex
from registry.oci.digest import is_digest
from registry.oci.manifest import InvalidManifest, Manifest, UnsupportedManifest, parse_manifest
from registry.oci.reference import valid_tag
from registry.service.blobs import check_digest
from registry.service.policies import PolicyService

CATALOG_PAGE = 1000


def reference_tag(reference: str) -> str | None:
    """The tag a manifest reference names; None when it is a digest."""
    return None if is_digest(reference) else reference


def check_reference(reference: str, writing: bool = False) -> tuple[str, bool]:
    """Return (reference, is_digest), refusing malformed tags and digests.

    A malformed tag is `TAG_INVALID` when pushing, but simply unknown when reading or
    deleting, as clients and the conformance suite expect.
    """
    if is_digest(reference):
        return check_digest(reference), True
    if not valid_tag(reference):
        if writing:
            raise TagInvalid(f"invalid tag {reference!r}")
        raise ManifestUnknown(f"no manifest tagged {reference!r}", detail={"tag": reference})
    return reference, False


class ManifestService:
    def __init__(
        self, manifests: ManifestIndex, tags: TagIndex, repositories: RepositoryIndex, policies: PolicyService
    ):
        self.manifests = manifests
        self.tag_index = tags
        self.repository_index = repositories
        self.policies = policies

    def get(self, repository: str, reference: str, content: bool = True) -> ManifestRow:
        reference, by_digest = check_reference(reference)
        row = self.manifests.get(repository, reference, by_digest, content)
        if row is None:
            if not self.repository_index.exists(repository):
                raise NameUnknown(detail={"name": repository})
            raise ManifestUnknown(detail={"reference": reference})
        return row

    def put(
        self,
        repository: str,
        reference: str,
        body: bytes,
        content_type: str | None,
        readable: Callable[[str], bool],
        also: Callable[[Any, str], None] | None = None,
    ) -> tuple[str, str | None]:
        """Validate and index a manifest; returns its digest and subject digest. `also` adds
        writes (the push event) to the indexing transaction."""
        reference, by_digest = check_reference(reference, writing=True)
        try:
            manifest = parse_manifest(body, content_type)
        except UnsupportedManifest as exc:
            raise Unsupported(str(exc)) from None
        except InvalidManifest as exc:
            raise ManifestInvalid(str(exc)) from None
        algorithm = reference.partition(":")[0] if by_digest else "sha256"
        digest = f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"
        if by_digest and digest != reference:
            raise DigestInvalid(f"manifest digest is {digest}, not {reference}")
        subject = manifest.subject.digest if manifest.subject else None
        tag = None if by_digest else reference
        try:
            missing_blobs, missing_children = self._index(repository, manifest, body, digest, tag, readable, also)
        except TagLocked:
            raise TagImmutable(f"tag {reference} of {repository} is immutable and points at another manifest") from None
        if missing_blobs or missing_children:
            raise ManifestBlobUnknown(
                f"manifest references unknown {'blobs' if missing_blobs else 'manifests'}: "
                + ", ".join(missing_blobs + missing_children),
                detail={"blobs": missing_blobs, "manifests": missing_children},
            )
        return digest, subject

    def _index(
        self,
        repository: str,
        manifest: Manifest,
        body: bytes,
        digest: str,
        tag: str | None,
        readable: Callable[[str], bool],
        also: Callable[[Any, str], None] | None,
    ) -> tuple[list[str], list[str]]:
        subject = manifest.subject.digest if manifest.subject else None
        return self.manifests.put(
            repository,
            NewManifest(
                digest=digest,
                media_type=manifest.media_type,
                content=body,
                config_digest=manifest.config.digest if manifest.config else None,
                subject_digest=subject,
                artifact_type=manifest.effective_artifact_type,
                annotations=manifest.annotations or None,
                blobs=tuple(d.digest for d in manifest.blobs),
                children=tuple(d.digest for d in manifest.manifests),
            ),
            tag,
            readable,
            tag_locked=tag is not None and self.policies.is_immutable(repository, tag),
            also=also,
        )

    def delete(self, repository: str, reference: str) -> None:
        reference, by_digest = check_reference(reference)
        if not by_digest:
            if self.policies.is_immutable(repository, reference):
                raise TagImmutable(f"tag {reference} of {repository} is immutable")
            if not self.tag_index.delete(repository, reference):
                raise ManifestUnknown(detail={"tag": reference})
            return
        try:
            result = self.manifests.delete(
                repository, reference, lambda tag: self.policies.is_immutable(repository, tag)
            )
        except TagLocked as exc:
            raise TagImmutable(f"manifest {reference} carries the immutable tag {exc}; it cannot be deleted") from None
        if result is False:
            raise ManifestUnknown(detail={"digest": reference})
        if isinstance(result, str):
            raise StillReferenced(f"manifest {reference} is referenced by index {result}; delete the index first")

    def referrers(self, repository: str, subject: str, artifact_type: str | None) -> list[Referrer]:
        subject, _ = check_reference(subject)
        return self.manifests.referrers(repository, subject, artifact_type)

    def tags(self, repository: str, n: int | None, last: str | None) -> list[str]:
        tags = self.tag_index.page(repository, n, last)
        if tags is None:
            raise NameUnknown(detail={"name": repository})
        return tags

    def repositories(self, n: int | None, last: str | None, readable: Callable[[str], bool]) -> list[str]:
        """The catalog as the caller may see it: pages of the index, filtered by `readable`."""
        found: list[str] = []
        page = max(n or 0, CATALOG_PAGE)
        while n is None or len(found) < n:
            batch = self.repository_index.page(page, last)
            found += [name for name in batch if readable(name)]
            if len(batch) < page:
                break
            last = batch[-1]
        return found if n is None else found[:n]
