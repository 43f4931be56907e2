"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blob")),
        sa.UniqueConstraint("digest", name=op.f("uq_blob_digest")),
    )
    op.create_table(
        "repository",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repository")),
        sa.UniqueConstraint("name", name=op.f("uq_repository_name")),
    )
    op.create_table(
        "manifest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=160), nullable=False),
        sa.Column("media_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("config_digest", sa.String(length=160), nullable=True),
        sa.Column("subject_digest", sa.String(length=160), nullable=True),
        sa.Column("artifact_type", sa.String(length=255), nullable=True),
        sa.Column("annotations", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repository.id"],
            name=op.f("fk_manifest_repository_id_repository"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manifest")),
        sa.UniqueConstraint("repository_id", "digest", name="uq_manifest_repository_digest"),
    )
    with op.batch_alter_table("manifest", schema=None) as batch_op:
        batch_op.create_index("ix_manifest_repository_subject", ["repository_id", "subject_digest"], unique=False)

    op.create_table(
        "repository_blob",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["blob_id"], ["blob.id"], name=op.f("fk_repository_blob_blob_id_blob"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repository.id"],
            name=op.f("fk_repository_blob_repository_id_repository"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "blob_id", name=op.f("pk_repository_blob")),
    )
    with op.batch_alter_table("repository_blob", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_repository_blob_blob_id"), ["blob_id"], unique=False)

    op.create_table(
        "upload",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("storage_state", sa.Text(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repository.id"],
            name=op.f("fk_upload_repository_id_repository"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload")),
    )
    op.create_table(
        "manifest_blob",
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("blob_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["blob_id"], ["blob.id"], name=op.f("fk_manifest_blob_blob_id_blob")),
        sa.ForeignKeyConstraint(
            ["manifest_id"],
            ["manifest.id"],
            name=op.f("fk_manifest_blob_manifest_id_manifest"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("manifest_id", "blob_id", name=op.f("pk_manifest_blob")),
    )
    with op.batch_alter_table("manifest_blob", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_manifest_blob_blob_id"), ["blob_id"], unique=False)

    op.create_table(
        "manifest_child",
        sa.Column("parent_id", sa.Integer(), nullable=False),
        sa.Column("child_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["child_id"], ["manifest.id"], name=op.f("fk_manifest_child_child_id_manifest")),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["manifest.id"],
            name=op.f("fk_manifest_child_parent_id_manifest"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("parent_id", "child_id", name=op.f("pk_manifest_child")),
    )
    with op.batch_alter_table("manifest_child", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_manifest_child_child_id"), ["child_id"], unique=False)

    op.create_table(
        "tag",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("manifest_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["manifest_id"], ["manifest.id"], name=op.f("fk_tag_manifest_id_manifest")),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repository.id"],
            name=op.f("fk_tag_repository_id_repository"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag")),
        sa.UniqueConstraint("repository_id", "name", name="uq_tag_repository_name"),
    )
    with op.batch_alter_table("tag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tag_manifest_id"), ["manifest_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tag_manifest_id"))

    op.drop_table("tag")
    with op.batch_alter_table("manifest_child", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_manifest_child_child_id"))

    op.drop_table("manifest_child")
    with op.batch_alter_table("manifest_blob", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_manifest_blob_blob_id"))

    op.drop_table("manifest_blob")
    op.drop_table("upload")
    with op.batch_alter_table("repository_blob", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_repository_blob_blob_id"))

    op.drop_table("repository_blob")
    with op.batch_alter_table("manifest", schema=None) as batch_op:
        batch_op.drop_index("ix_manifest_repository_subject")

    op.drop_table("manifest")
    op.drop_table("repository")
    op.drop_table("blob")
