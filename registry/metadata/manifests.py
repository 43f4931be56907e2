"""Queries about manifests: storing them with their blob and child edges and a tag, serving,
deleting, referrers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from registry.metadata.blobs import BlobIndex, now
from registry.metadata.db import Database, Prepared, insert_for
from registry.metadata.models import Blob, Manifest, ManifestBlob, ManifestChild, Repository, RepositoryBlob, Tag
from registry.metadata.repositories import RepositoryIndex


class TagLocked(Exception):
    """The tag exists, points elsewhere, and must not move."""


@dataclass(frozen=True, slots=True)
class ManifestRow:
    digest: str
    media_type: str
    size: int
    content: bytes | None


@dataclass(frozen=True, slots=True)
class NewManifest:
    """A validated manifest ready to be indexed."""

    digest: str
    media_type: str
    content: bytes
    config_digest: str | None
    subject_digest: str | None
    artifact_type: str | None
    annotations: dict[str, str] | None
    blobs: tuple[str, ...]
    children: tuple[str, ...]

    def columns(self) -> dict[str, Any]:
        """The manifest table's columns this manifest fills (besides repository and time)."""
        return {
            "digest": self.digest,
            "media_type": self.media_type,
            "size": len(self.content),
            "content": self.content,
            "config_digest": self.config_digest,
            "subject_digest": self.subject_digest,
            "artifact_type": self.artifact_type,
            "annotations": json.dumps(self.annotations) if self.annotations else None,
        }


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


def _manifest_query(by_digest: bool, content: bool) -> Any:
    columns = [Manifest.digest, Manifest.media_type, Manifest.size]
    if content:
        columns.append(Manifest.content)
    query = select(*columns).join(Repository, Repository.id == Manifest.repository_id)
    if by_digest:
        return query.where(Repository.name == bindparam("repository"), Manifest.digest == bindparam("reference"))
    return query.join(Tag, Tag.manifest_id == Manifest.id).where(
        Repository.name == bindparam("repository"), Tag.name == bindparam("reference")
    )


class _Missing(Exception):
    """A manifest's references are not all in the repository: its transaction writes nothing."""

    def __init__(self, blobs: list[str], children: list[str]):
        super().__init__(blobs, children)
        self.blobs = blobs
        self.children = children


def drop_manifest(conn: Connection, manifest_id: int) -> None:
    """Delete a manifest row with its tags and edges: the one cascade, for deletes and collection."""
    conn.execute(delete(Tag).where(Tag.manifest_id == manifest_id))
    conn.execute(delete(ManifestBlob).where(ManifestBlob.manifest_id == manifest_id))
    conn.execute(delete(ManifestChild).where(ManifestChild.parent_id == manifest_id))
    conn.execute(delete(Manifest).where(Manifest.id == manifest_id))


