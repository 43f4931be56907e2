"""web interface: the admin role, garbage collection run records, browsing indexes

`account.admin` marks accounts that may use the administration pages; `gc_run` keeps
what each collection removed; two indexes serve the web interface's pages: a
repository's tags by push time, and the last push event of a tag.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("account") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_table(
        "gc_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("blobs", sa.Integer(), nullable=False),
        sa.Column("manifests", sa.Integer(), nullable=False),
        sa.Column("tags", sa.Integer(), nullable=False),
        sa.Column("uploads", sa.Integer(), nullable=False),
        sa.Column("bytes_reclaimed", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gc_run")),
    )
    op.create_index(op.f("ix_gc_run_finished_at"), "gc_run", ["finished_at"], unique=False)
    op.create_index("ix_tag_repository_updated", "tag", ["repository_id", "updated_at"], unique=False)
    op.create_index("ix_event_repository_tag", "event", ["repository", "tag"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_event_repository_tag", table_name="event")
    op.drop_index("ix_tag_repository_updated", table_name="tag")
    op.drop_index(op.f("ix_gc_run_finished_at"), table_name="gc_run")
    op.drop_table("gc_run")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("admin")
