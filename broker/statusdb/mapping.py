"""From consumed records to the status view's rows: pure functions, no database and no Kafka.

:func:`map_record` turns one record of ``billing.invoices``, ``billing.deliveries``,
``billing.payments``, ``billing.dlq`` or ``billing.approvals`` into :class:`Mapped`: the history row
(``invoice_events``), the row of ``payments`` / ``dead_letters`` / ``unreadable_records`` it adds, and the
:class:`InvoiceChange` s it makes to ``invoices`` rows. It never raises: a record that cannot be
read becomes an ``unreadable_records`` row naming why (and its offset still moves on).

:func:`merge` applies one change to an ``invoices`` row (a plain dict of its columns) and
:func:`derive_status` computes its ``status``. The four topics are read in parallel, so an
invoice's outcome may be read before the invoice itself: each kind of record sets its own columns,
and the status is the state of whichever record reached Kafka last (its timestamp), whatever order
the records were read in:

==================  ==============================================================  ==========
record              state                                                           rank
==================  ==============================================================  ==========
invoice             ``built`` (priced, waiting for delivery); ``not_billable``      0
dead letter         ``dead_lettered``                                               1
delivery outcome    ``delivered`` (``created``, ``already_delivered``,              2
                    ``amended``), ``not_billable``, ``dead_lettered``,
                    ``superseded``, ``cancelled``, ``held``,
                    ``awaiting_approval``, ``rejected``, ``parked``,
                    ``needs_reauth`` (reason and next attempt in ``error``;
                    ``next_attempt_at`` in the outcome's history row)
payment             ``paid``, ``partially_paid``, ``voided``, ``credited``          3
replacement         ``replaced`` (a later version's outcome names this one in       4
                    ``replaced``)
==================  ==============================================================  ==========

A replaced version stays ``replaced`` whatever invoice, outcome or dead letter about it comes later (a
platform retrying the old revision's event: priced again, ``already_delivered``); only a later payment
is shown over it.

Records with the same timestamp (milliseconds) rank as above; among records of one kind the one
read last wins (one invoice version's records of one kind are on one partition, in order).

**billing.payments** (written by the payments flow, issue 12 item 1) carries CloudEvents 1.0
(structured JSON) keyed like the invoice (``tenant:doc:id:rN``): ``type``
``billing.invoice.paid`` / ``.partially_paid`` / ``.voided`` (``.credited`` is read too), ``time``
when it happened, ``tenant``, ``data``: ``invoice_key`` (default: the record key),
``invoice_number``, ``billing_system``, ``external_id``, ``currency``, and amounts as decimal
strings: ``amount`` (this payment), ``amount_paid`` (paid so far), ``amount_due`` (still due).

**billing.approvals** (operators' decisions on invoices awaiting approval, ``docs/approval.md``) adds a
history row (``kind`` ``approval``, ``name`` ``approved``, ``rejected`` or ``retry_requested``) and changes
no ``invoices`` row: the invoice's status follows the deliver stage's outcome (``created``, ``rejected``,
``parked`` …).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from broker.approvals import ApprovalDecision
from broker.settings import TOPIC_APPROVALS, TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_INVOICES, TOPIC_PAYMENTS
from connectors.sdk.invoice import DeliveryOutcome, DocumentChange, Invoice, NotBillable

if TYPE_CHECKING:
    from broker.dlq import ConsumedRecord

__all__ = [
    "OUTCOME_STATUS",
    "PAYMENT_STATES",
    "STATUSES",
    "Consumed",
    "InvoiceChange",
    "Mapped",
    "derive_status",
    "invoice_key_parts",
    "map_record",
    "merge",
    "text_of",
]

#: ``status`` of an invoice version by its latest delivery outcome.
OUTCOME_STATUS = {
    "created": "delivered",
    "already_delivered": "delivered",
    "amended": "delivered",
    "not_billable": "not_billable",
    "dead_lettered": "dead_lettered",
    "superseded": "superseded",
    "cancelled": "cancelled",
    "held": "held",
    "awaiting_approval": "awaiting_approval",
    "rejected": "rejected",
    "parked": "parked",
    "needs_reauth": "needs_reauth",
}
#: ``billing.payments`` CloudEvent type -> ``payment_state`` (other ``billing.invoice.*`` types: history only).
PAYMENT_STATES = {
    "billing.invoice.paid": "paid",
    "billing.invoice.partially_paid": "partially_paid",
    "billing.invoice.voided": "voided",
    "billing.invoice.credited": "credited",
}
#: Every ``status`` value the view writes (``unknown``: a row without any state, which does not happen).
STATUSES = (
    "built",
    "delivered",
    "not_billable",
    "dead_lettered",
    "superseded",
    "cancelled",
    "held",
    "awaiting_approval",
    "rejected",
    "parked",
    "needs_reauth",
    "paid",
    "partially_paid",
    "voided",
    "credited",
    "replaced",
    "unknown",
)

#: Bytes of a dead letter's value kept as text (``dead_letters.value_preview``).
PREVIEW_BYTES = 4096

ChangeKind = Literal["priced", "dead_letter", "outcome", "payment", "replaced"]
_RANK: dict[ChangeKind, int] = {"priced": 0, "dead_letter": 1, "outcome": 2, "payment": 3, "replaced": 4}
_REVISION = re.compile(r"^r\d+$")
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class Consumed:
    """One consumed record: where it is, key and value bytes, headers, Kafka timestamp (ms since the epoch)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0

    @classmethod
    def of(cls, msg: ConsumedRecord) -> Consumed:
        """From a kafka-python ``ConsumerRecord``."""
        headers = tuple(
            (name, value if isinstance(value, bytes) else str(value or "").encode())
            for name, value in msg.headers or ()
        )
        return cls(msg.topic, msg.partition, msg.offset, msg.key, msg.value, headers, msg.timestamp)

    @property
    def at(self) -> datetime:
        """The Kafka timestamp as an aware UTC time (the epoch when the record has none)."""
        return datetime.fromtimestamp(max(0, self.timestamp_ms) / 1000.0, UTC)

    @property
    def id(self) -> str:
        """``topic:partition:offset``."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def where(self) -> dict[str, Any]:
        """The primary key columns of a row about this record."""
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True)
class InvoiceChange:
    """What one record changes in the ``invoices`` row of ``invoice_key``.

    ``columns`` are set; ``defaults`` are set only where the row has none yet (what an outcome
    knows of an invoice not read yet); ``keep`` names columns of ``columns`` whose current value
    is kept when the new one is ``None``.
    """

    invoice_key: str
    kind: ChangeKind
    at: datetime
    columns: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)
    keep: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Mapped:
    """The rows one record makes (:func:`map_record`)."""

    event: dict[str, Any] | None = None
    invoices: tuple[InvoiceChange, ...] = ()
    payment: dict[str, Any] | None = None
    dead_letter: dict[str, Any] | None = None
    unreadable: dict[str, Any] | None = None


class UnreadableError(ValueError):
    """A record that is not what its topic carries; the message says why."""


# --------------------------------------------------------------------------- keys
def invoice_key_parts(invoice_key: str) -> tuple[str, str]:
    """``(tenant, order key)`` of ``tenant:doc:id:rN`` (the order key is the key without ``:rN``;
    a key without a revision is its own order key)."""
    head, _, last = invoice_key.rpartition(":")
    order_key = head if head and _REVISION.match(last) else invoice_key
    return invoice_key.split(":", 1)[0], order_key


def text_of(raw: bytes | None, limit: int | None = None) -> str | None:
    """``raw`` as text (invalid UTF-8 replaced, NUL characters too: PostgreSQL refuses them), cut to ``limit`` bytes."""
    if raw is None:
        return None
    if limit is not None:
        raw = raw[:limit]
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def _json(value: bytes | None) -> Any:
    if value is None:
        raise UnreadableError("no value (a tombstone)")
    try:
        return json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnreadableError(f"not JSON: {exc}") from None


def _validation_message(model: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(record)"
    return f"not a valid {model}: {where}: {first['msg']}" + (
        f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    )


def _decimal(data: Mapping[str, Any], name: str) -> Decimal | None:
    """``data[name]`` as a Decimal: a decimal string (or absent / null); else ``UnreadableError`` naming the field."""
    raw = data.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise UnreadableError(f"data.{name}={raw!r}: amounts are decimal strings")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise UnreadableError(f"data.{name}={raw!r} is not a decimal number") from None
    if not value.is_finite():
        raise UnreadableError(f"data.{name}={raw!r} is not a finite number")
    return value


def _str(data: Mapping[str, Any], name: str) -> str | None:
    raw = data.get(name)
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise UnreadableError(f"{name}={raw!r} is not a string")
    return raw


# --------------------------------------------------------------------------- per topic
def _event(
    rec: Consumed, invoice_key: str | None, order_key: str | None, tenant: str | None, kind: str, name: str | None
) -> dict[str, Any]:
    return {
        **rec.where(),
        "invoice_key": invoice_key,
        "order_key": order_key,
        "tenant": tenant,
        "kind": kind,
        "name": name,
        "at": rec.at,
    }


def _priced(rec: Consumed) -> Mapped:
    doc = _json(rec.value)
    if not isinstance(doc, dict):
        raise UnreadableError(f"not a JSON object but {type(doc).__name__}")
    status = doc.get("status")
    models: dict[str, type[Invoice | NotBillable | DocumentChange]] = {
        "invoice": Invoice,
        "not_billable": NotBillable,
        "change": DocumentChange,
    }
    if status not in models:
        raise UnreadableError(f"status={status!r} is not invoice, not_billable or change")
    try:
        record = models[status].model_validate(doc)
    except ValidationError as exc:
        raise UnreadableError(_validation_message(str(status), exc)) from None
    if isinstance(record, DocumentChange):
        event = _event(rec, record.subject_key, record.order_key, record.tenant, "change", record.action)
        return Mapped(event={**event, "detail": doc})
    if isinstance(record, Invoice):
        key = record.corrects or record.invoice_key  # a correction reports under the key it corrects
        columns: dict[str, Any] = {
            "order_key": record.order_key,
            "tenant": record.tenant,
            "client_id": record.client_id,
            "client_name": record.client_name,
            "billing_system": record.billing_system,
            "document": record.document,
            "document_id": record.document_id,
            "revision": record.revision,
            "invoice_number": record.invoice_number,
            "currency": record.currency,
            "net_total": record.net_total,
            "tax_total": record.tax_total,
            "total": record.total,
            "issue_date": record.issue_date,
            "due_date": record.due_date,
            "priced_state": "built",
            "reason": None,
        }
        event = _event(rec, key, record.order_key, record.tenant, "invoice", f"r{record.revision}")
        return Mapped(event={**event, "detail": doc}, invoices=(InvoiceChange(key, "priced", rec.at, columns),))
    assert isinstance(record, NotBillable)
    _, document, document_id, revision = _split_order(record.invoice_key)
    columns = {
        "order_key": record.order_key,
        "tenant": record.tenant,
        "client_id": record.client_id,
        "document": document,
        "document_id": document_id,
        "revision": revision,
        "priced_state": "not_billable",
        "reason": record.reason,
    }
    event = _event(rec, record.invoice_key, record.order_key, record.tenant, "not_billable", record.reason_code)
    change = InvoiceChange(record.invoice_key, "priced", rec.at, columns)
    return Mapped(event={**event, "detail": doc}, invoices=(change,))


def _split_order(invoice_key: str) -> tuple[str, str | None, str | None, int | None]:
    """``(tenant, doc, id, revision)`` of ``tenant:doc:id:rN`` (``None`` for the parts a key lacks)."""
    tenant, order_key = invoice_key_parts(invoice_key)
    revision = int(invoice_key.rpartition(":")[2][1:]) if order_key != invoice_key else None
    parts = order_key.split(":", 2)
    if len(parts) < 3:
        return tenant, None, None, revision
    return tenant, parts[1], parts[2], revision


def _validated(rec: Consumed, model: type[_M], what: str) -> tuple[Any, _M]:
    """The JSON of ``rec``'s value and ``model`` validated from it; ``UnreadableError`` naming ``what`` if not."""
    doc = _json(rec.value)
    try:
        return doc, model.model_validate(doc)
    except ValidationError as exc:
        raise UnreadableError(_validation_message(what, exc)) from None


