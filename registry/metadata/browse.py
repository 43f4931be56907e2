"""The queries the web interface reads: pages of repositories and tags, a manifest, events.

Composed from the engine alone (not from the big `Index`): every query here is a read
of one page, bounded by LIMIT or by the names of the page, and served by an index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, false, func, not_, or_, select

from registry.metadata.models import Blob, Event, Manifest, ManifestBlob, ManifestChild, Repository, RepositoryBlob, Tag
from registry.metadata.policies import glob_to_like

# A few hundred names per IN list keeps every statement small on both databases.
CHUNK = 500


def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were written as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _chunks(values: list[Any]) -> Iterable[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def like_escape(text: str) -> str:
    """`text` as a LIKE pattern that matches it anywhere (escape character `\\`)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def visible_where(patterns: list[str] | None, contains: str = "", namespace: str | None = None) -> list[Any]:
    """Conditions on repository names: matching one of the grant `patterns` (globs whose `*`
    spans slashes, as LIKE; None: every name), containing `contains`, in `namespace` ("": none)."""
    where: list[Any] = []
    if patterns is not None:
        where.append(or_(false(), *(Repository.name.like(glob_to_like(p), escape="\\") for p in patterns)))
    if contains:
        where.append(Repository.name.like(like_escape(contains), escape="\\"))
    if namespace == "":
        where.append(not_(Repository.name.like("%/%")))
    elif namespace is not None:
        # A range on the name's unique index: names in `ns/` sort between `ns/` and `ns0`.
        where += [Repository.name > namespace + "/", Repository.name < namespace + "0"]
    return where


@dataclass(frozen=True, slots=True)
class RepositoryStats:
    tags: int
    stored_bytes: int
    last_push: datetime | None


@dataclass(frozen=True, slots=True)
class TagRow:
    name: str
    pushed_at: datetime
    manifest_id: int
    digest: str
    media_type: str
    size: int
    content: bytes


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    id: int
    digest: str
    media_type: str
    size: int
    content: bytes
    artifact_type: str | None
    subject_digest: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    at: datetime
    action: str
    repository: str
    digest: str | None
    tag: str | None
    actor: str
    address: str


TAG_ORDER = {
    "name": (Tag.name.asc(),),
    "-name": (Tag.name.desc(),),
    "pushed": (Tag.updated_at.asc(), Tag.id.asc()),
    "-pushed": (Tag.updated_at.desc(), Tag.id.desc()),
}


