"""Upload sessions: a row from the first byte, leased to one writer at a time, ending as a
tombstone so that a used id stays unknown."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select, update

from registry.metadata.blobs import BlobIndex, now
from registry.metadata.db import Database, Prepared, insert_for
from registry.metadata.models import Repository, Upload
from registry.metadata.repositories import RepositoryIndex


@dataclass(frozen=True, slots=True)
class UploadRow:
    id: str
    offset: int
    state: dict[str, Any]
    closed: bool


class UploadIndex:
    def __init__(self, db: Database, repositories: RepositoryIndex, blobs: BlobIndex):
        self.db = db
        self.repositories = repositories
        self.blobs = blobs
        engine = db.engine
        self._get = Prepared(
            engine,
            select(Upload.id, Upload.offset, Upload.storage_state, Upload.closed)
            .join(Repository, Repository.id == Upload.repository_id)
            .where(Upload.id == bindparam("id"), Repository.name == bindparam("repository")),
        )
        # A session's row appears with its first write, leased to that writer, and ends as
        # a tombstone, whether it had a row or not: only one request closes it.
        session_row = insert_for(engine)(Upload).values(
            id=bindparam("id"),
            repository_id=bindparam("repository_id"),
            offset=0,
            storage_state=bindparam("state"),
            started_at=bindparam("started_at"),
            lease_until=bindparam("until"),
            closed=bindparam("closed"),
        )
        self._insert = Prepared(engine, session_row.on_conflict_do_nothing(index_elements=["id"]))
        self._close = Prepared(
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

    def get(self, repository: str, upload_id: str) -> UploadRow | None:
        row = self._get.first(id=upload_id, repository=repository)
        return None if row is None else UploadRow(row[0], row[1], json.loads(row[2]), bool(row[3]))

    def create(
        self, repository: str, upload_id: str, state: dict[str, Any], started_at: datetime, seconds: float
    ) -> bool:
        """Give a session its row, leased to the caller; False when another request made it first."""
        known = self.repositories.known(repository)
        with self.db.write() as conn:
            created = self._insert.execute(
                conn,
                id=upload_id,
                repository_id=self.repositories.ensure(conn, repository, known),
                state=json.dumps(state),
                started_at=started_at,
                until=now() + timedelta(seconds=seconds),
                closed=False,
            )
            return created.rowcount == 1

    def lease(self, upload_id: str, offset: int, seconds: float) -> bool:
        """Claim the session for one writer, if it is still at `offset` and nobody writes."""
        moment = now()
        with self.db.write() as conn:
            taken = self._lease.execute(
                conn, id=upload_id, offset=offset, now=moment, until=moment + timedelta(seconds=seconds)
            )
            return taken.rowcount == 1

    def renew(self, upload_id: str, seconds: float) -> None:
        """Extend the lease of a writer that is still streaming."""
        query = update(Upload).where(Upload.id == upload_id).values(lease_until=now() + timedelta(seconds=seconds))
        with self.db.write() as conn:
            conn.execute(query)

    def release(self, upload_id: str, offset: int, state: dict[str, Any]) -> None:
        with self.db.write() as conn:
            self._release.execute(conn, id=upload_id, new_offset=offset, state=json.dumps(state), cleared=None)

    def _end(self, conn: Connection, upload_id: str, repository_id: int, started_at: datetime) -> bool:
        closed = self._close.execute(
            conn, id=upload_id, repository_id=repository_id, state="{}", started_at=started_at, until=None, closed=True
        )
        return closed.rowcount == 1

    def close(self, repository: str, upload_id: str, started_at: datetime) -> bool:
        """End a session without a blob (cancel); False when it had already ended."""
        known = self.repositories.known(repository)
        with self.db.write() as conn:
            return self._end(conn, upload_id, self.repositories.ensure(conn, repository, known), started_at)

    def finish(self, session: tuple[str, datetime] | None, repository: str, digest: str, size: int) -> bool:
        """Close the session (id, start), if any, and make the stored blob visible in the
        repository, atomically. False when the session had already ended."""
        known = self.repositories.known(repository)

        def finish(conn: Connection) -> bool:
            repository_id = self.repositories.ensure(conn, repository, known)
            if session is not None and not self._end(conn, session[0], repository_id, session[1]):
                return False
            self.blobs.link(conn, repository_id, digest, size)
            return True

        return self.db.group.run(finish)