def _outcome(rec: Consumed) -> Mapped:
    doc, out = _validated(rec, DeliveryOutcome, "delivery outcome")
    _, order_key = invoice_key_parts(out.invoice_key)
    columns = {
        "outcome": out.outcome,
        "attempts": out.attempts,
        "error": out.error,
        "external_id": out.external_id,
        "external_number": out.external_number,
        "billed_total": out.billed_total,
        "amendment": out.amendment,
        "replaces": out.replaced,
        "credit_note_number": out.credit_note_number,
    }
    defaults = {"billing_system": out.billing_system, "currency": out.currency, "total": out.total}
    changes = [
        InvoiceChange(
            out.invoice_key, "outcome", rec.at, columns, defaults, keep=frozenset({"external_id", "external_number"})
        )
    ]
    if out.replaced and out.replaced != out.invoice_key:
        changes.append(
            InvoiceChange(out.replaced, "replaced", rec.at, {"replaced_by": out.invoice_key, "replaced_at": rec.at})
        )
    event = _event(rec, out.invoice_key, order_key, out.tenant, "outcome", out.outcome)
    return Mapped(event={**event, "detail": doc}, invoices=tuple(changes))


def _payment(rec: Consumed) -> Mapped:
    doc = _json(rec.value)
    if not isinstance(doc, dict):
        raise UnreadableError(f"not a JSON object but {type(doc).__name__}")
    kind = _str(doc, "type")
    if not kind or not kind.startswith("billing.invoice."):
        raise UnreadableError(f"type={kind!r} is not a billing.invoice.* CloudEvent")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise UnreadableError(f"data={data!r} is not an object")
    invoice_key = _str(data, "invoice_key") or text_of(rec.key)
    if not invoice_key:
        raise UnreadableError("no data.invoice_key and no record key")
    tenant = _str(doc, "tenant") or invoice_key_parts(invoice_key)[0]
    when = _str(doc, "time")
    try:
        paid_at = datetime.fromisoformat(when.replace("Z", "+00:00")) if when else None
    except ValueError:
        raise UnreadableError(f"time={when!r} is not an RFC 3339 time") from None
    if paid_at is not None and paid_at.tzinfo is None:
        raise UnreadableError(f"time={when!r} has no UTC offset")
    state = PAYMENT_STATES.get(kind)
    amount_paid, amount_due = _decimal(data, "amount_paid"), _decimal(data, "amount_due")
    payment = {
        **rec.where(),
        "event_id": _str(doc, "id"),
        "invoice_key": invoice_key,
        "tenant": tenant,
        "type": kind,
        "state": state,
        "amount": _decimal(data, "amount"),
        "amount_paid": amount_paid,
        "amount_due": amount_due,
        "currency": _str(data, "currency"),
        "billing_system": _str(data, "billing_system"),
        "external_id": _str(data, "external_id"),
        "paid_at": paid_at,
        "recorded_at": rec.at,
    }
    changes: tuple[InvoiceChange, ...] = ()
    if state is not None:
        columns = {"payment_state": state, "amount_paid": amount_paid, "amount_due": amount_due}
        changes = (
            InvoiceChange(invoice_key, "payment", rec.at, columns, keep=frozenset({"amount_paid", "amount_due"})),
        )
    order_key = invoice_key_parts(invoice_key)[1]
    event = _event(rec, invoice_key, order_key, tenant, "payment", kind)
    return Mapped(event={**event, "detail": doc}, invoices=changes, payment=payment)


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


