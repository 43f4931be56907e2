"""Queries of the pull-through cache: upstream configuration, cached manifests and tags, fetch leases.

A manifest from an upstream is stored as an ordinary manifest (so usage, garbage collection
and retention see it) before the blobs and child manifests it references have been fetched:
those wait in `upstream_pending` and become ordinary `manifest_blob` / `manifest_child` edges
the moment they arrive.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update

from registry.metadata.db import Database, Prepared, insert_for
from registry.metadata.manifests import ManifestRow, NewManifest
from registry.metadata.models import (
    Blob,
    BlobFetch,
    Manifest,
    ManifestBlob,
    ManifestChild,
    Repository,
    RepositoryBlob,
    Tag,
    Upstream,
    UpstreamManifest,
    UpstreamPending,
    UpstreamRepository,
    UpstreamTag,
)


@dataclass(frozen=True)
class UpstreamConfig:
    name: str
    url: str
    prefix: str
    username: str | None = None
    password: str | None = None
    tag_ttl_seconds: int = 300
    allow: tuple[str, ...] = ()
    ca_pem: str | None = None
    cache_max_age_seconds: int | None = None
    cache_max_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class CachedManifest:
    repository: str
    digest: str
    pulled_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | str) -> datetime:
    """SQLite hands timestamps back without their zone (and as text to a raw cursor); they were
    written in UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _checked_tag_query(content: bool) -> Any:
    """A cached tag's manifest and when its upstream last confirmed the tag, in one read."""
    columns = [Manifest.digest, Manifest.media_type, Manifest.size, UpstreamTag.checked_at]
    if content:
        columns.append(Manifest.content)
    return (
        select(*columns)
        .join(Repository, Repository.id == Manifest.repository_id)
        .join(Tag, Tag.manifest_id == Manifest.id)
        .join(UpstreamTag, (UpstreamTag.repository_id == Repository.id) & (UpstreamTag.name == Tag.name))
        .where(Repository.name == bindparam("repository"), Tag.name == bindparam("tag"))
    )


