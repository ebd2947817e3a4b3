"""The first schema: invoices, invoice_events, payments, dead_letters, unreadable_records, consumer_offsets.

Revision ID: 0001
Revises:
Create Date: 2026-11-01

Written out with plain column types (``Money`` is ``VARCHAR``, ``UtcDateTime`` is
``TIMESTAMP WITH TIME ZONE``), so that this revision creates the same tables whatever later
versions of ``broker/statusdb/schema.py`` say.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.String()
TIME = sa.DateTime(timezone=True)


def _record_key() -> list[sa.Column[object]]:
    return [
        sa.Column("topic", sa.String(), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("offset", sa.BigInteger(), primary_key=True, autoincrement=False),
    ]


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("invoice_key", sa.String(), primary_key=True),
        sa.Column("order_key", sa.String(), nullable=False),
        sa.Column("tenant", sa.String(), nullable=False),
        sa.Column("client_id", sa.String()),
        sa.Column("client_name", sa.String()),
        sa.Column("billing_system", sa.String()),
        sa.Column("document", sa.String()),
        sa.Column("document_id", sa.String()),
        sa.Column("revision", sa.Integer()),
        sa.Column("invoice_number", sa.String()),
        sa.Column("currency", sa.String()),
        sa.Column("net_total", MONEY),
        sa.Column("tax_total", MONEY),
        sa.Column("total", MONEY),
        sa.Column("issue_date", sa.Date()),
        sa.Column("due_date", sa.Date()),
        sa.Column("priced_state", sa.String()),
        sa.Column("priced_at", TIME),
        sa.Column("reason", sa.Text()),
        sa.Column("outcome", sa.String()),
        sa.Column("outcome_at", TIME),
        sa.Column("attempts", sa.Integer()),
        sa.Column("error", sa.Text()),
        sa.Column("external_id", sa.String()),
        sa.Column("external_number", sa.String()),
        sa.Column("billed_total", MONEY),
        sa.Column("amendment", sa.String()),
        sa.Column("replaces", sa.String()),
        sa.Column("credit_note_number", sa.String()),
        sa.Column("replaced_by", sa.String()),
        sa.Column("replaced_at", TIME),
        sa.Column("payment_state", sa.String()),
        sa.Column("payment_at", TIME),
        sa.Column("amount_paid", MONEY),
        sa.Column("amount_due", MONEY),
        sa.Column("dead_letter", sa.String()),
        sa.Column("dead_letter_class", sa.String()),
        sa.Column("dead_lettered_at", TIME),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_index("ix_invoices_tenant_status", "invoices", ["tenant", "status"])
    op.create_index("ix_invoices_order_key", "invoices", ["order_key"])
    op.create_index("ix_invoices_client", "invoices", ["tenant", "client_id"])
    op.create_index("ix_invoices_billing_system", "invoices", ["billing_system"])
    op.create_index("ix_invoices_document_id", "invoices", ["document_id"])
    op.create_index("ix_invoices_updated_at", "invoices", ["updated_at"])

    op.create_table(
        "invoice_events",
        *_record_key(),
        sa.Column("invoice_key", sa.String()),
        sa.Column("order_key", sa.String()),
        sa.Column("tenant", sa.String()),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("name", sa.String()),
        sa.Column("at", TIME, nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_index("ix_invoice_events_invoice_key", "invoice_events", ["invoice_key"])
    op.create_index("ix_invoice_events_order_key", "invoice_events", ["order_key"])

    op.create_table(
        "payments",
        *_record_key(),
        sa.Column("event_id", sa.String()),
        sa.Column("invoice_key", sa.String(), nullable=False),
        sa.Column("tenant", sa.String()),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("state", sa.String()),
        sa.Column("amount", MONEY),
        sa.Column("amount_paid", MONEY),
        sa.Column("amount_due", MONEY),
        sa.Column("currency", sa.String()),
        sa.Column("billing_system", sa.String()),
        sa.Column("external_id", sa.String()),
        sa.Column("paid_at", TIME),
        sa.Column("recorded_at", TIME, nullable=False),
    )
    op.create_index("ix_payments_invoice_key", "payments", ["invoice_key"])

    op.create_table(
        "dead_letters",
        *_record_key(),
        sa.Column("record_key", sa.Text()),
        sa.Column("tenant", sa.String()),
        sa.Column("stage", sa.String()),
        sa.Column("error_class", sa.String()),
        sa.Column("exception_type", sa.String()),
        sa.Column("message", sa.Text()),
        sa.Column("connector", sa.String()),
        sa.Column("http_status", sa.Integer()),
        sa.Column("attempts", sa.Integer()),
        sa.Column("replay_count", sa.Integer(), nullable=False),
        sa.Column("original_topic", sa.String()),
        sa.Column("original_partition", sa.Integer()),
        sa.Column("original_offset", sa.BigInteger()),
        sa.Column("invoice_key", sa.String()),
        sa.Column("order_key", sa.String()),
        sa.Column("value_size", sa.Integer(), nullable=False),
        sa.Column("value_preview", sa.Text()),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("first_failure", TIME),
        sa.Column("dead_lettered_at", TIME, nullable=False),
    )
    op.create_index("ix_dead_letters_tenant", "dead_letters", ["tenant"])
    op.create_index("ix_dead_letters_invoice_key", "dead_letters", ["invoice_key"])
    op.create_index("ix_dead_letters_order_key", "dead_letters", ["order_key"])

    op.create_table(
        "unreadable_records",
        *_record_key(),
        sa.Column("record_key", sa.Text()),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("at", TIME, nullable=False),
    )

    op.create_table(
        "consumer_offsets",
        sa.Column("topic", sa.String(), primary_key=True),
        sa.Column("partition", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("next_offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )


def downgrade() -> None:
    for table in ("consumer_offsets", "unreadable_records", "dead_letters", "payments", "invoice_events", "invoices"):
        op.drop_table(table)