def _dead_letter(rec: Consumed) -> Mapped:
    headers = {name: text_of(value) or "" for name, value in rec.headers}
    invoice_key = order_key = None
    tenant = headers.get("dlq.tenant") or None
    try:
        doc = json.loads(rec.value) if rec.value is not None else None
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and headers.get("dlq.stage") == "deliver":  # an Invoice, NotBillable or DocumentChange
        if isinstance(doc.get("change_key"), str) and isinstance(doc.get("revision"), int):
            order_key = doc.get("order_key") if isinstance(doc.get("order_key"), str) else None
            invoice_key = f"{order_key}:r{doc['revision']}" if order_key else None
        else:
            found = doc.get("corrects") or doc.get("invoice_key")
            invoice_key = found if isinstance(found, str) else None
        if isinstance(doc.get("order_key"), str):
            order_key = doc["order_key"]
        if tenant is None and isinstance(doc.get("tenant"), str):
            tenant = doc["tenant"]
    if order_key is None and rec.key is not None and len(rec.key) <= 512:
        order_key = text_of(rec.key)  # dead letters keep the original key: tenant:doc:id
    if invoice_key is not None and order_key is None:
        order_key = invoice_key_parts(invoice_key)[1]
    first = headers.get("dlq.first.failure")
    try:
        first_failure = datetime.fromisoformat(first) if first else None
    except ValueError:
        first_failure = None
    if first_failure is not None and first_failure.tzinfo is None:
        first_failure = first_failure.replace(tzinfo=UTC)
    error_class = headers.get("dlq.error.class") or None
    row = {
        **rec.where(),
        "record_key": text_of(rec.key),
        "tenant": tenant,
        "stage": headers.get("dlq.stage") or None,
        "error_class": error_class,
        "exception_type": headers.get("dlq.exception.type") or None,
        "message": headers.get("dlq.message") or None,
        "connector": headers.get("dlq.connector") or None,
        "http_status": _int(headers.get("dlq.http.status")),
        "attempts": _int(headers.get("dlq.attempts")),
        "replay_count": _int(headers.get("dlq.replay.count")) or 0,
        "original_topic": headers.get("dlq.topic") or None,
        "original_partition": _int(headers.get("dlq.partition")),
        "original_offset": _int(headers.get("dlq.offset")),
        "invoice_key": invoice_key,
        "order_key": order_key,
        "value_size": len(rec.value or b""),
        "value_preview": text_of(rec.value, PREVIEW_BYTES),
        "truncated": headers.get("dlq.value.truncated") == "true",
        "headers": headers,
        "first_failure": first_failure,
        "dead_lettered_at": rec.at,
    }
    changes: tuple[InvoiceChange, ...] = ()
    if invoice_key is not None:
        columns = {"dead_letter": rec.id, "dead_letter_class": error_class, "dead_lettered_at": rec.at}
        changes = (InvoiceChange(invoice_key, "dead_letter", rec.at, columns),)
    event = None
    if order_key is not None:
        detail = {
            "id": rec.id,
            "stage": row["stage"],
            "error_class": error_class,
            "message": row["message"],
            "original": f"{row['original_topic']}:{row['original_partition']}:{row['original_offset']}",
        }
        event = {**_event(rec, invoice_key, order_key, tenant, "dead_letter", error_class), "detail": detail}
    return Mapped(event=event, invoices=changes, dead_letter=row)


