"""signed-out web sessions

A web session is a signed cookie any replica verifies; signing out records its nonce here
until the cookie would have expired, so a copy of the cookie stops working at once.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signed_out_session",
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("nonce", name=op.f("pk_signed_out_session")),
    )
    op.create_index(op.f("ix_signed_out_session_expires_at"), "signed_out_session", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_signed_out_session_expires_at"), table_name="signed_out_session")
    op.drop_table("signed_out_session")
