"""Queries for storage accounting, quotas, retention policies and immutable tags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Engine, delete, func, select

from registry.metadata.db import WRITE, Prepared, insert_for
from registry.metadata.models import (
    Blob,
    ImmutableTag,
    Manifest,
    ManifestBlob,
    Quota,
    Repository,
    RepositoryBlob,
    RetentionPolicy,
    Tag,
    Upload,
)


def glob_to_like(pattern: str) -> str:
    """`team/*` as a LIKE pattern (escape character `\\`)."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


@dataclass(frozen=True, slots=True)
class RepositoryUsage:
    name: str
    manifest_bytes: int
    logical_bytes: int
    blobs: frozenset[tuple[int, int]]

    @property
    def unique_bytes(self) -> int:
        return self.manifest_bytes + sum(size for _, size in self.blobs)


@dataclass(frozen=True, slots=True)
class Retention:
    pattern: str
    tag_pattern: str
    keep_last: int | None
    max_age_seconds: int | None


@dataclass(frozen=True, slots=True)
class TagRow:
    repository: str
    name: str
    manifest_id: int
    updated_at: datetime


class Policies:
    def __init__(self, engine: Engine):
        self.engine = engine
        # Read on every push: prepared, since they are usually empty and must cost nothing.
        self._quotas = Prepared(engine, select(Quota.pattern, Quota.limit_bytes).order_by(Quota.pattern))
        self._immutable = Prepared(
            engine, select(ImmutableTag.pattern, ImmutableTag.tag_pattern).order_by(ImmutableTag.pattern)
        )

    def _upsert(self, model: type, values: dict[str, object], keys: list[str]) -> None:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            dialect_insert = insert_for(conn)
            updates = {k: v for k, v in values.items() if k not in keys}
            statement = dialect_insert(model).values(**values)
            if updates:
                conn.execute(statement.on_conflict_do_update(index_elements=keys, set_=updates))
            else:
                conn.execute(statement.on_conflict_do_nothing(index_elements=keys))

    def _delete(self, model: type, *where: ColumnElement[bool]) -> bool:
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            return conn.execute(delete(model).where(*where)).rowcount > 0

    # -- accounting

    def usage(self) -> list[RepositoryUsage]:
        """Per repository: bytes of the distinct blobs it may serve plus its manifests
        (deduplicated), and the bytes a pull of every manifest would move (logical)."""
        with self.engine.connect() as conn:
            links = conn.execute(
                select(Repository.name, Blob.id, Blob.size)
                .join(RepositoryBlob, RepositoryBlob.repository_id == Repository.id)
                .join(Blob, Blob.id == RepositoryBlob.blob_id)
            ).all()
            manifests = dict(
                conn.execute(
                    select(Repository.name, func.sum(Manifest.size))
                    .join(Manifest, Manifest.repository_id == Repository.id)
                    .group_by(Repository.name)
                ).all()
            )
            logical = dict(
                conn.execute(
                    select(Repository.name, func.sum(Blob.size))
                    .join(Manifest, Manifest.repository_id == Repository.id)
                    .join(ManifestBlob, ManifestBlob.manifest_id == Manifest.id)
                    .join(Blob, Blob.id == ManifestBlob.blob_id)
                    .group_by(Repository.name)
                ).all()
            )
            names = list(conn.execute(select(Repository.name).order_by(Repository.name)).scalars())
        blobs: dict[str, set[tuple[int, int]]] = {name: set() for name in names}
        for name, blob_id, size in links:
            blobs[name].add((blob_id, size))
        return [
            RepositoryUsage(
                name,
                int(manifests.get(name) or 0),
                int(logical.get(name) or 0) + int(manifests.get(name) or 0),
                frozenset(blobs[name]),
            )
            for name in names
        ]

    def stored_bytes(self) -> int:
        """Every blob's bytes once: what the blob store should hold."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.sum(Blob.size), 0))).scalar_one())

    def pattern_usage(self, pattern: str) -> int:
        """Deduplicated bytes of the blobs the matching repositories may serve."""
        like = glob_to_like(pattern)
        with self.engine.connect() as conn:
            distinct_blobs = (
                select(RepositoryBlob.blob_id)
                .distinct()
                .join(Repository, Repository.id == RepositoryBlob.repository_id)
                .where(Repository.name.like(like, escape="\\"))
                .subquery()
            )
            return int(
                conn.execute(
                    select(func.coalesce(func.sum(Blob.size), 0)).join(
                        distinct_blobs, distinct_blobs.c.blob_id == Blob.id
                    )
                ).scalar_one()
            )

    def pattern_pending(self, pattern: str, except_upload: str | None = None) -> int:
        """Bytes that open upload sessions of the matching repositories hold (as of each
        session's last request), other than `except_upload`'s."""
        query = (
            select(func.coalesce(func.sum(Upload.offset), 0))
            .join(Repository, Repository.id == Upload.repository_id)
            .where(Repository.name.like(glob_to_like(pattern), escape="\\"), Upload.closed.is_(False))
        )
        if except_upload is not None:
            query = query.where(Upload.id != except_upload)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def pattern_holds(self, pattern: str, digest: str) -> bool:
        """Whether a repository matching `pattern` already has this blob (so it costs nothing)."""
        with self.engine.connect() as conn:
            return (
                conn.execute(
                    select(Blob.id)
                    .join(RepositoryBlob, RepositoryBlob.blob_id == Blob.id)
                    .join(Repository, Repository.id == RepositoryBlob.repository_id)
                    .where(Blob.digest == digest, Repository.name.like(glob_to_like(pattern), escape="\\"))
                    .limit(1)
                ).first()
                is not None
            )

    # -- quotas

    def quotas(self) -> list[tuple[str, int]]:
        return [(r[0], r[1]) for r in self._quotas.all()]

    def set_quota(self, pattern: str, limit: int) -> None:
        self._upsert(Quota, {"pattern": pattern, "limit_bytes": limit}, ["pattern"])

    def remove_quota(self, pattern: str) -> bool:
        return self._delete(Quota, Quota.pattern == pattern)

    # -- immutable tags

    def immutable(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._immutable.all()]

    def add_immutable(self, pattern: str, tag_pattern: str) -> None:
        self._upsert(ImmutableTag, {"pattern": pattern, "tag_pattern": tag_pattern}, ["pattern", "tag_pattern"])

    def remove_immutable(self, pattern: str, tag_pattern: str) -> bool:
        return self._delete(ImmutableTag, ImmutableTag.pattern == pattern, ImmutableTag.tag_pattern == tag_pattern)

    # -- retention

    def retention(self) -> list[Retention]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    RetentionPolicy.pattern,
                    RetentionPolicy.tag_pattern,
                    RetentionPolicy.keep_last,
                    RetentionPolicy.max_age_seconds,
                ).order_by(RetentionPolicy.pattern, RetentionPolicy.tag_pattern)
            ).all()
            return [Retention(r.pattern, r.tag_pattern, r.keep_last, r.max_age_seconds) for r in rows]

    def set_retention(self, policy: Retention) -> None:
        self._upsert(
            RetentionPolicy,
            {
                "pattern": policy.pattern,
                "tag_pattern": policy.tag_pattern,
                "keep_last": policy.keep_last,
                "max_age_seconds": policy.max_age_seconds,
            },
            ["pattern", "tag_pattern"],
        )

    def remove_retention(self, pattern: str, tag_pattern: str) -> bool:
        return self._delete(
            RetentionPolicy, RetentionPolicy.pattern == pattern, RetentionPolicy.tag_pattern == tag_pattern
        )

    def tags_matching(self, pattern: str) -> list[TagRow]:
        """Tags of the repositories matching `pattern`, newest first within each repository."""
        query = (
            select(Repository.name, Tag.name.label("tag"), Tag.manifest_id, Tag.updated_at)
            .join(Tag, Tag.repository_id == Repository.id)
            .where(Repository.name.like(glob_to_like(pattern), escape="\\"))
            .order_by(Repository.name, Tag.updated_at.desc(), Tag.id.desc())
        )
        with self.engine.connect() as conn:
            return [TagRow(r.name, r.tag, r.manifest_id, r.updated_at) for r in conn.execute(query)]

    def delete_tag_if_unchanged(self, repository: str, tag: str, manifest_id: int) -> bool:
        """Delete a tag only if it still points where retention saw it."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            repository_id = conn.execute(select(Repository.id).where(Repository.name == repository)).scalar()
            query = delete(Tag).where(
                Tag.repository_id == repository_id, Tag.name == tag, Tag.manifest_id == manifest_id
            )
            return conn.execute(query).rowcount == 1
