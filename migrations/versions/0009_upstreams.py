"""upstreams: pull-through cache configuration, cached tags and manifests, blob fetch leases

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event") as batch:
        batch.add_column(sa.Column("upstream", sa.String(length=64), nullable=True))
    op.create_table(
        "upstream",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("prefix", sa.String(length=255), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("tag_ttl_seconds", sa.Integer(), nullable=False),
        sa.Column("allow", sa.Text(), nullable=False),
        sa.Column("ca_pem", sa.Text(), nullable=True),
        sa.Column("cache_max_age_seconds", sa.BigInteger(), nullable=True),
        sa.Column("cache_max_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_upstream")),
        sa.UniqueConstraint("prefix", name=op.f("uq_upstream_prefix")),
    )
    op.create_table(
        "upstream_repository",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("upstream", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repository.id"],
            name=op.f("fk_upstream_repository_repository_id_repository"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upstream"], ["upstream.name"], name=op.f("fk_upstream_repository_upstream_upstream"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("repository_id", name=op.f("pk_upstream_repository")),
    )
    with op.batch_alter_table("upstream_repository") as batch:
        batch.create_index(batch.f("ix_upstream_repository_upstream"), ["upstream"], unique=False)
    op.create_table(
        "upstream_tag",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repository.id"],
            name=op.f("fk_upstream_tag_repository_id_repository"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "name", name=op.f("pk_upstream_tag")),
    )
    op.create_table(
        "upstream_manifest",
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("pulled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifest.id"], name=op.f("fk_upstream_manifest_manifest_id_manifest"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("manifest_id", name=op.f("pk_upstream_manifest")),
    )
    with op.batch_alter_table("upstream_manifest") as batch:
        batch.create_index(batch.f("ix_upstream_manifest_pulled_at"), ["pulled_at"], unique=False)
    op.create_table(
        "upstream_pending",
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifest.id"], name=op.f("fk_upstream_pending_manifest_id_manifest"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("manifest_id", "digest", name=op.f("pk_upstream_pending")),
    )
    with op.batch_alter_table("upstream_pending") as batch:
        batch.create_index(batch.f("ix_upstream_pending_digest"), ["digest"], unique=False)
    op.create_table(
        "blob_fetch",
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_blob_fetch")),
    )


def downgrade() -> None:
    op.drop_table("blob_fetch")
    op.drop_table("upstream_pending")
    op.drop_table("upstream_manifest")
    op.drop_table("upstream_tag")
    op.drop_table("upstream_repository")
    op.drop_table("upstream")
    with op.batch_alter_table("event") as batch:
        batch.drop_column("upstream")
