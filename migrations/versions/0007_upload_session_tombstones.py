"""upload session tombstones

Upload sessions start as signed ids without a row; the row appears with the first byte
and stays `closed` once the session completes or is cancelled. Sessions open during the
upgrade have plain uuids, which are no longer valid ids: their clients get
BLOB_UPLOAD_UNKNOWN and start again, and garbage collection removes the old rows.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upload") as batch:
        batch.alter_column("id", existing_type=sa.String(length=36), type_=sa.String(length=96))
        batch.add_column(sa.Column("closed", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM upload WHERE closed OR length(id) > 36"))
    with op.batch_alter_table("upload") as batch:
        batch.drop_column("closed")
        batch.alter_column("id", existing_type=sa.String(length=96), type_=sa.String(length=36))
