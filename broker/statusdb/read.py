"""Reading the status database: what the operator console (and scripts) show.

Every function takes the engine of :func:`broker.statusdb.store.open_database` and returns frozen
dataclasses; amounts are :class:`~decimal.Decimal`, times aware UTC :class:`~datetime.datetime`.

* :func:`list_invoices` — invoice versions filtered by tenant(s), client, billing system, status
  and a search text (work order / document id, invoice number, billing-system number), newest first;
* :func:`count_invoices` — how many match the same filter; :func:`status_counts` — per status;
* :func:`get_invoice` — one invoice version by key;
* :func:`document_history` — one document (``tenant:doc:id``): its versions and every record about it,
  in the order they reached Kafka;
* :func:`document_payments`, :func:`document_dead_letters` — a document's payments and dead letters;
  :func:`get_dead_letter` — one dead letter by its ``billing.dlq:P:O`` id.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, func, or_, select

from broker.statusdb.schema import DEAD_LETTERS, INVOICE_EVENTS, INVOICES, PAYMENTS

__all__ = [
    "DeadLetterRow",
    "DocumentHistory",
    "HistoryEvent",
    "InvoiceFilter",
    "InvoiceRow",
    "PaymentRow",
    "count_invoices",
    "document_dead_letters",
    "document_history",
    "document_payments",
    "get_dead_letter",
    "get_invoice",
    "list_invoices",
    "status_counts",
]

#: Most rows :func:`list_invoices` returns at once.
MAX_LIMIT = 1000


@dataclass(frozen=True)
class InvoiceRow:
    """One ``invoices`` row (column meanings: :mod:`broker.statusdb.schema`, states: :mod:`broker.statusdb.mapping`)."""

    invoice_key: str
    order_key: str
    tenant: str
    client_id: str | None
    client_name: str | None
    billing_system: str | None
    document: str | None
    document_id: str | None
    revision: int | None
    invoice_number: str | None
    currency: str | None
    net_total: Decimal | None
    tax_total: Decimal | None
    total: Decimal | None
    issue_date: date | None
    due_date: date | None
    priced_state: str | None
    priced_at: datetime | None
    reason: str | None
    outcome: str | None
    outcome_at: datetime | None
    attempts: int | None
    error: str | None
    external_id: str | None
    external_number: str | None
    billed_total: Decimal | None
    amendment: str | None
    replaces: str | None
    credit_note_number: str | None
    replaced_by: str | None
    replaced_at: datetime | None
    payment_state: str | None
    payment_at: datetime | None
    amount_paid: Decimal | None
    amount_due: Decimal | None
    dead_letter: str | None
    dead_letter_class: str | None
    dead_lettered_at: datetime | None
    status: str
    updated_at: datetime

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> InvoiceRow:
        """From a row of ``invoices`` (a mapping of its columns)."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})


