"""Queries for garbage collection: candidates, and deletions that re-check under a row lock.

Every deletion re-tests its condition inside its own write transaction with the row
locked, so a push that links, tags or references the row concurrently either happens
first (and the row is kept) or waits and then sees the row gone (and recreates it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, insert, not_, or_, select, update
from sqlalchemy.orm import aliased

from registry.metadata.db import WRITE, insert_for
from registry.metadata.manifests import drop_manifest
from registry.metadata.models import (
    Blob,
    GcRun,
    Lease,
    Manifest,
    ManifestBlob,
    ManifestChild,
    Repository,
    RepositoryBlob,
    Tag,
    Upload,
)


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class GcRunRow:
    """What one collection removed (counts and bytes), and who started it."""

    started_at: datetime
    finished_at: datetime
    trigger: str
    blobs: int
    manifests: int
    tags: int
    uploads: int
    bytes_reclaimed: int


@dataclass(frozen=True, slots=True)
class Candidate:
    id: int
    name: str
    digest: str
    size: int


def _deletable_manifest(cutoff: datetime) -> Any:
    """Untagged, older than the cutoff, no index above it, not a referrer of a live
    manifest, and no tagged referrer of its own."""
    subject, referrer = aliased(Manifest), aliased(Manifest)
    return and_(
        Manifest.created_at < cutoff,
        not_(exists().where(Tag.manifest_id == Manifest.id)),
        not_(exists().where(ManifestChild.child_id == Manifest.id)),
        or_(
            Manifest.subject_digest.is_(None),
            not_(
                exists().where(
                    subject.repository_id == Manifest.repository_id, subject.digest == Manifest.subject_digest
                )
            ),
        ),
        not_(
            exists().where(
                referrer.repository_id == Manifest.repository_id,
                referrer.subject_digest == Manifest.digest,
                exists().where(Tag.manifest_id == referrer.id),
            )
        ),
    )


def _unused_blob(cutoff: datetime) -> Any:
    return and_(Blob.touched_at < cutoff, not_(exists().where(ManifestBlob.blob_id == Blob.id)))


class Collector:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _write(self) -> Any:
        return self.engine.connect().execution_options(**WRITE)

    # -- one replica at a time

    def acquire(self, name: str, holder: str, seconds: float) -> bool:
        now = datetime.now(UTC)
        until = now + timedelta(seconds=seconds)
        with self._write() as conn, conn.begin():
            dialect_insert = insert_for(conn)
            conn.execute(
                dialect_insert(Lease)
                .values(name=name, holder="", until=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            taken = conn.execute(
                update(Lease)
                .where(Lease.name == name, or_(Lease.until < now, Lease.holder == holder, Lease.holder == ""))
                .values(holder=holder, until=until)
            )
            return taken.rowcount == 1

    def release(self, name: str, holder: str) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(update(Lease).where(Lease.name == name, Lease.holder == holder).values(holder=""))

    # -- the record of runs

    def record_run(self, run: GcRunRow) -> None:
        with self._write() as conn, conn.begin():
            conn.execute(insert(GcRun).values(**{k: getattr(run, k) for k in GcRunRow.__dataclass_fields__}))

    def runs(self, limit: int) -> list[GcRunRow]:
        """The latest runs, newest first."""
        columns = [getattr(GcRun, k) for k in GcRunRow.__dataclass_fields__]
        query = select(*columns).order_by(GcRun.finished_at.desc(), GcRun.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [GcRunRow(_utc(r.started_at), _utc(r.finished_at), r.trigger, *r[3:]) for r in rows]

    # -- upload sessions

    def expired_uploads(self, cutoff: datetime) -> list[tuple[str, dict[str, Any], int]]:
        """Open sessions started before `cutoff` that nobody is writing to: id, storage state, bytes."""
        now = datetime.now(UTC)
        query = select(Upload.id, Upload.storage_state, Upload.offset).where(
            Upload.started_at < cutoff,
            Upload.closed.is_(False),
            or_(Upload.lease_until.is_(None), Upload.lease_until < now),
        )
        with self.engine.connect() as conn:
            return [(r.id, json.loads(r.storage_state), r.offset) for r in conn.execute(query)]

    def drop_tombstones(self, cutoff: datetime) -> int:
        """Forget ended sessions whose ids are past their lifetime (their bytes are gone)."""
        with self._write() as conn, conn.begin():
            return conn.execute(delete(Upload).where(Upload.closed.is_(True), Upload.started_at < cutoff)).rowcount

    def active_upload_ids(self) -> set[str]:
        """Sessions whose bytes in storage are still wanted."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(Upload.id).where(Upload.closed.is_(False))).scalars())

    def expire_upload(self, upload_id: str, drop_bytes: Callable[[], None]) -> bool:
        """Close an abandoned session (its id stays unknown) and drop its bytes."""
        now = datetime.now(UTC)
        with self._write() as conn, conn.begin():
            gone = conn.execute(
                update(Upload)
                .where(
                    Upload.id == upload_id,
                    Upload.closed.is_(False),
                    or_(Upload.lease_until.is_(None), Upload.lease_until < now),
                )
                .values(closed=True)
            )
            if gone.rowcount != 1:
                return False
            drop_bytes()
            return True

    # -- untagged manifests

    def untagged_manifests(self, cutoff: datetime) -> list[Candidate]:
        query = (
            select(Manifest.id, Repository.name, Manifest.digest, Manifest.size)
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(_deletable_manifest(cutoff))
            .order_by(Repository.name, Manifest.digest)
        )
        with self.engine.connect() as conn:
            return [Candidate(r.id, r.name, r.digest, r.size) for r in conn.execute(query)]

    def delete_manifest(self, manifest_id: int, cutoff: datetime) -> bool:
        with self._write() as conn, conn.begin():
            row = conn.execute(
                select(Manifest.id).where(Manifest.id == manifest_id, _deletable_manifest(cutoff)).with_for_update()
            ).first()
            if row is None:
                return False
            drop_manifest(conn, manifest_id)
            return True

    # -- blobs

    def unused_blobs(self, cutoff: datetime) -> list[Candidate]:
        query = select(Blob.id, Blob.digest, Blob.size).where(_unused_blob(cutoff)).order_by(Blob.digest)
        with self.engine.connect() as conn:
            return [Candidate(r.id, "", r.digest, r.size) for r in conn.execute(query)]

    def delete_blob(self, blob_id: int, cutoff: datetime, drop_bytes: Callable[[str], None]) -> bool:
        """Delete an unused blob: its bytes while its row is locked, then the row and links."""
        with self._write() as conn, conn.begin():
            row = conn.execute(
                select(Blob.digest).where(Blob.id == blob_id, _unused_blob(cutoff)).with_for_update()
            ).first()
            if row is None:
                return False
            drop_bytes(row.digest)
            conn.execute(delete(RepositoryBlob).where(RepositoryBlob.blob_id == blob_id))
            conn.execute(delete(Blob).where(Blob.id == blob_id))
            return True
