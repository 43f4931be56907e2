"""The queries the services need, each in one short transaction.

Concurrent writers are made safe by unique constraints, upserts and conditional
updates, never by check-then-insert in application code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, delete, insert, select, update

from registry.metadata.db import WRITE, Prepared, insert_for
from registry.metadata.models import (
    Blob,
    Manifest,
    ManifestBlob,
    ManifestChild,
    Repository,
    RepositoryBlob,
    Tag,
    Upload,
)


class TagLocked(Exception):
    """The tag exists, points elsewhere, and must not move."""


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    repository_id: int
    offset: int
    state: dict[str, Any]


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


@dataclass(frozen=True, slots=True)
class Referrer:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


def _upsert(conn: Connection, table: Any, values: dict[str, Any], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING, in the dialect at hand."""
    dialect_insert = insert_for(conn)
    conn.execute(dialect_insert(table).values(**values).on_conflict_do_nothing(index_elements=keys))


def _now() -> datetime:
    return datetime.now(UTC)


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


class Index:
    def __init__(self, engine: Engine):
        self.engine = engine
        # Reads on SQLite take microseconds: callers may run them on the event loop.
        self.inline_reads = engine.dialect.name == "sqlite"
        self._manifest = {
            (by_digest, content): Prepared(engine, _manifest_query(by_digest, content))
            for by_digest in (False, True)
            for content in (False, True)
        }
        self._upload = Prepared(
            engine,
            select(Upload.id, Upload.repository_id, Upload.offset, Upload.storage_state)
            .join(Repository, Repository.id == Upload.repository_id)
            .where(Upload.id == bindparam("id"), Repository.name == bindparam("repository")),
        )
        self._blob_exists = Prepared(engine, select(Blob.id).where(Blob.digest == bindparam("digest")))
        # The statements of every blob upload, compiled once for the write transaction.
        dialect_insert = insert_for(engine)
        self._upsert_blob = Prepared(
            engine,
            dialect_insert(Blob)
            .values(digest=bindparam("digest"), size=bindparam("size"), touched_at=bindparam("now"))
            .on_conflict_do_update(index_elements=["digest"], set_={"touched_at": bindparam("now")})
            .returning(Blob.id),
        )
        self._link = Prepared(
            engine,
            dialect_insert(RepositoryBlob)
            .values(repository_id=bindparam("repository_id"), blob_id=bindparam("blob_id"), created_at=bindparam("now"))
            .on_conflict_do_nothing(index_elements=["repository_id", "blob_id"]),
        )
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
        self._insert_upload = Prepared(
            engine,
            insert(Upload).values(
                id=bindparam("id"),
                repository_id=bindparam("repository_id"),
                offset=bindparam("start"),
                storage_state=bindparam("state"),
                started_at=bindparam("now"),
            ),
        )
        self._delete_upload = Prepared(engine, delete(Upload).where(Upload.id == bindparam("id")))
        self._repository_id = Prepared(engine, select(Repository.id).where(Repository.name == bindparam("name")))
        self._blob_size = Prepared(
            engine,
            select(Blob.size)
            .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
            .join(Repository, Repository.id == RepositoryBlob.repository_id)
            .where(Blob.digest == bindparam("digest"), Repository.name == bindparam("repository")),
        )

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn
            conn.rollback()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**WRITE)
            with conn.begin():
                yield conn

    # repositories -----------------------------------------------------------------

    def _holders(self, conn: Connection, blob_id: int) -> list[str]:
        """Repositories that may serve a blob (to link it into another by a manifest)."""
        query = (
            select(Repository.name)
            .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
            .where(RepositoryBlob.blob_id == blob_id)
        )
        return list(conn.execute(query).scalars())

    def _known_repository(self, name: str) -> int | None:
        """A repository's id, read before a write transaction (repositories are never
        deleted, so the id stays valid) to keep the write lock short."""
        row = self._repository_id.first(name=name)
        return None if row is None else row[0]

    def _ensure_repository(self, conn: Connection, name: str, known: int | None = None) -> int:
        if known is not None:
            return known
        _upsert(conn, Repository.__table__, {"name": name}, ["name"])
        return conn.execute(select(Repository.id).where(Repository.name == name)).scalar_one()

    def repository_exists(self, name: str) -> bool:
        with self._read() as conn:
            return conn.execute(select(Repository.id).where(Repository.name == name)).first() is not None

    def repositories(self, n: int | None, last: str | None) -> list[str]:
        query = select(Repository.name).order_by(Repository.name)
        if last:
            query = query.where(Repository.name > last)
        if n is not None:
            query = query.limit(n)
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    # uploads ---------------------------------------------------------------------

    def create_upload(self, repository: str, upload_id: str, state: dict[str, Any]) -> None:
        known = self._known_repository(repository)
        with self._write() as conn:
            repository_id = self._ensure_repository(conn, repository, known)
            self._insert_upload.execute(
                conn, id=upload_id, repository_id=repository_id, start=0, state=json.dumps(state), now=_now()
            )

    def get_upload(self, repository: str, upload_id: str) -> UploadRow | None:
        row = self._upload.first(id=upload_id, repository=repository)
        return None if row is None else UploadRow(row[0], row[1], row[2], json.loads(row[3]))

    def lease_upload(self, upload_id: str, offset: int, seconds: float) -> bool:
        """Claim the session for one writer, if it is still at `offset` and nobody writes."""
        now = _now()
        query = (
            update(Upload)
            .where(
                Upload.id == upload_id,
                Upload.offset == offset,
                (Upload.lease_until.is_(None)) | (Upload.lease_until < now),
            )
            .values(lease_until=now + timedelta(seconds=seconds))
        )
        with self._write() as conn:
            return conn.execute(query).rowcount == 1

    def release_upload(self, upload_id: str, offset: int, state: dict[str, Any]) -> None:
        query = (
            update(Upload)
            .where(Upload.id == upload_id)
            .values(offset=offset, storage_state=json.dumps(state), lease_until=None)
        )
        with self._write() as conn:
            conn.execute(query)

    def delete_upload(self, upload_id: str) -> bool:
        with self._write() as conn:
            return conn.execute(delete(Upload).where(Upload.id == upload_id)).rowcount == 1

    # blobs -----------------------------------------------------------------------

    def _touch_blob(self, conn: Connection, digest: str, size: int) -> int:
        """Upsert the blob row and mark it used now (locked until commit)."""
        return self._upsert_blob.execute(conn, digest=digest, size=size, now=_now()).scalar_one()

    def _link_blob(self, conn: Connection, repository_id: int, digest: str, size: int) -> None:
        blob_id = self._touch_blob(conn, digest, size)
        self._link.execute(conn, repository_id=repository_id, blob_id=blob_id, now=_now())

    def touch_blob(self, digest: str) -> None:
        """Mark an existing blob as used now, before its bytes are stored again.

        Garbage collection deletes a blob's bytes only while holding its row with an old
        `touched_at`; touching waits for such a collection and then finds the row gone
        (so the bytes are stored afresh) or young (so they are kept). A blob without a row
        is not collection's business, so the common case costs one read.
        """
        if self._blob_exists.first(digest=digest) is not None:
            with self._write() as conn:
                conn.execute(update(Blob).where(Blob.digest == digest).values(touched_at=_now()))

    def finish_upload(self, upload_id: str | None, repository: str, digest: str, size: int) -> bool:
        """Close the session (if any) and make the stored blob visible in the repository,
        atomically. False when the session was already finished by someone else."""
        known = self._known_repository(repository)
        with self._write() as conn:
            if upload_id is not None and self._delete_upload.execute(conn, id=upload_id).rowcount != 1:
                return False
            self._link_blob(conn, self._ensure_repository(conn, repository, known), digest, size)
            return True

    def blob_size(self, repository: str, digest: str) -> int | None:
        """The blob's size if `repository` may serve it."""
        row = self._blob_size.first(digest=digest, repository=repository)
        return None if row is None else row[0]

    def blob_repositories(self, digest: str) -> list[str]:
        """Every repository that may serve `digest` (for mounts without `from`)."""
        query = (
            select(Repository.name)
            .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
            .join(Blob, Blob.id == RepositoryBlob.blob_id)
            .where(Blob.digest == digest)
            .order_by(Repository.name)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def link_blob(self, repository: str, digest: str, source: str) -> int | None:
        """Mount: link `digest` into `repository` if `source` may serve it; returns the size."""
        with self._write() as conn:
            size = conn.execute(
                select(Blob.size)
                .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
                .join(Repository, Repository.id == RepositoryBlob.repository_id)
                .where(Blob.digest == digest, Repository.name == source)
            ).scalar()
            if size is None:
                return None
            self._link_blob(conn, self._ensure_repository(conn, repository), digest, size)
            return size

    def unlink_blob(self, repository: str, digest: str) -> bool | str:
        """Remove a blob from a repository. Returns False if absent, or the digest of a
        manifest that still references it (and then changes nothing)."""
        with self._write() as conn:
            ids = conn.execute(
                select(Repository.id, Blob.id)
                .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
                .join(Blob, Blob.id == RepositoryBlob.blob_id)
                .where(Repository.name == repository, Blob.digest == digest)
            ).first()
            if ids is None:
                return False
            repository_id, blob_id = ids
            user = conn.execute(
                select(Manifest.digest)
                .join(ManifestBlob, ManifestBlob.manifest_id == Manifest.id)
                .where(Manifest.repository_id == repository_id, ManifestBlob.blob_id == blob_id)
                .limit(1)
            ).scalar()
            if user is not None:
                return user
            conn.execute(
                delete(RepositoryBlob).where(
                    RepositoryBlob.repository_id == repository_id, RepositoryBlob.blob_id == blob_id
                )
            )
            return True

    # manifests -------------------------------------------------------------------

    def get_manifest(
        self, repository: str, reference: str, by_digest: bool, content: bool = True
    ) -> ManifestRow | None:
        row = self._manifest[(by_digest, content)].first(repository=repository, reference=reference)
        if row is None:
            return None
        return ManifestRow(row[0], row[1], row[2], bytes(row[3]) if content else None)

    def put_manifest(
        self,
        repository: str,
        manifest: NewManifest,
        tag: str | None,
        readable: Callable[[str], bool],
        tag_locked: bool = False,
    ) -> tuple[list[str], list[str]]:
        """Index a manifest (and move `tag` to it) in one transaction.

        Blobs not yet in the repository are linked when a repository the caller may
        `readable` holds them. Returns the blobs and child manifests that are
        missing; when any are, nothing is written. With `tag_locked`, an existing tag
        that points at another manifest raises TagLocked (and nothing is written).
        """
        known_repository = self._known_repository(repository)
        now = _now()
        with self._write() as conn:
            repository_id = self._ensure_repository(conn, repository, known_repository)
            blob_ids: dict[str, int] = {}
            for digest in sorted(set(manifest.blobs)):
                # Touching locks the row (in digest order, against deadlocks): a concurrent
                # garbage collection re-checks the blob after this commit and keeps it.
                row = self._touch_existing.execute(conn, digest=digest, now=now).first()
                if row is None:
                    continue
                blob_id, size = row
                if self._linked.execute(conn, repository_id=repository_id, blob_id=blob_id).first() is not None:
                    blob_ids[digest] = blob_id
                elif any(readable(name) for name in self._holders(conn, blob_id)):
                    self._link_blob(conn, repository_id, digest, size)
                    blob_ids[digest] = blob_id
            child_ids: dict[str, int] = {}
            for digest in sorted(set(manifest.children)):
                row = self._manifest_id.execute(conn, repository_id=repository_id, digest=digest).first()
                if row is not None:
                    child_ids[digest] = row[0]
            missing_blobs = sorted(set(manifest.blobs) - set(blob_ids))
            missing_children = sorted(set(manifest.children) - set(child_ids))
            if missing_blobs or missing_children:
                conn.rollback()
                return missing_blobs, missing_children
            manifest_id = self._upsert_manifest.execute(
                conn,
                repository_id=repository_id,
                digest=manifest.digest,
                media_type=manifest.media_type,
                size=len(manifest.content),
                content=manifest.content,
                config_digest=manifest.config_digest,
                subject_digest=manifest.subject_digest,
                artifact_type=manifest.artifact_type,
                annotations=json.dumps(manifest.annotations) if manifest.annotations else None,
                now=now,
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
                    conn.rollback()
                    raise TagLocked(tag)
            if tag is not None:
                # updated_at from Python has sub-second precision: retention can tell the newest.
                self._upsert_tag.execute(conn, repository_id=repository_id, name=tag, manifest_id=manifest_id, now=now)
            return [], []

    def delete_manifest(
        self, repository: str, digest: str, locked: Callable[[str], bool] = lambda _tag: False
    ) -> bool | str:
        """Delete a manifest and the tags on it. Returns False if absent, or the digest of
        an index that still references it (and then changes nothing). Raises TagLocked
        when one of its tags is `locked`."""
        with self._write() as conn:
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
            conn.execute(delete(Tag).where(Tag.manifest_id == manifest_id))
            conn.execute(delete(ManifestBlob).where(ManifestBlob.manifest_id == manifest_id))
            conn.execute(delete(ManifestChild).where(ManifestChild.parent_id == manifest_id))
            conn.execute(delete(Manifest).where(Manifest.id == manifest_id))
            return True

    def delete_tag(self, repository: str, tag: str) -> bool:
        with self._write() as conn:
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar()
            if repository_id is None:
                return False
            query = delete(Tag).where(and_(Tag.repository_id == repository_id, Tag.name == tag))
            return conn.execute(query).rowcount == 1

    def tags(self, repository: str, n: int | None, last: str | None) -> list[str] | None:
        """Tag names in lexical order after `last`, or None when the repository is unknown."""
        with self._read() as conn:
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar()
            if repository_id is None:
                return None
            query = select(Tag.name).where(Tag.repository_id == repository_id).order_by(Tag.name)
            if last:
                query = query.where(Tag.name > last)
            if n is not None:
                query = query.limit(n)
            return list(conn.execute(query).scalars())

    def referrers(self, repository: str, subject: str, artifact_type: str | None) -> list[Referrer]:
        query = (
            select(Manifest.digest, Manifest.media_type, Manifest.size, Manifest.artifact_type, Manifest.annotations)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == repository, Manifest.subject_digest == subject)
            .order_by(Manifest.digest)
        )
        if artifact_type:
            query = query.where(Manifest.artifact_type == artifact_type)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            Referrer(
                r.digest, r.media_type, r.size, r.artifact_type, json.loads(r.annotations) if r.annotations else None
            )
            for r in rows
        ]
