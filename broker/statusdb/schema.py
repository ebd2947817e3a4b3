"""The status view's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL.

The migrations in ``broker/statusdb/migrations/versions/`` create exactly these tables
(``tests/test_status_view_db.py`` compares them); a change here needs a new migration.

Types that are the same on both databases whatever the driver does:

* :class:`Money`: an amount as its exact decimal string (``"123.45"``), read back as
  :class:`~decimal.Decimal`; a ``float`` is refused. (SQLite has no exact decimal type: SQLAlchemy's
  ``Numeric`` would go through ``float`` there.)
* :class:`UtcDateTime`: a timezone-aware time, stored in UTC (naive UTC on SQLite, ``timestamptz`` on
  PostgreSQL), read back aware in UTC; a naive time is refused.

Text columns have no length limit: a value read from a record never makes its row fail for its
length (a row the database still refuses is kept in ``unreadable_records``, see
:func:`broker.statusdb.store.write_batch`).

Tables (one row per ...):

``invoices``
    invoice version (``invoice_key`` ``tenant:doc:id:rN``): what was priced, the latest delivery
    outcome, the latest payment, the latest dead letter, and the derived ``status``
    (:func:`broker.statusdb.mapping.derive_status`).
``invoice_events``
    record of the four topics that names a document (key ``topic, partition, offset``): the
    document's history.
``payments``
    record of ``billing.payments``.
``dead_letters``
    record of ``billing.dlq`` (headers decoded, the original value's first 4 KiB as text).
``unreadable_records``
    record that could not be read (not JSON, not the expected shape): kept with the reason.
``consumer_offsets``
    topic partition: the next offset to read, written in the transaction of the rows it covers.
``audit_log``
    login or action of an operator of the console (``broker console``, :mod:`broker.console.audit`):
    who, what, on which target and tenant, when, and the outcome. Written by the console, never by the view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

__all__ = [
    "AUDIT_LOG",
    "CONSUMER_OFFSETS",
    "DEAD_LETTERS",
    "INVOICES",
    "INVOICE_EVENTS",
    "METADATA",
    "PAYMENTS",
    "UNREADABLE",
    "Money",
    "UtcDateTime",
]


class Money(TypeDecorator[Decimal]):
    """An exact amount: stored as its decimal string, read as :class:`~decimal.Decimal`.

    Raises ``TypeError`` naming the value for a ``float`` or anything else that is not a
    ``Decimal`` (or a decimal string, which is checked)."""

    impl = String()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:  # noqa: ARG002 - SQLAlchemy's signature
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = Decimal(value)
            except InvalidOperation:
                raise TypeError(f"amount {value!r} is not a decimal number") from None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError(f"amount {value!r} ({type(value).__name__}) is not a finite Decimal")
        return format(value, "f")

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:  # noqa: ARG002 - ditto
        return None if value is None else Decimal(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware time stored in UTC; read back aware in UTC. Raises ``TypeError`` for a naive time."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise TypeError(f"time {value!r} is not a timezone-aware datetime")
        utc: datetime = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:  # noqa: ARG002 - ditto
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


METADATA = MetaData()


def _record_columns() -> list[Column[Any]]:
    """``topic, partition, offset``: the primary key of a table with one row per consumed record."""
    return [
        Column("topic", String(), primary_key=True),
        Column("partition", Integer(), primary_key=True, autoincrement=False),
        Column("offset", BigInteger(), primary_key=True, autoincrement=False),
    ]


INVOICES = Table(
    "invoices",
    METADATA,
    Column("invoice_key", String(), primary_key=True),
    Column("order_key", String(), nullable=False),
    Column("tenant", String(), nullable=False),
    # priced (billing.invoices: Invoice or NotBillable)
    Column("client_id", String()),
    Column("client_name", String()),
    Column("billing_system", String()),
    Column("document", String()),
    Column("document_id", String()),
    Column("revision", Integer()),
    Column("invoice_number", String()),
    Column("currency", String()),
    Column("net_total", Money()),
    Column("tax_total", Money()),
    Column("total", Money()),
    Column("issue_date", Date()),
    Column("due_date", Date()),
    Column("priced_state", String()),
    Column("priced_at", UtcDateTime()),
    Column("reason", Text()),
    # the latest delivery outcome (billing.deliveries)
    Column("outcome", String()),
    Column("outcome_at", UtcDateTime()),
    Column("attempts", Integer()),
    Column("error", Text()),
    Column("external_id", String()),
    Column("external_number", String()),
    Column("billed_total", Money()),
    Column("amendment", String()),
    Column("replaces", String()),
    Column("credit_note_number", String()),
    # a later version's outcome that replaced this one
    Column("replaced_by", String()),
    Column("replaced_at", UtcDateTime()),
    # the latest payment record (billing.payments)
    Column("payment_state", String()),
    Column("payment_at", UtcDateTime()),
    Column("amount_paid", Money()),
    Column("amount_due", Money()),
    # the latest dead letter of this version (billing.dlq)
    Column("dead_letter", String()),
    Column("dead_letter_class", String()),
    Column("dead_lettered_at", UtcDateTime()),
    Column("status", String(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Index("ix_invoices_tenant_status", "tenant", "status"),
    Index("ix_invoices_order_key", "order_key"),
    Index("ix_invoices_client", "tenant", "client_id"),
    Index("ix_invoices_billing_system", "billing_system"),
    Index("ix_invoices_document_id", "document_id"),
    Index("ix_invoices_updated_at", "updated_at"),
)

INVOICE_EVENTS = Table(
    "invoice_events",
    METADATA,
    *_record_columns(),
    Column("invoice_key", String()),
    Column("order_key", String()),
    Column("tenant", String()),
    Column("kind", String(), nullable=False),
    Column("name", String()),
    Column("at", UtcDateTime(), nullable=False),
    Column("detail", JSON(), nullable=False),
    Index("ix_invoice_events_invoice_key", "invoice_key"),
    Index("ix_invoice_events_order_key", "order_key"),
)

PAYMENTS = Table(
    "payments",
    METADATA,
    *_record_columns(),
    Column("event_id", String()),
    Column("invoice_key", String(), nullable=False),
    Column("tenant", String()),
    Column("type", String(), nullable=False),
    Column("state", String()),
    Column("amount", Money()),
    Column("amount_paid", Money()),
    Column("amount_due", Money()),
    Column("currency", String()),
    Column("billing_system", String()),
    Column("external_id", String()),
    Column("paid_at", UtcDateTime()),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Index("ix_payments_invoice_key", "invoice_key"),
)

DEAD_LETTERS = Table(
    "dead_letters",
    METADATA,
    *_record_columns(),
    Column("record_key", Text()),
    Column("tenant", String()),
    Column("stage", String()),
    Column("error_class", String()),
    Column("exception_type", String()),
    Column("message", Text()),
    Column("connector", String()),
    Column("http_status", Integer()),
    Column("attempts", Integer()),
    Column("replay_count", Integer(), nullable=False),
    Column("original_topic", String()),
    Column("original_partition", Integer()),
    Column("original_offset", BigInteger()),
    Column("invoice_key", String()),
    Column("order_key", String()),
    Column("value_size", Integer(), nullable=False),
    Column("value_preview", Text()),
    Column("truncated", Boolean(), nullable=False),
    Column("headers", JSON(), nullable=False),
    Column("first_failure", UtcDateTime()),
    Column("dead_lettered_at", UtcDateTime(), nullable=False),
    Index("ix_dead_letters_tenant", "tenant"),
    Index("ix_dead_letters_invoice_key", "invoice_key"),
    Index("ix_dead_letters_order_key", "order_key"),
)

UNREADABLE = Table(
    "unreadable_records",
    METADATA,
    *_record_columns(),
    Column("record_key", Text()),
    Column("error", Text(), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)

CONSUMER_OFFSETS = Table(
    "consumer_offsets",
    METADATA,
    Column("topic", String(), primary_key=True),
    Column("partition", Integer(), primary_key=True, autoincrement=False),
    Column("next_offset", BigInteger(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

AUDIT_LOG = Table(
    "audit_log",
    METADATA,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("operator", String(), nullable=False),
    Column("action", String(), nullable=False),
    Column("target", Text()),
    Column("tenant", String()),
    Column("outcome", String(), nullable=False),
    Column("detail", Text()),
    Column("remote", String()),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_operator", "operator"),
    Index("ix_audit_log_tenant", "tenant"),
)
