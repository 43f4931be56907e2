"""The queries the services need, each in one short transaction.

Concurrent writers are made safe by unique constraints, upserts and conditional
updates, never by check-then-insert in application code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, select, update

from registry.metadata.db import WRITE, GroupCommit, Prepared, insert_for
from registry.metadata.models import (
    Blob,
    Manifest,
    ManifestBlob,
    Repository,
    RepositoryBlob,
    Upload,
)


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    offset: int
    state: dict[str, Any]
    closed: bool


def _now() -> datetime:
    return datetime.now(UTC)


class Index:
    def __init__(self, engine: Engine):
        self.engine = engine
        # Reads on SQLite take microseconds: callers may run them on the event loop.
        self.inline_reads = engine.dialect.name == "sqlite"
        # Blob uploads, mounts and manifest PUTs each end in one small write: under load
        # they commit together.
        self.group = GroupCommit(engine)
        self._upload = Prepared(
            engine,
            select(Upload.id, Upload.offset, Upload.storage_state, Upload.closed)
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
        # A session's row appears with its first write, leased to that writer, and ends as
        # a tombstone, whether it had a row or not: only one request closes it.
        session_row = dialect_insert(Upload).values(
            id=bindparam("id"),
            repository_id=bindparam("repository_id"),
            offset=0,
            storage_state=bindparam("state"),
            started_at=bindparam("started_at"),
            lease_until=bindparam("until"),
            closed=bindparam("closed"),
        )
        self._insert_upload = Prepared(engine, session_row.on_conflict_do_nothing(index_elements=["id"]))
        self._close_upload = Prepared(
            engine,
            session_row.on_conflict_do_update(
                index_elements=["id"], set_={"closed": True, "lease_until": None}, where=Upload.closed.is_(False)
            ),
        )
        # Every chunk of a chunked upload takes and releases the session's lease.
        self._lease = Prepared(
            engine,
            update(Upload)
            .where(
                Upload.id == bindparam("id"),
                Upload.offset == bindparam("offset"),
                Upload.closed.is_(False),
                (Upload.lease_until.is_(None)) | (Upload.lease_until < bindparam("now")),
            )
            .values(lease_until=bindparam("until")),
        )
        self._release = Prepared(
            engine,
            update(Upload)
            .where(Upload.id == bindparam("id"))
            .values(offset=bindparam("new_offset"), storage_state=bindparam("state"), lease_until=bindparam("cleared")),
        )
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
        conn.execute(insert_for(conn)(Repository).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
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

    def get_upload(self, repository: str, upload_id: str) -> UploadRow | None:
        row = self._upload.first(id=upload_id, repository=repository)
        return None if row is None else UploadRow(row[0], row[1], json.loads(row[2]), bool(row[3]))

    def create_upload(
        self, repository: str, upload_id: str, state: dict[str, Any], started_at: datetime, seconds: float
    ) -> bool:
        """Give a session its row, leased to the caller; False when another request made it first."""
        known = self._known_repository(repository)
        with self._write() as conn:
            repository_id = self._ensure_repository(conn, repository, known)
            created = self._insert_upload.execute(
                conn,
                id=upload_id,
                repository_id=repository_id,
                state=json.dumps(state),
                started_at=started_at,
                until=_now() + timedelta(seconds=seconds),
                closed=False,
            )
            return created.rowcount == 1

    def lease_upload(self, upload_id: str, offset: int, seconds: float) -> bool:
        """Claim the session for one writer, if it is still at `offset` and nobody writes."""
        now = _now()
        with self._write() as conn:
            taken = self._lease.execute(
                conn, id=upload_id, offset=offset, now=now, until=now + timedelta(seconds=seconds)
            )
            return taken.rowcount == 1

    def renew_lease(self, upload_id: str, seconds: float) -> None:
        """Extend the lease of a writer that is still streaming."""
        query = update(Upload).where(Upload.id == upload_id).values(lease_until=_now() + timedelta(seconds=seconds))
        with self._write() as conn:
            conn.execute(query)

    def release_upload(self, upload_id: str, offset: int, state: dict[str, Any]) -> None:
        with self._write() as conn:
            self._release.execute(conn, id=upload_id, new_offset=offset, state=json.dumps(state), cleared=None)

    def _close_session(self, conn: Connection, upload_id: str, repository_id: int, started_at: datetime) -> bool:
        closed = self._close_upload.execute(
            conn, id=upload_id, repository_id=repository_id, state="{}", started_at=started_at, until=None, closed=True
        )
        return closed.rowcount == 1

    def close_upload(self, repository: str, upload_id: str, started_at: datetime) -> bool:
        """End a session without a blob (cancel); False when it had already ended."""
        known = self._known_repository(repository)
        with self._write() as conn:
            return self._close_session(conn, upload_id, self._ensure_repository(conn, repository, known), started_at)

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

    def finish_upload(self, session: tuple[str, datetime] | None, repository: str, digest: str, size: int) -> bool:
        """Close the session (id, start), if any, and make the stored blob visible in the
        repository, atomically. False when the session had already ended."""
        known = self._known_repository(repository)

        def finish(conn: Connection) -> bool:
            repository_id = self._ensure_repository(conn, repository, known)
            if session is not None and not self._close_session(conn, session[0], repository_id, session[1]):
                return False
            self._link_blob(conn, repository_id, digest, size)
            return True

        return self.group.run(finish)

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
        size = self.blob_size(source, digest)
        if size is None:
            return None
        known = self._known_repository(repository)

        def link(conn: Connection) -> int | None:
            # Checked again in the transaction: the source may have lost the blob meanwhile.
            if self._blob_size.execute(conn, digest=digest, repository=source).first() is None:
                return None
            self._link_blob(conn, self._ensure_repository(conn, repository, known), digest, size)
            return size

        return self.group.run(link)

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
