"""The operator console's audit log: one row per login or action (who, what, target, tenant, when, outcome).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

Plain column types, as in 0001 (``UtcDateTime`` is ``TIMESTAMP WITH TIME ZONE``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("operator", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("target", sa.Text()),
        sa.Column("tenant", sa.String()),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("detail", sa.Text()),
        sa.Column("remote", sa.String()),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_operator", "audit_log", ["operator"])
    op.create_index("ix_audit_log_tenant", "audit_log", ["tenant"])


def downgrade() -> None:
    op.drop_table("audit_log")
