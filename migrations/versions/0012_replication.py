"""replication: targets, the on-push replication outbox, the record of runs

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replication",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("username", sa.String(length=255), nullable=True),
        sa.Column("password", sa.Text(), nullable=True),
        sa.Column("repository_pattern", sa.String(length=255), nullable=False),
        sa.Column("tag_pattern", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("interval_seconds", sa.BigInteger(), nullable=True),
        sa.Column("on_push", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("mirror_deletes", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_replication")),
    )
    op.create_table(
        "replication_delivery",
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("replication", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["event.id"], name=op.f("fk_replication_delivery_event_id_event"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["replication"],
            ["replication.name"],
            name=op.f("fk_replication_delivery_replication_replication"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", "replication", name=op.f("pk_replication_delivery")),
    )
    with op.batch_alter_table("replication_delivery") as batch:
        batch.create_index(batch.f("ix_replication_delivery_replication"), ["replication"], unique=False)
        batch.create_index(batch.f("ix_replication_delivery_next_attempt_at"), ["next_attempt_at"], unique=False)
        batch.create_index(batch.f("ix_replication_delivery_delivered_at"), ["delivered_at"], unique=False)
    op.create_table(
        "replication_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("replication", sa.String(length=64), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("copied", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["replication"],
            ["replication.name"],
            name=op.f("fk_replication_run_replication_replication"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replication_run")),
    )
    with op.batch_alter_table("replication_run") as batch:
        batch.create_index(batch.f("ix_replication_run_replication"), ["replication"], unique=False)


def downgrade() -> None:
    op.drop_table("replication_run")
    op.drop_table("replication_delivery")
    op.drop_table("replication")