def _approval(rec: Consumed) -> Mapped:
    doc, decision = _validated(rec, ApprovalDecision, "approval decision")
    name = "approved" if decision.approved else "retry_requested" if decision.retry_requested else "rejected"
    event = _event(rec, decision.invoice_key, decision.order_key, decision.tenant, "approval", name)
    return Mapped(event={**event, "detail": doc})


_BY_TOPIC = {
    TOPIC_INVOICES: _priced,
    TOPIC_DELIVERIES: _outcome,
    TOPIC_PAYMENTS: _payment,
    TOPIC_DLQ: _dead_letter,
    TOPIC_APPROVALS: _approval,
}


def map_record(rec: Consumed) -> Mapped:
    """The rows ``rec`` makes (module docstring); an ``unreadable_records`` row naming why when it cannot be read."""
    try:
        handler = _BY_TOPIC.get(rec.topic)
        if handler is None:
            raise UnreadableError(f"topic {rec.topic!r} is not one the status view reads")
        return handler(rec)
    except UnreadableError as exc:
        return Mapped(unreadable={**rec.where(), "record_key": text_of(rec.key, 1024), "error": str(exc), "at": rec.at})


# --------------------------------------------------------------------------- invoices rows
#: Every column of an ``invoices`` row, ``None`` (what :func:`merge` starts a new row from).
INVOICE_COLUMNS = (
    "invoice_key",
    "order_key",
    "tenant",
    "client_id",
    "client_name",
    "billing_system",
    "document",
    "document_id",
    "revision",
    "invoice_number",
    "currency",
    "net_total",
    "tax_total",
    "total",
    "issue_date",
    "due_date",
    "priced_state",
    "priced_at",
    "reason",
    "outcome",
    "outcome_at",
    "attempts",
    "error",
    "external_id",
    "external_number",
    "billed_total",
    "amendment",
    "replaces",
    "credit_note_number",
    "replaced_by",
    "replaced_at",
    "payment_state",
    "payment_at",
    "amount_paid",
    "amount_due",
    "dead_letter",
    "dead_letter_class",
    "dead_lettered_at",
    "status",
    "updated_at",
)
_TIME_OF: dict[ChangeKind, str] = {
    "priced": "priced_at",
    "dead_letter": "dead_lettered_at",
    "outcome": "outcome_at",
    "payment": "payment_at",
    "replaced": "replaced_at",
}


