"""blob.touched_at: when a blob was last uploaded or linked, for garbage collection's grace period

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite cannot add a column with a non-constant default, so: add, fill, then tighten.
    with op.batch_alter_table("blob", schema=None) as batch_op:
        batch_op.add_column(sa.Column("touched_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE blob SET touched_at = created_at")
    with op.batch_alter_table("blob", schema=None) as batch_op:
        batch_op.alter_column(
            "touched_at", existing_type=sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        )
        batch_op.create_index(batch_op.f("ix_blob_touched_at"), ["touched_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("blob", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_blob_touched_at"))
        batch_op.drop_column("touched_at")