@dataclass(frozen=True)
class HistoryEvent:
    """One record about a document: where it is on Kafka, what it is and its decoded value.

    ``kind``: ``invoice``, ``not_billable``, ``change``, ``outcome``, ``payment``, ``dead_letter`` or
    ``approval``;
    ``name``: the revision (``r2``), the not-billable reason code, the change's action, the outcome,
    the payment's CloudEvent type, the dead letter's error class or the decision (``approved``,
    ``rejected``); ``at``: its Kafka timestamp;
    ``detail``: the record's JSON value (a dead letter's: its id, stage, class, message, original)."""

    topic: str
    partition: int
    offset: int
    invoice_key: str | None
    kind: str
    name: str | None
    at: datetime
    detail: Any

    @property
    def id(self) -> str:
        """``topic:partition:offset`` of the record."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class DocumentHistory:
    """A document (``order_key`` ``tenant:doc:id``): its invoice versions by revision, and its history."""

    order_key: str
    versions: tuple[InvoiceRow, ...]
    events: tuple[HistoryEvent, ...]


@dataclass(frozen=True)
class InvoiceFilter:
    """Which invoice versions to list; ``None`` matches everything.

    ``tenants`` restricts to the tenants an operator may see (an empty collection: none);
    ``search`` matches, case-insensitively, part of the document id, the order key, our invoice
    number or the billing system's number."""

    tenant: str | None = None
    tenants: Collection[str] | None = None
    client_id: str | None = None
    billing_system: str | None = None
    status: str | Collection[str] | None = None
    search: str | None = None

    def where(self) -> list[ColumnElement[bool]]:
        """The SQL conditions of the filters that are set."""
        c = INVOICES.c
        out: list[ColumnElement[bool]] = []
        if self.tenant is not None:
            out.append(c.tenant == self.tenant)
        if self.tenants is not None:
            out.append(c.tenant.in_(sorted(self.tenants)))
        if self.client_id is not None:
            out.append(c.client_id == self.client_id)
        if self.billing_system is not None:
            out.append(c.billing_system == self.billing_system)
        if isinstance(self.status, str):
            out.append(c.status == self.status)
        elif self.status is not None:
            out.append(c.status.in_(sorted(self.status)))
        if self.search:
            pattern = "%" + _escape_like(self.search.strip().lower()) + "%"
            out.append(
                or_(
                    *(
                        func.lower(column).like(pattern, escape="\\")
                        for column in (c.document_id, c.order_key, c.invoice_number, c.external_number)
                    )
                )
            )
        return out


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(query: Select[Any], flt: InvoiceFilter | None) -> Select[Any]:
    return query.where(*(flt or InvoiceFilter()).where())


def list_invoices(
    engine: Engine, flt: InvoiceFilter | None = None, *, limit: int = 100, offset: int = 0
) -> list[InvoiceRow]:
    """Invoice versions matching ``flt``, the most recently changed first (then by key), ``limit``
    (1 to :data:`MAX_LIMIT`) from ``offset``. Raises ``ValueError`` naming a bad ``limit`` or ``offset``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit={limit!r} is not between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ValueError(f"offset={offset!r} is negative")
    query = _filtered(select(INVOICES), flt)
    query = query.order_by(INVOICES.c.updated_at.desc(), INVOICES.c.invoice_key).limit(limit).offset(offset)
    with engine.connect() as connection:
        return [InvoiceRow.of(row) for row in connection.execute(query).mappings()]


def count_invoices(engine: Engine, flt: InvoiceFilter | None = None) -> int:
    """How many invoice versions match ``flt``."""
    with engine.connect() as connection:
        return int(connection.execute(_filtered(select(func.count()).select_from(INVOICES), flt)).scalar_one())


def status_counts(engine: Engine, flt: InvoiceFilter | None = None) -> dict[str, int]:
    """``{status: invoice versions}`` among those matching ``flt`` (statuses without any are absent)."""
    query = _filtered(select(INVOICES.c.status, func.count()).group_by(INVOICES.c.status), flt)
    with engine.connect() as connection:
        return {status: int(n) for status, n in connection.execute(query)}


def get_invoice(engine: Engine, invoice_key: str) -> InvoiceRow | None:
    """The invoice version ``invoice_key`` (``tenant:doc:id:rN``), or ``None``."""
    with engine.connect() as connection:
        row = connection.execute(select(INVOICES).where(INVOICES.c.invoice_key == invoice_key)).mappings().first()
    return None if row is None else InvoiceRow.of(row)


def document_history(engine: Engine, order_key: str) -> DocumentHistory:
    """Document ``order_key`` (``tenant:doc:id``): its versions by revision and every record about it
    by Kafka timestamp (then topic, partition, offset). Both empty when nothing is known of it."""
    e = INVOICE_EVENTS.c
    with engine.connect() as connection:
        versions = connection.execute(
            select(INVOICES)
            .where(INVOICES.c.order_key == order_key)
            .order_by(INVOICES.c.revision.asc().nulls_last(), INVOICES.c.invoice_key)
        ).mappings()
        rows = [InvoiceRow.of(row) for row in versions]
        events = connection.execute(
            select(e.topic, e.partition, e.offset, e.invoice_key, e.kind, e.name, e.at, e.detail)
            .where(e.order_key == order_key)
            .order_by(e.at, e.topic, e.partition, e.offset)
        ).mappings()
        history = [HistoryEvent(**dict(row)) for row in events]
    return DocumentHistory(order_key, tuple(rows), tuple(history))


@dataclass(frozen=True)
class PaymentRow:
    """One ``payments`` row: a ``billing.payments`` record (``type`` its CloudEvent type, ``state`` the
    payment state it sets or ``None``); amounts :class:`~decimal.Decimal` (``amount`` this payment,
    ``amount_paid`` so far, ``amount_due`` still due), ``paid_at`` when it happened, ``recorded_at`` its
    Kafka timestamp."""

    topic: str
    partition: int
    offset: int
    recorded_at: datetime
    invoice_key: str
    type: str
    state: str | None
    currency: str | None
    amount: Decimal | None
    amount_paid: Decimal | None
    amount_due: Decimal | None
    paid_at: datetime | None
    tenant: str | None
    billing_system: str | None
    external_id: str | None
    event_id: str | None

    @property
    def id(self) -> str:
        """``topic:partition:offset`` of the record."""
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass(frozen=True)
class DeadLetterRow:
    """One ``dead_letters`` row: a ``billing.dlq`` record with its ``dlq.*`` headers as fields
    (``message`` names the field and value, secrets redacted), the original record's place, the
    invoice or document key when known and the value's first 4 KiB (``value_preview``)."""

    topic: str
    partition: int
    offset: int
    record_key: str | None
    tenant: str | None
    stage: str | None
    error_class: str | None
    exception_type: str | None
    message: str | None
    connector: str | None
    http_status: int | None
    attempts: int | None
    replay_count: int
    original_topic: str | None
    original_partition: int | None
    original_offset: int | None
    invoice_key: str | None
    order_key: str | None
    value_size: int
    value_preview: str | None
    truncated: bool
    first_failure: datetime | None
    dead_lettered_at: datetime

    @property
    def id(self) -> str:
        """``topic:partition:offset`` of the DLQ record (what ``broker dlq show`` takes)."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @classmethod
    def of(cls, row: Mapping[Any, Any]) -> DeadLetterRow:
        """From a row of ``dead_letters`` (its ``headers`` column is left out: the fields hold them)."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})