class Browse:
    def __init__(self, engine: Engine):
        self.engine = engine

    # repositories ----------------------------------------------------------------

    def repository_count(self, where: list[Any]) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count(Repository.id)).where(*where)).scalar_one()

    def repository_page(self, where: list[Any], offset: int, limit: int) -> list[str]:
        query = select(Repository.name).where(*where).order_by(Repository.name).offset(offset).limit(limit)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def repository_stats(self, names: list[str]) -> dict[str, RepositoryStats]:
        """Tag count, stored bytes and last push of a page of repositories: by repository id, so
        each query walks an index's prefix. Bytes are each blob once, as quotas and a namespace's
        usage count them, so no repository shows more than its namespace stores."""
        tags: dict[int, tuple[int, datetime | None]] = {}
        sizes: dict[int, int] = {}
        with self.engine.connect() as conn:
            ids = dict(conn.execute(select(Repository.name, Repository.id).where(Repository.name.in_(names))).all())
            wanted = list(ids.values())
            for repository_id, count, last in conn.execute(
                select(Tag.repository_id, func.count(), func.max(Tag.updated_at))
                .where(Tag.repository_id.in_(wanted))
                .group_by(Tag.repository_id)
            ):
                tags[repository_id] = (count, _utc(last))
            for repository_id, total in conn.execute(
                select(RepositoryBlob.repository_id, func.sum(Blob.size))
                .join(Blob, Blob.id == RepositoryBlob.blob_id)
                .where(RepositoryBlob.repository_id.in_(wanted))
                .group_by(RepositoryBlob.repository_id)
            ):
                sizes[repository_id] = int(total or 0)
        found = {}
        for name in names:
            tag_count, last_push = tags.get(ids.get(name, -1), (0, None))
            found[name] = RepositoryStats(tag_count, sizes.get(ids.get(name, -1), 0), last_push)
        return found

    def stored_bytes(self, where: list[Any]) -> int:
        """Bytes of the distinct blobs the repositories matching `where` may serve together."""
        blobs = (
            select(RepositoryBlob.blob_id)
            .join(Repository, Repository.id == RepositoryBlob.repository_id)
            .where(*where)
            .distinct()
            .subquery()
        )
        query = select(func.coalesce(func.sum(Blob.size), 0)).join(blobs, blobs.c.blob_id == Blob.id)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def repository_exists(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(Repository.id).where(Repository.name == name)).first() is not None

    # tags ------------------------------------------------------------------------

    @staticmethod
    def _tags_where(repository: str, contains: str) -> list[Any]:
        where = [Tag.repository_id == select(Repository.id).where(Repository.name == repository).scalar_subquery()]
        if contains:
            where.append(Tag.name.like(like_escape(contains), escape="\\"))
        return where

    def tag_count(self, repository: str, contains: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count(Tag.id)).where(*self._tags_where(repository, contains))).scalar_one()

    def tag_page(self, repository: str, contains: str, order: str, offset: int, limit: int) -> list[TagRow]:
        """One page of tags with their manifests (indexed on (repository, name) and (repository, updated_at))."""
        page = (
            select(
                Tag.name,
                Tag.updated_at,
                Manifest.id,
                Manifest.digest,
                Manifest.media_type,
                Manifest.size,
                Manifest.content,
            )
            .join(Manifest, Manifest.id == Tag.manifest_id)
            .where(*self._tags_where(repository, contains))
            .order_by(*TAG_ORDER[order])
            .offset(offset)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(page).all()
        return [TagRow(r[0], _utc(r[1]) or datetime.now(UTC), r[2], r[3], r[4], r[5], bytes(r[6])) for r in rows]

    def blob_totals(self, manifest_ids: list[int]) -> dict[int, int]:
        """Per manifest, the bytes of the blobs it references (config and layers)."""
        totals: dict[int, int] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(manifest_ids):
                for manifest_id, total in conn.execute(
                    select(ManifestBlob.manifest_id, func.sum(Blob.size))
                    .join(Blob, Blob.id == ManifestBlob.blob_id)
                    .where(ManifestBlob.manifest_id.in_(chunk))
                    .group_by(ManifestBlob.manifest_id)
                ):
                    totals[manifest_id] = int(total or 0)
        return totals

    def children(self, manifest_ids: list[int]) -> dict[int, list[int]]:
        """Per index, the manifests it references."""
        found: dict[int, list[int]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(manifest_ids):
                for parent, child in conn.execute(
                    select(ManifestChild.parent_id, ManifestChild.child_id).where(ManifestChild.parent_id.in_(chunk))
                ):
                    found.setdefault(parent, []).append(child)
        return found

    def last_pushers(self, repository: str, tags: list[str]) -> dict[str, tuple[str, datetime]]:
        """Who pushed each tag last, and when (from the event log, indexed on repository and tag)."""
        found: dict[str, tuple[str, datetime]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(tags):
                for tag, actor, at in conn.execute(
                    select(Event.tag, Event.actor, Event.at)
                    .where(Event.repository == repository, Event.tag.in_(chunk), Event.action == "push")
                    .order_by(Event.id)
                ):
                    if tag is not None:
                        found[tag] = (actor, _utc(at) or at)
        return found

    # one manifest ----------------------------------------------------------------

    def manifest(self, repository: str, digest: str) -> ManifestRecord | None:
        query = (
            select(
                Manifest.id,
                Manifest.digest,
                Manifest.media_type,
                Manifest.size,
                Manifest.content,
                Manifest.artifact_type,
                Manifest.subject_digest,
                Manifest.created_at,
            )
            .join(Repository, Repository.id == Manifest.repository_id)
            .where(Repository.name == repository, Manifest.digest == digest)
        )
        with self.engine.connect() as conn:
            r = conn.execute(query).first()
        if r is None:
            return None
        return ManifestRecord(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], _utc(r[7]) or r[7])

    def digest_of_tag(self, repository: str, tag: str) -> str | None:
        query = (
            select(Manifest.digest)
            .join(Tag, Tag.manifest_id == Manifest.id)
            .join(Repository, Repository.id == Tag.repository_id)
            .where(Repository.name == repository, Tag.name == tag)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar()

    def tags_of(self, manifest_id: int) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(Tag.name).where(Tag.manifest_id == manifest_id).order_by(Tag.name)).scalars()
            )

    def parents(self, manifest_id: int) -> list[str]:
        """Digests of the indexes that reference this manifest."""
        query = (
            select(Manifest.digest)
            .join(ManifestChild, ManifestChild.parent_id == Manifest.id)
            .where(ManifestChild.child_id == manifest_id)
            .order_by(Manifest.digest)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def present(self, repository: str, digests: list[str]) -> set[str]:
        """Which of these manifest digests the repository holds."""
        found: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in _chunks(digests):
                found |= set(
                    conn.execute(
                        select(Manifest.digest)
                        .join(Repository, Repository.id == Manifest.repository_id)
                        .where(Repository.name == repository, Manifest.digest.in_(chunk))
                    ).scalars()
                )
        return found

    # events ----------------------------------------------------------------------

    def events(
        self, before: int | None, limit: int, action: str = "", repository: str = "", actor: str = ""
    ) -> list[EventRow]:
        """Newest first, before event id `before`; `repository` and `actor` match anywhere in the name."""
        query = select(
            Event.id, Event.at, Event.action, Event.repository, Event.digest, Event.tag, Event.actor, Event.address
        )
        if before is not None:
            query = query.where(Event.id < before)
        if action:
            query = query.where(Event.action == action)
        if repository:
            query = query.where(Event.repository.like(like_escape(repository), escape="\\"))
        if actor:
            query = query.where(Event.actor.like(like_escape(actor), escape="\\"))
        query = query.order_by(Event.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [EventRow(r[0], _utc(r[1]) or r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in rows]
