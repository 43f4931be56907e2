"""login_failure window index

Expired login-throttling rows are pruned as new failures arrive, by their window start.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_login_failure_window_start"), "login_failure", ["window_start"])


def downgrade() -> None:
    op.drop_index(op.f("ix_login_failure_window_start"), table_name="login_failure")