def document_payments(engine: Engine, order_key: str) -> list[PaymentRow]:
    """Payments of every version of document ``order_key`` (``tenant:doc:id``), by Kafka timestamp."""
    p = PAYMENTS.c
    versions = select(INVOICES.c.invoice_key).where(INVOICES.c.order_key == order_key)
    query = (
        select(*(getattr(p, f.name) for f in fields(PaymentRow)))
        .where(p.invoice_key.in_(versions))
        .order_by(p.recorded_at, p.topic, p.partition, p.offset)
    )
    with engine.connect() as connection:
        return [PaymentRow(**dict(row)) for row in connection.execute(query).mappings()]


def document_dead_letters(engine: Engine, order_key: str) -> list[DeadLetterRow]:
    """Dead letters of document ``order_key`` (``tenant:doc:id``), by the time they were dead-lettered."""
    d = DEAD_LETTERS.c
    query = select(DEAD_LETTERS).where(d.order_key == order_key).order_by(d.dead_lettered_at, d.partition, d.offset)
    with engine.connect() as connection:
        return [DeadLetterRow.of(row) for row in connection.execute(query).mappings()]


def get_dead_letter(engine: Engine, record_id: str) -> DeadLetterRow | None:
    """The dead letter ``topic:partition:offset`` (e.g. ``billing.dlq:0:12``), or ``None`` (also for an id
    not of that form)."""
    topic, _, rest = record_id.partition(":")
    partition, _, offset = rest.partition(":")
    if not (topic and partition.isdigit() and offset.isdigit()):
        return None
    d = DEAD_LETTERS.c
    query = select(DEAD_LETTERS).where(d.topic == topic, d.partition == int(partition), d.offset == int(offset))
    with engine.connect() as connection:
        row = connection.execute(query).mappings().first()
    return None if row is None else DeadLetterRow.of(row)