class UpstreamIndex:
    def __init__(self, db: Database):
        self.db = db
        self._checked_tag = {content: Prepared(db.engine, _checked_tag_query(content)) for content in (False, True)}
        self._repository_source = Prepared(
            db.engine,
            select(UpstreamRepository.upstream)
            .select_from(Repository)
            .outerjoin(UpstreamRepository, UpstreamRepository.repository_id == Repository.id)
            .where(Repository.name == bindparam("repository")),
        )

    # configuration ------------------------------------------------------------------

    def add(self, config: UpstreamConfig) -> str | None:
        """Add an upstream; None, or why not (its name or prefix is taken)."""
        with self.db.write() as conn:
            taken = conn.execute(
                select(Upstream.name, Upstream.prefix).where(
                    (Upstream.name == config.name) | (Upstream.prefix == config.prefix)
                )
            ).first()
            if taken is not None:
                what = "name" if taken.name == config.name else "prefix"
                return f"an upstream with that {what} exists already ({taken.name}, prefix {taken.prefix})"
            values = {k: v for k, v in config.__dict__.items() if k != "allow"}
            conn.execute(insert_for(conn)(Upstream).values(**values, allow=json.dumps(list(config.allow))))
            return None

    def remove(self, name: str) -> bool:
        with self.db.write() as conn:
            return conn.execute(delete(Upstream).where(Upstream.name == name)).rowcount == 1

    def configs(self) -> list[UpstreamConfig]:
        with self.db.read() as conn:
            rows = conn.execute(select(*Upstream.__table__.columns).order_by(Upstream.name)).all()
            return [
                UpstreamConfig(
                    name=r.name,
                    url=r.url,
                    prefix=r.prefix,
                    username=r.username,
                    password=r.password,
                    tag_ttl_seconds=r.tag_ttl_seconds,
                    allow=tuple(json.loads(r.allow)),
                    ca_pem=r.ca_pem,
                    cache_max_age_seconds=r.cache_max_age_seconds,
                    cache_max_bytes=r.cache_max_bytes,
                )
                for r in rows
            ]

    # which repositories are cached ----------------------------------------------------

    def repository_source(self, repository: str) -> tuple[bool, str | None]:
        """Whether the repository exists here, and the upstream it is filled from if it is a
        cached repository (asked on every read when a default upstream is set: one prepared query)."""
        row = self._repository_source.first(repository=repository)
        return (False, None) if row is None else (True, row[0])

    def repositories_under(self, prefix: str) -> list[str]:
        """Repositories named `prefix/...` (a new upstream must not take over local ones)."""
        with self.db.read() as conn:
            names = conn.execute(
                select(Repository.name).where(Repository.name.startswith(prefix + "/", autoescape=True)).limit(5)
            )
            return list(names.scalars())

    # manifests and tags -----------------------------------------------------------------

    def tag_checked_at(self, repository: str, tag: str) -> datetime | None:
        with self.db.read() as conn:
            value = conn.execute(
                select(UpstreamTag.checked_at)
                .join(Repository, Repository.id == UpstreamTag.repository_id)
                .where(Repository.name == repository, UpstreamTag.name == tag)
            ).scalar()
        return None if value is None else _aware(value)

    def checked_tag(self, repository: str, tag: str, content: bool) -> tuple[ManifestRow, datetime] | None:
        """A cached tag's manifest and when the upstream last confirmed it (the hot read of a
        cached pull: one prepared query, as a local pull's)."""
        row = self._checked_tag[content].first(repository=repository, tag=tag)
        if row is None:
            return None
        return ManifestRow(row[0], row[1], row[2], bytes(row[4]) if content else None), _aware(row[3])

    def confirm_tag(self, repository: str, tag: str, digest: str) -> None:
        """The upstream still has `tag` at `digest`: restart its TTL, and count a pull."""
        now = _now()
        with self.db.write() as conn:
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar_one()
            self._check_tag(conn, repository_id, tag, now)
            self._pulled(conn, repository_id, digest, now)

    def pulled(self, repository: str, digest: str) -> None:
        with self.db.write() as conn:
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar()
            if repository_id is not None:
                self._pulled(conn, repository_id, digest, _now())

    def _check_tag(self, conn: Connection, repository_id: int, tag: str, now: datetime) -> None:
        conn.execute(
            insert_for(conn)(UpstreamTag)
            .values(repository_id=repository_id, name=tag, checked_at=now)
            .on_conflict_do_update(index_elements=["repository_id", "name"], set_={"checked_at": now})
        )

    def _pulled(self, conn: Connection, repository_id: int, digest: str, now: datetime) -> None:
        manifest_id = select(Manifest.id).where(Manifest.repository_id == repository_id, Manifest.digest == digest)
        conn.execute(
            update(UpstreamManifest).where(UpstreamManifest.manifest_id == manifest_id.scalar_subquery()),
            {"pulled_at": now},
        )

    def drop_tag(self, repository: str, tag: str) -> None:
        """The upstream no longer has `tag` (told after the TTL): forget it here too."""
        with self.db.write() as conn:
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar()
            if repository_id is None:
                return
            conn.execute(delete(Tag).where(Tag.repository_id == repository_id, Tag.name == tag))
            conn.execute(delete(UpstreamTag).where(UpstreamTag.repository_id == repository_id, UpstreamTag.name == tag))

    def store(self, repository: str, upstream: str, manifest: NewManifest, tag: str | None) -> None:
        """Cache a manifest from `upstream` (and point `tag` at it), in one transaction: edges to
        the blobs and children already here, pending rows for the rest, and edges from cached
        indexes that were waiting for this manifest."""
        now = _now()
        with self.db.write() as conn:
            dialect_insert = insert_for(conn)
            conn.execute(
                dialect_insert(Repository).values(name=repository).on_conflict_do_nothing(index_elements=["name"])
            )
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar_one()
            conn.execute(
                dialect_insert(UpstreamRepository)
                .values(repository_id=repository_id, upstream=upstream)
                .on_conflict_do_nothing(index_elements=["repository_id"])
            )
            conn.execute(
                dialect_insert(Manifest)
                .values(repository_id=repository_id, created_at=now, **manifest.columns())
                .on_conflict_do_nothing(index_elements=["repository_id", "digest"])
            )
            manifest_id = conn.execute(
                select(Manifest.id).where(Manifest.repository_id == repository_id, Manifest.digest == manifest.digest)
            ).scalar_one()
            for digest in sorted(set(manifest.blobs)):
                # Touching locks the blob row, so a concurrent collection keeps it.
                blob_id = conn.execute(
                    update(Blob).where(Blob.digest == digest).values(touched_at=now).returning(Blob.id)
                ).scalar()
                linked = (
                    blob_id is not None
                    and conn.execute(
                        select(RepositoryBlob.blob_id).where(
                            RepositoryBlob.repository_id == repository_id, RepositoryBlob.blob_id == blob_id
                        )
                    ).first()
                )
                if linked:
                    conn.execute(
                        dialect_insert(ManifestBlob)
                        .values(manifest_id=manifest_id, blob_id=blob_id)
                        .on_conflict_do_nothing()
                    )
                else:
                    self._pend(conn, manifest_id, digest)
            for digest in sorted(set(manifest.children)):
                child_id = conn.execute(
                    select(Manifest.id).where(Manifest.repository_id == repository_id, Manifest.digest == digest)
                ).scalar()
                if child_id is None:
                    self._pend(conn, manifest_id, digest)
                else:
                    conn.execute(
                        dialect_insert(ManifestChild)
                        .values(parent_id=manifest_id, child_id=child_id)
                        .on_conflict_do_nothing()
                    )
            for parent_id in self._resolve(conn, repository_id, manifest.digest):
                conn.execute(
                    dialect_insert(ManifestChild)
                    .values(parent_id=parent_id, child_id=manifest_id)
                    .on_conflict_do_nothing()
                )
            conn.execute(
                dialect_insert(UpstreamManifest)
                .values(manifest_id=manifest_id, pulled_at=now)
                .on_conflict_do_update(index_elements=["manifest_id"], set_={"pulled_at": now})
            )
            if tag is not None:
                conn.execute(
                    dialect_insert(Tag)
                    .values(repository_id=repository_id, name=tag, manifest_id=manifest_id, updated_at=now)
                    .on_conflict_do_update(
                        index_elements=["repository_id", "name"], set_={"manifest_id": manifest_id, "updated_at": now}
                    )
                )
                self._check_tag(conn, repository_id, tag, now)

    def _pend(self, conn: Connection, manifest_id: int, digest: str) -> None:
        conn.execute(
            insert_for(conn)(UpstreamPending).values(manifest_id=manifest_id, digest=digest).on_conflict_do_nothing()
        )

    def _resolve(self, conn: Connection, repository_id: int, digest: str) -> list[int]:
        """The cached manifests of a repository waiting for `digest`, no longer waiting."""
        waiting = list(
            conn.execute(
                select(UpstreamPending.manifest_id)
                .join(Manifest, Manifest.id == UpstreamPending.manifest_id)
                .where(Manifest.repository_id == repository_id, UpstreamPending.digest == digest)
                .order_by(UpstreamPending.manifest_id)
            ).scalars()
        )
        if waiting:
            conn.execute(
                delete(UpstreamPending).where(
                    UpstreamPending.manifest_id.in_(waiting), UpstreamPending.digest == digest
                )
            )
        return waiting

    # blobs ------------------------------------------------------------------------------

    def referenced(self, repository: str, digest: str) -> bool:
        """A cached manifest of the repository references the blob (so it may be served there)."""
        with self.db.read() as conn:
            return (
                conn.execute(
                    select(UpstreamPending.manifest_id)
                    .join(Manifest, Manifest.id == UpstreamPending.manifest_id)
                    .join(Repository, Repository.id == Manifest.repository_id)
                    .where(Repository.name == repository, UpstreamPending.digest == digest)
                    .limit(1)
                ).first()
                is not None
            )

    def blob_arrived(self, repository: str, digest: str, size: int) -> None:
        """Link a blob now in storage into the repository and give waiting manifests their edge."""
        now = _now()
        with self.db.write() as conn:
            dialect_insert = insert_for(conn)
            conn.execute(
                dialect_insert(Repository).values(name=repository).on_conflict_do_nothing(index_elements=["name"])
            )
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar_one()
            blob_id = conn.execute(
                dialect_insert(Blob)
                .values(digest=digest, size=size, touched_at=now)
                .on_conflict_do_update(index_elements=["digest"], set_={"touched_at": now})
                .returning(Blob.id)
            ).scalar_one()
            conn.execute(
                dialect_insert(RepositoryBlob)
                .values(repository_id=repository_id, blob_id=blob_id, created_at=now)
                .on_conflict_do_nothing(index_elements=["repository_id", "blob_id"])
            )
            for manifest_id in self._resolve(conn, repository_id, digest):
                conn.execute(
                    dialect_insert(ManifestBlob)
                    .values(manifest_id=manifest_id, blob_id=blob_id)
                    .on_conflict_do_nothing()
                )

    def blob_size(self, digest: str) -> int | None:
        """The size of a blob the registry holds, in any repository."""
        with self.db.read() as conn:
            return conn.execute(select(Blob.size).where(Blob.digest == digest)).scalar()

    def take_fetch(self, digest: str, holder: str, seconds: float) -> bool:
        """Lease the one fetch of a blob: True for the caller that gets it (or holds it already)."""
        now = _now()
        with self.db.write() as conn:
            conn.execute(
                insert_for(conn)(BlobFetch)
                .values(digest=digest, holder="", until=now)
                .on_conflict_do_nothing(index_elements=["digest"])
            )
            taken = conn.execute(
                update(BlobFetch)
                .where(
                    BlobFetch.digest == digest,
                    (BlobFetch.until < now) | (BlobFetch.holder == holder) | (BlobFetch.holder == ""),
                )
                .values(holder=holder, until=now + timedelta(seconds=seconds))
            )
            return taken.rowcount == 1

    def renew_fetch(self, digest: str, holder: str, seconds: float) -> None:
        with self.db.write() as conn:
            conn.execute(
                update(BlobFetch)
                .where(BlobFetch.digest == digest, BlobFetch.holder == holder)
                .values(until=_now() + timedelta(seconds=seconds))
            )

    def release_fetch(self, digest: str, holder: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(BlobFetch).where(BlobFetch.digest == digest, BlobFetch.holder == holder))

    def fetching(self, digest: str) -> bool:
        """Someone holds a live lease on the blob's fetch."""
        with self.db.read() as conn:
            return (
                conn.execute(
                    select(BlobFetch.digest).where(
                        BlobFetch.digest == digest, BlobFetch.holder != "", BlobFetch.until >= _now()
                    )
                ).first()
                is not None
            )

    # eviction ---------------------------------------------------------------------------

    def cached_manifests(self, upstream: str) -> list[CachedManifest]:
        """The upstream's cached manifests, least recently pulled first."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(Repository.name, Manifest.digest, UpstreamManifest.pulled_at)
                .join(Manifest, Manifest.id == UpstreamManifest.manifest_id)
                .join(Repository, Repository.id == Manifest.repository_id)
                .join(UpstreamRepository, UpstreamRepository.repository_id == Repository.id)
                .where(UpstreamRepository.upstream == upstream)
                .order_by(UpstreamManifest.pulled_at, Manifest.id)
            ).all()
        return [CachedManifest(r[0], r[1], _aware(r[2])) for r in rows]

    def cached_bytes(self, upstream: str) -> int:
        """Bytes of the blobs linked into the upstream's cached repositories (each blob once)."""
        with self.db.read() as conn:
            blobs = (
                select(Blob.id, Blob.size)
                .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
                .join(UpstreamRepository, UpstreamRepository.repository_id == RepositoryBlob.repository_id)
                .where(UpstreamRepository.upstream == upstream)
                .distinct()
                .subquery()
            )
            return int(conn.execute(select(func.coalesce(func.sum(blobs.c.size), 0))).scalar_one())

    def unlink_unreferenced(self, repository: str) -> None:
        """Unlink the blobs no manifest of a cached repository references any more, so usage
        drops and garbage collection can reclaim them."""
        with self.db.write() as conn:
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar()
            if repository_id is None:
                return
            used = (
                select(ManifestBlob.blob_id)
                .join(Manifest, Manifest.id == ManifestBlob.manifest_id)
                .where(Manifest.repository_id == repository_id)
            )
            conn.execute(
                delete(RepositoryBlob).where(
                    RepositoryBlob.repository_id == repository_id, RepositoryBlob.blob_id.not_in(used)
                )
            )
