"""SQLAlchemy models of the index. Alembic's history must produce exactly this schema."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Repository(Base):
    __tablename__ = "repository"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    created_at: Mapped[datetime] = _now()


class Blob(Base):
    """One row per digest, global: the bytes live once in storage."""

    __tablename__ = "blob"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(160), unique=True, nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[datetime] = _now()
    # Last upload or link: garbage collection spares blobs touched within its grace period.
    touched_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )


class RepositoryBlob(Base):
    """Which repository may serve which blob: without it one repository's blobs leak to another."""

    __tablename__ = "repository_blob"
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blob.id", ondelete="CASCADE"), primary_key=True, index=True)
    created_at: Mapped[datetime] = _now()


class Manifest(Base):
    """A manifest's exact bytes and what the index needs to answer questions about it."""

    __tablename__ = "manifest"
    __table_args__ = (
        UniqueConstraint("repository_id", "digest", name="uq_manifest_repository_digest"),
        Index("ix_manifest_repository_subject", "repository_id", "subject_digest"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), nullable=False)
    digest: Mapped[str] = mapped_column(String(160), nullable=False)
    media_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    config_digest: Mapped[str | None] = mapped_column(String(160))
    subject_digest: Mapped[str | None] = mapped_column(String(160))
    artifact_type: Mapped[str | None] = mapped_column(String(255))
    annotations: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()


class ManifestBlob(Base):
    __tablename__ = "manifest_blob"
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifest.id", ondelete="CASCADE"), primary_key=True)
    blob_id: Mapped[int] = mapped_column(ForeignKey("blob.id"), primary_key=True, index=True)


class ManifestChild(Base):
    """An index's reference to a manifest of the same repository."""

    __tablename__ = "manifest_child"
    parent_id: Mapped[int] = mapped_column(ForeignKey("manifest.id", ondelete="CASCADE"), primary_key=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("manifest.id"), primary_key=True, index=True)


class Tag(Base):
    __tablename__ = "tag"
    __table_args__ = (
        UniqueConstraint("repository_id", "name", name="uq_tag_repository_name"),
        # The web interface pages a repository's tags by push time.
        Index("ix_tag_repository_updated", "repository_id", "updated_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifest.id"), nullable=False, index=True)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


class Upload(Base):
    """An upload session that has bytes or has ended, so any replica can continue or refuse it.

    A session is born as a signed id and gets a row with its first byte; `closed` rows stay
    as tombstones (until garbage collection drops them with the id's lifetime) so a
    completed or cancelled id is unknown from then on. `lease_until` is set while one
    request writes to the session: a second writer is refused instead of interleaving bytes.
    """

    __tablename__ = "upload"
    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), nullable=False)
    offset: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    storage_state: Mapped[str] = mapped_column(Text, nullable=False)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime] = _now()
    closed: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class Account(Base):
    """A principal that can log in: a person (`user`) or a robot token for CI (`robot`)."""

    __tablename__ = "account"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    # May use the web interface's administration pages (users, tokens, grants, policies, GC).
    admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())


class Grant(Base):
    """Actions a principal (an account name or `anonymous`) has on repositories matching a pattern."""

    __tablename__ = "grant"
    __table_args__ = (UniqueConstraint("principal", "pattern", name="uq_grant_principal_pattern"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    principal: Mapped[str] = mapped_column(String(255), nullable=False)
    pattern: Mapped[str] = mapped_column(String(255), nullable=False)
    actions: Mapped[str] = mapped_column(String(64), nullable=False)


class SigningKey(Base):
    """Keys every replica shares through the database: the token signing key, the upload-id secret."""

    __tablename__ = "signing_key"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    private_pem: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _now()


class LoginFailure(Base):
    """Login attempts per key (an account name and an address, or `*` and an address) in a window
    that starts with the first, for throttling across replicas."""

    __tablename__ = "login_failure"
    principal: Mapped[str] = mapped_column(String(255), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False)
    # Indexed: expired rows are pruned as new failures arrive.
    window_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class Lease(Base):
    """A named lock with an expiry, held by one replica at a time (garbage collection)."""

    __tablename__ = "lease"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64), nullable=False)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Quota(Base):
    """A storage limit for the repositories matching a name pattern (`team/*`)."""

    __tablename__ = "quota"
    pattern: Mapped[str] = mapped_column(String(255), primary_key=True)
    limit_bytes: Mapped[int] = mapped_column(BigInteger, nullable=False)


class RetentionPolicy(Base):
    """Which tags of matching repositories to keep: the newest N, and/or those younger than an age."""

    __tablename__ = "retention_policy"
    pattern: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag_pattern: Mapped[str] = mapped_column(String(128), primary_key=True)
    keep_last: Mapped[int | None] = mapped_column(Integer)
    max_age_seconds: Mapped[int | None] = mapped_column(BigInteger)


class ImmutableTag(Base):
    """Tags matching `tag_pattern` in repositories matching `pattern` never move once pushed."""

    __tablename__ = "immutable_tag"
    pattern: Mapped[str] = mapped_column(String(255), primary_key=True)
    tag_pattern: Mapped[str] = mapped_column(String(128), primary_key=True)