def merge(row: Mapping[str, Any] | None, change: InvoiceChange) -> dict[str, Any]:
    """The ``invoices`` row after ``change`` (a new dict; ``row`` ``None``: the version has no row yet).

    The change's columns are set (those in ``change.keep`` only when not ``None``), its
    ``defaults`` where the row has ``None``, its kind's time column to ``change.at``; a
    ``replaced`` change only when it is the latest replacement. ``status`` is
    :func:`derive_status` of the result, ``updated_at`` the latest record time applied.
    """
    if row is None:
        tenant, order_key = invoice_key_parts(change.invoice_key)
        new: dict[str, Any] = dict.fromkeys(INVOICE_COLUMNS)
        new.update(invoice_key=change.invoice_key, tenant=tenant, order_key=order_key)
    else:
        new = dict(row)
    time_column = _TIME_OF[change.kind]
    if change.kind == "replaced" and new[time_column] is not None and new[time_column] > change.at:
        return new  # an older replacement read after a newer one
    for name, value in change.columns.items():
        if value is not None or name not in change.keep:
            new[name] = value
    for name, value in change.defaults.items():
        if new[name] is None:
            new[name] = value
    new[time_column] = change.at
    new["status"] = derive_status(new)
    new["updated_at"] = change.at if new["updated_at"] is None else max(new["updated_at"], change.at)
    return new


def derive_status(row: Mapping[str, Any]) -> str:
    """The ``status`` of an ``invoices`` row: the state of its latest record (module docstring's table)."""
    states: list[tuple[datetime, int, str]] = []
    if row.get("priced_state"):
        states.append((row["priced_at"], _RANK["priced"], row["priced_state"]))
    if row.get("dead_letter"):
        states.append((row["dead_lettered_at"], _RANK["dead_letter"], "dead_lettered"))
    if row.get("outcome"):
        states.append((row["outcome_at"], _RANK["outcome"], OUTCOME_STATUS.get(row["outcome"], row["outcome"])))
    if row.get("payment_state"):
        states.append((row["payment_at"], _RANK["payment"], row["payment_state"]))
    if row.get("replaced_by"):
        # final: a retry's records about the old version (priced again, already_delivered) do not make it
        # live again; only a later payment is shown over it
        states = [state for state in states if state[1] >= _RANK["payment"]]
        states.append((row["replaced_at"], _RANK["replaced"], "replaced"))
    return max(states)[2] if states else "unknown"