class ManifestIndex:
    def __init__(self, db: Database, repositories: RepositoryIndex, blobs: BlobIndex):
        self.db = db
        self.repositories = repositories
        self.blobs = blobs
        engine, dialect_insert = db.engine, insert_for(db.engine)
        self._manifest = {
            (by_digest, content): Prepared(engine, _manifest_query(by_digest, content))
            for by_digest in (False, True)
            for content in (False, True)
        }
        # A manifest PUT's statements: one row each, compiled once, so the write lock is short.
        self._touch_existing = Prepared(
            engine,
            update(Blob)
            .where(Blob.digest == bindparam("digest"))
            .values(touched_at=bindparam("now"))
            .returning(Blob.id, Blob.size),
        )
        self._linked = Prepared(
            engine,
            select(RepositoryBlob.blob_id).where(
                RepositoryBlob.repository_id == bindparam("repository_id"),
                RepositoryBlob.blob_id == bindparam("blob_id"),
            ),
        )
        self._manifest_id = Prepared(
            engine,
            select(Manifest.id).where(
                Manifest.repository_id == bindparam("repository_id"), Manifest.digest == bindparam("digest")
            ),
        )
        manifest_insert = dialect_insert(Manifest).values(
            repository_id=bindparam("repository_id"),
            digest=bindparam("digest"),
            media_type=bindparam("media_type"),
            size=bindparam("size"),
            content=bindparam("content"),
            config_digest=bindparam("config_digest"),
            subject_digest=bindparam("subject_digest"),
            artifact_type=bindparam("artifact_type"),
            annotations=bindparam("annotations"),
            created_at=bindparam("now"),
        )
        self._upsert_manifest = Prepared(
            engine,
            manifest_insert.on_conflict_do_update(
                index_elements=["repository_id", "digest"], set_={"digest": manifest_insert.excluded.digest}
            ).returning(Manifest.id),
        )
        self._manifest_blob = Prepared(
            engine,
            dialect_insert(ManifestBlob)
            .values(manifest_id=bindparam("manifest_id"), blob_id=bindparam("blob_id"))
            .on_conflict_do_nothing(),
        )
        self._manifest_child = Prepared(
            engine,
            dialect_insert(ManifestChild)
            .values(parent_id=bindparam("parent_id"), child_id=bindparam("child_id"))
            .on_conflict_do_nothing(),
        )
        self._upsert_tag = Prepared(
            engine,
            dialect_insert(Tag)
            .values(
                repository_id=bindparam("repository_id"),
                name=bindparam("name"),
                manifest_id=bindparam("manifest_id"),
                updated_at=bindparam("now"),
            )
            .on_conflict_do_update(
                index_elements=["repository_id", "name"],
                set_={"manifest_id": bindparam("manifest_id"), "updated_at": bindparam("now")},
            ),
        )

    def get(self, repository: str, reference: str, by_digest: bool, content: bool = True) -> ManifestRow | None:
        row = self._manifest[(by_digest, content)].first(repository=repository, reference=reference)
        if row is None:
            return None
        return ManifestRow(row[0], row[1], row[2], bytes(row[3]) if content else None)

    def put(
        self,
        repository: str,
        manifest: NewManifest,
        tag: str | None,
        readable: Callable[[str], bool],
        tag_locked: bool = False,
        also: Callable[[Any, str], None] | None = None,
    ) -> tuple[list[str], list[str]]:
        """Index a manifest (and move `tag` to it) in one transaction.

        Blobs not yet in the repository are linked when a repository the caller may
        `readable` holds them. Returns the blobs and child manifests that are
        missing; when any are, nothing is written. With `tag_locked`, an existing tag
        that points at another manifest raises TagLocked (and nothing is written).
        `also(connection, digest)` adds writes of its own to the same transaction.
        """
        known_repository = self.repositories.known(repository)
        moment = now()

        def put(conn: Connection) -> None:
            repository_id = self.repositories.ensure(conn, repository, known_repository)
            blob_ids: dict[str, int] = {}
            for digest in sorted(set(manifest.blobs)):
                # Touching locks the row (in digest order, against deadlocks): a concurrent
                # garbage collection re-checks the blob after this commit and keeps it.
                row = self._touch_existing.execute(conn, digest=digest, now=moment).first()
                if row is None:
                    continue
                blob_id, size = row
                if self._linked.execute(conn, repository_id=repository_id, blob_id=blob_id).first() is not None:
                    blob_ids[digest] = blob_id
                elif any(readable(name) for name in self.blobs.holders(conn, blob_id)):
                    self.blobs.link(conn, repository_id, digest, size)
                    blob_ids[digest] = blob_id
            child_ids: dict[str, int] = {}
            for digest in sorted(set(manifest.children)):
                row = self._manifest_id.execute(conn, repository_id=repository_id, digest=digest).first()
                if row is not None:
                    child_ids[digest] = row[0]
            missing_blobs = sorted(set(manifest.blobs) - set(blob_ids))
            missing_children = sorted(set(manifest.children) - set(child_ids))
            if missing_blobs or missing_children:
                raise _Missing(missing_blobs, missing_children)
            manifest_id = self._upsert_manifest.execute(
                conn, repository_id=repository_id, now=moment, **manifest.columns()
            ).scalar_one()
            for blob_id in sorted(set(blob_ids.values())):
                self._manifest_blob.execute(conn, manifest_id=manifest_id, blob_id=blob_id)
            for child_id in sorted(set(child_ids.values())):
                self._manifest_child.execute(conn, parent_id=manifest_id, child_id=child_id)
            if tag is not None and tag_locked:
                current = conn.execute(
                    select(Tag.manifest_id).where(Tag.repository_id == repository_id, Tag.name == tag)
                ).scalar()
                if current is not None and current != manifest_id:
                    raise TagLocked(tag)
            if tag is not None:
                # updated_at from Python has sub-second precision: retention can tell the newest.
                self._upsert_tag.execute(
                    conn, repository_id=repository_id, name=tag, manifest_id=manifest_id, now=moment
                )
            if also is not None:
                also(conn, manifest.digest)

        try:
            self.db.group.run(put)
        except _Missing as missing:
            return missing.blobs, missing.children
        return [], []

    def delete(self, repository: str, digest: str, locked: Callable[[str], bool] = lambda _tag: False) -> bool | str:
        """Delete a manifest and the tags on it. Returns False if absent, or the digest of
        an index that still references it (and then changes nothing). Raises TagLocked
        when one of its tags is `locked`."""
        with self.db.write() as conn:
            row = conn.execute(
                select(Manifest.id)
                .join(Repository, Repository.id == Manifest.repository_id)
                .where(Repository.name == repository, Manifest.digest == digest)
            ).first()
            if row is None:
                return False
            manifest_id = row.id
            parent = conn.execute(
                select(Manifest.digest)
                .join(ManifestChild, ManifestChild.parent_id == Manifest.id)
                .where(ManifestChild.child_id == manifest_id)
                .limit(1)
            ).scalar()
            if parent is not None:
                return parent
            for tag in conn.execute(select(Tag.name).where(Tag.manifest_id == manifest_id)).scalars().all():
                if locked(tag):
                    raise TagLocked(tag)
            drop_manifest(conn, manifest_id)
            return True

    def referrers(self, repository: str, subject: str, artifact_type: str | None) -> list[Referrer]:
        query = (
            select(Manifest.digest, Manifest.media_type, Manifest.size, Manifest.artifact_type, Manifest.annotations)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == repository, Manifest.subject_digest == subject)
            .order_by(Manifest.digest)
        )
        if artifact_type:
            query = query.where(Manifest.artifact_type == artifact_type)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        return [
            Referrer(
                r.digest, r.media_type, r.size, r.artifact_type, json.loads(r.annotations) if r.annotations else None
            )
            for r in rows
        ]