class Event(Base):
    """Who did what, when, from where: pushes, pulls, deletes and tag changes."""

    __tablename__ = "event"
    # Who pushed a tag last (the web interface's tag list) and a repository's activity.
    __table_args__ = (Index("ix_event_repository_tag", "repository", "tag"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    repository: Mapped[str] = mapped_column(String(255), nullable=False)
    digest: Mapped[str | None] = mapped_column(String(160))
    tag: Mapped[str | None] = mapped_column(String(128))
    media_type: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(255), nullable=False)
    address: Mapped[str] = mapped_column(String(64), nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(64))
    # The upstream a pull was served through (pull-through cache), if any.
    upstream: Mapped[str | None] = mapped_column(String(64))


class EventDelivery(Base):
    """The outbox: one row per event and webhook until it is delivered, so nothing is lost on restart."""

    __tablename__ = "event_delivery"
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024), primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


class GcRun(Base):
    """What one garbage collection run removed, for the administration page."""

    __tablename__ = "gc_run"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    trigger: Mapped[str] = mapped_column(String(32), nullable=False)
    blobs: Mapped[int] = mapped_column(Integer, nullable=False)
    manifests: Mapped[int] = mapped_column(Integer, nullable=False)
    tags: Mapped[int] = mapped_column(Integer, nullable=False)
    uploads: Mapped[int] = mapped_column(Integer, nullable=False)
    bytes_reclaimed: Mapped[int] = mapped_column(BigInteger, nullable=False)


class Upstream(Base):
    """A registry whose repositories are served, and cached, under `prefix/` (a pull-through cache)."""

    __tablename__ = "upstream"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024), nullable=False)
    prefix: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    username: Mapped[str | None] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(Text)
    tag_ttl_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    allow: Mapped[str] = mapped_column(Text, nullable=False)
    ca_pem: Mapped[str | None] = mapped_column(Text)
    cache_max_age_seconds: Mapped[int | None] = mapped_column(BigInteger)
    cache_max_bytes: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _now()


class UpstreamRepository(Base):
    """A repository filled from an upstream: pushes into it are refused."""

    __tablename__ = "upstream_repository"
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), primary_key=True)
    upstream: Mapped[str] = mapped_column(ForeignKey("upstream.name", ondelete="CASCADE"), nullable=False, index=True)


class UpstreamTag(Base):
    """When a cached tag was last confirmed by its upstream (revalidated after the tag TTL)."""

    __tablename__ = "upstream_tag"
    repository_id: Mapped[int] = mapped_column(ForeignKey("repository.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class UpstreamManifest(Base):
    """A manifest cached from an upstream and when it was last pulled (evicted least recently pulled first)."""

    __tablename__ = "upstream_manifest"
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifest.id", ondelete="CASCADE"), primary_key=True)
    pulled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class UpstreamPending(Base):
    """A blob or child manifest a cached manifest references but the cache does not hold yet:
    it becomes a `manifest_blob` or `manifest_child` edge when it arrives."""

    __tablename__ = "upstream_pending"
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifest.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(160), primary_key=True, index=True)


class BlobFetch(Base):
    """The one fetch of a blob from an upstream in progress, leased to one process of one replica."""

    __tablename__ = "blob_fetch"
    digest: Mapped[str] = mapped_column(String(160), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64), nullable=False)
    until: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class SignedOutSession(Base):
    """A web session signed out before its cookie expires: its nonce is refused until then."""

    __tablename__ = "signed_out_session"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)


class Replication(Base):
    """A copy of matching repositories to (push) or from (pull) another registry, on a schedule or on push."""

    __tablename__ = "replication"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(String(1024), nullable=False)
    username: Mapped[str | None] = mapped_column(String(255))
    password: Mapped[str | None] = mapped_column(Text)
    repository_pattern: Mapped[str] = mapped_column(String(255), nullable=False)
    tag_pattern: Mapped[str] = mapped_column(String(128), nullable=False)
    mode: Mapped[str] = mapped_column(String(8), nullable=False)
    # Seconds between scheduled runs; None when the replication runs on push (or only by hand).
    interval_seconds: Mapped[int | None] = mapped_column(BigInteger)
    on_push: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    mirror_deletes: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=false())
    created_at: Mapped[datetime] = _now()


class ReplicationDelivery(Base):
    """The replication outbox: one row per event and on-push replication, written with the event."""

    __tablename__ = "replication_delivery"
    event_id: Mapped[int] = mapped_column(ForeignKey("event.id", ondelete="CASCADE"), primary_key=True)
    replication: Mapped[str] = mapped_column(
        ForeignKey("replication.name", ondelete="CASCADE"), primary_key=True, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    last_error: Mapped[str | None] = mapped_column(Text)


class ReplicationRun(Base):
    """What one replication run (scheduled, by hand, or for one event) copied, and its error."""

    __tablename__ = "replication_run"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    replication: Mapped[str] = mapped_column(
        ForeignKey("replication.name", ondelete="CASCADE"), nullable=False, index=True
    )
    trigger: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    copied: Mapped[int] = mapped_column(Integer, nullable=False)
    deleted: Mapped[int] = mapped_column(Integer, nullable=False)
    # JSON: the manifests copied or deleted ("repository@digest", "repository:tag"), at most 100.
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    error: Mapped[str | None] = mapped_column(Text)
