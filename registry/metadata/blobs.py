"""Blobs and which repository may serve which: touched before bytes are stored, linked by
uploads, mounts and manifests, unlinked by deletes."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, bindparam, delete, select, update

from registry.metadata.db import Database, Prepared, insert_for
from registry.metadata.models import Blob, Manifest, ManifestBlob, Repository, RepositoryBlob
from registry.metadata.repositories import RepositoryIndex


def now() -> datetime:
    return datetime.now(UTC)


class BlobIndex:
    def __init__(self, db: Database, repositories: RepositoryIndex):
        self.db = db
        self.repositories = repositories
        engine, dialect_insert = db.engine, insert_for(db.engine)
        self._exists = Prepared(engine, select(Blob.id).where(Blob.digest == bindparam("digest")))
        self._upsert = Prepared(
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
        self._size = Prepared(
            engine,
            select(Blob.size)
            .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
            .join(Repository, Repository.id == RepositoryBlob.repository_id)
            .where(Blob.digest == bindparam("digest"), Repository.name == bindparam("repository")),
        )

    # inside another index's write transaction ----------------------------------------

    def link(self, conn: Connection, repository_id: int, digest: str, size: int) -> None:
        """Upsert the blob row, mark it used now (locked until commit) and link it to the repository."""
        blob_id = self._upsert.execute(conn, digest=digest, size=size, now=now()).scalar_one()
        self._link.execute(conn, repository_id=repository_id, blob_id=blob_id, now=now())

    def holders(self, conn: Connection, blob_id: int) -> list[str]:
        """Repositories that may serve a blob (to link it into another by a manifest)."""
        query = (
            select(Repository.name)
            .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
            .where(RepositoryBlob.blob_id == blob_id)
        )
        return list(conn.execute(query).scalars())

    # on their own --------------------------------------------------------------------

    def touch(self, digest: str) -> None:
        """Mark an existing blob as used now, before its bytes are stored again.

        Garbage collection deletes a blob's bytes only while holding its row with an old
        `touched_at`; touching waits for such a collection and then finds the row gone
        (so the bytes are stored afresh) or young (so they are kept). A blob without a row
        is not collection's business, so the common case costs one read.
        """
        if self._exists.first(digest=digest) is not None:
            with self.db.write() as conn:
                conn.execute(update(Blob).where(Blob.digest == digest).values(touched_at=now()))

    def size(self, repository: str, digest: str) -> int | None:
        """The blob's size if `repository` may serve it."""
        row = self._size.first(digest=digest, repository=repository)
        return None if row is None else row[0]

    def holding(self, digest: str) -> list[str]:
        """Every repository that may serve `digest` (for mounts without `from`)."""
        query = (
            select(Repository.name)
            .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
            .join(Blob, Blob.id == RepositoryBlob.blob_id)
            .where(Blob.digest == digest)
            .order_by(Repository.name)
        )
        with self.db.read() as conn:
            return list(conn.execute(query).scalars())

    def mount(self, repository: str, digest: str, source: str) -> int | None:
        """Link `digest` into `repository` if `source` may serve it; returns the size."""
        size = self.size(source, digest)
        if size is None:
            return None
        known = self.repositories.known(repository)

        def link(conn: Connection) -> int | None:
            # Checked again in the transaction: the source may have lost the blob meanwhile.
            if self._size.execute(conn, digest=digest, repository=source).first() is None:
                return None
            self.link(conn, self.repositories.ensure(conn, repository, known), digest, size)
            return size

        return self.db.group.run(link)

    def unlink(self, repository: str, digest: str) -> bool | str:
        """Remove a blob from a repository. Returns False if absent, or the digest of a
        manifest that still references it (and then changes nothing)."""
        with self.db.write() as conn:
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
