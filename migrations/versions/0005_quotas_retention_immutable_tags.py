"""quotas retention immutable tags

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "immutable_tag",
        sa.Column("pattern", sa.String(length=255), nullable=False),
        sa.Column("tag_pattern", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("pattern", "tag_pattern", name=op.f("pk_immutable_tag")),
    )
    op.create_table(
        "quota",
        sa.Column("pattern", sa.String(length=255), nullable=False),
        sa.Column("limit_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pattern", name=op.f("pk_quota")),
    )
    op.create_table(
        "retention_policy",
        sa.Column("pattern", sa.String(length=255), nullable=False),
        sa.Column("tag_pattern", sa.String(length=128), nullable=False),
        sa.Column("keep_last", sa.Integer(), nullable=True),
        sa.Column("max_age_seconds", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pattern", "tag_pattern", name=op.f("pk_retention_policy")),
    )


def downgrade() -> None:
    op.drop_table("retention_policy")
    op.drop_table("quota")
    op.drop_table("immutable_tag")
