"""The delivery ledger's rules: one entry per invoice version (and per document change), one per work order.

Entries are JSON objects kept in a :class:`LedgerStore` (the changelog-backed Faust table
``delivery-ledger`` in the worker, a dict in unit tests); the rules are :class:`InvoiceLedger`'s.
:class:`RecordMeta` is where a record came from and how it fared so far (retry-topic headers).
A record is an :class:`~connectors.sdk.invoice.Invoice` or a :class:`~connectors.sdk.invoice.DocumentChange`
(:class:`LedgerRecord`: both have an ``invoice_key``, the change's being its ``change_key``, and an ``order_key``).
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NotRequired, Protocol, TypedDict, TypeVar

from broker import metrics
from connectors.sdk.errors import ConnectorError
from connectors.sdk.interface import DeliveryResult
from connectors.sdk.invoice import DocumentChange, Invoice, NotBillable

__all__ = [
    "ORDER_PREFIX",
    "Amendment",
    "CancelRef",
    "DeliveredRef",
    "DictLedgerStore",
    "HoldRef",
    "InvoiceLedger",
    "LedgerEntry",
    "LedgerRecord",
    "LedgerStore",
    "PendingOutcome",
    "RecordMeta",
    "StoredEntry",
    "WorkOrder",
    "entry_state",
    "pack_entry",
    "unpack_entry",
]

#: An invoice entry: a JSON object with the keys listed in :class:`InvoiceLedger`'s docstring.
LedgerEntry = dict[str, Any]

#: A ledger value as stored: an entry (a dict), a settled entry's compact text (:func:`pack_entry`), or a
#: work-order entry's pointer to the invoice entry that holds its delivered revision (an ``int`` revision
#: ``N`` for ``…:rN``, or the key's suffix ``rN:cN`` for a correction).
StoredEntry = LedgerEntry | str | int

#: Key prefix of work-order entries (``order:tenant:doc:id``).
ORDER_PREFIX = "order:"

#: States after which an entry is only read, never acted on again: stored compact (:func:`pack_entry`).
SETTLED_STATES = ("delivered", "not_billable", "failed", "superseded", "cancelled", "held", "rejected")
_STATE_CODES = {
    "delivered": "d",
    "not_billable": "n",
    "failed": "f",
    "superseded": "s",
    "cancelled": "c",
    "held": "h",
    "rejected": "r",
}
_CODE_STATES = {code: state for state, code in _STATE_CODES.items()}
#: What a settled entry no longer keeps: the record and its retry state (only while parked or queued),
#: ``uncertain`` (false once settled), the delivery time (its ``updated_at``), the billing system (the
#: tenant's) and how it was parked.
_DROPPED = (
    "payload",
    "meta",
    "due",
    "uncertain",
    "delivered_at",
    "billing_system",
    "park_reason",
    "park_level",
    "park_reported",
    "retry_request",
)
#: The compact text's fields after the state code and the two times, in order (the last: every other field).
_POSITIONAL = ("external_id", "external_number", "fingerprint", "total", "currency", "origin", "outcome", "attempts")
_INVOICES_TOPIC = "billing.invoices"
_FINGERPRINT = re.compile(r"sha256:[0-9a-f]{64}")
_CORRECTION = re.compile(r"c\d+")
_REVISION = re.compile(r"r(\d+)")

_N = TypeVar("_N", int, float)


def _utcnow() -> str:
    return datetime.now(UTC).isoformat()


def correction_number(invoice: Invoice) -> int:
    """``n`` of a correction delivered by the deliver stage (key ``<corrected key>:c<n>``); 0 for any other invoice."""
    if not invoice.corrects:
        return 0
    suffix = invoice.invoice_key.rsplit(":c", 1)[-1]
    return int(suffix) if suffix.isdigit() else 0


def _key_fields(key: str) -> dict[str, Any]:
    """What a ledger key says of its entry: ``invoice_key``, and for ``tenant:doc:id:rN`` its ``order_key`` and
    ``revision``, for a correction (``…:rN:cN``) also ``corrects``, for a change (``…:rN:reopen|cancel``) ``action``."""
    out: dict[str, Any] = {"invoice_key": key}
    parts = key.split(":")
    tail = parts[-1]
    change = tail in ("reopen", "cancel")
    if len(parts) >= 3 and _REVISION.fullmatch(parts[-2]) and (change or _CORRECTION.fullmatch(tail)):
        revision, out["order_key"] = parts[-2], ":".join(parts[:-2])
        if change:
            out["action"] = tail
        else:
            out["corrects"] = ":".join(parts[:-1])
    elif len(parts) >= 2 and _REVISION.fullmatch(tail):
        revision, out["order_key"] = tail, ":".join(parts[:-1])
    else:
        return out
    out["revision"] = int(revision[1:])
    return out


def _epoch(text: Any) -> int | None:
    """Whole epoch seconds of an ISO time with a zone (``None``: not one)."""
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return int(moment.timestamp()) if moment is not None and moment.tzinfo is not None else None


def _pack_id(value: str) -> str:
    """An external id, a canonical UUID as ``~`` + its 16 bytes in base64url (a ``~`` doubled in others)."""
    if value.startswith("~"):
        return "~" + value
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return value
    return "~" + base64.urlsafe_b64encode(parsed.bytes).decode().rstrip("=") if str(parsed) == value else value


def _unpack_id(value: str) -> str:
    if value.startswith("~~"):
        return value[1:]
    if value.startswith("~"):
        return str(uuid.UUID(bytes=base64.urlsafe_b64decode(value[1:] + "==")))
    return value


def _pack_position(name: str, value: Any, origin: Any) -> tuple[bool, Any]:
    """``(True, the compact form)`` of field ``name``, or ``(False, None)`` when it is kept as it is."""
    if value is None:
        return True, None
    if name == "external_id" and isinstance(value, str):
        return True, _pack_id(value)
    if name == "fingerprint" and isinstance(value, str) and _FINGERPRINT.fullmatch(value):
        return True, base64.urlsafe_b64encode(bytes.fromhex(value[7:])).decode().rstrip("=")
    if name == "outcome":
        if isinstance(value, dict) and set(value) == {"published", "source"} and value["published"] is True:
            source = value["source"]
            return True, "" if source is None else 0 if source == origin else _pack_position("origin", source, None)[1]
        return False, None
    if name == "origin" and isinstance(value, str) and not value.startswith(":"):
        return True, value[len(_INVOICES_TOPIC) :] if value.startswith(_INVOICES_TOPIC + ":") else value
    if name in ("external_number", "total", "currency") and isinstance(value, str):
        return True, value
    if name == "attempts" and isinstance(value, int) and not isinstance(value, bool):
        return True, value
    return False, None


def _unpack_position(name: str, value: Any, origin: Any) -> Any:
    if name == "external_id":
        return _unpack_id(value)
    if name == "fingerprint":
        return "sha256:" + base64.urlsafe_b64decode(value + "=").hex()
    if name == "origin":
        return _INVOICES_TOPIC + value if value.startswith(":") else value
    if name == "outcome":
        source = None if value == "" else origin if value == 0 else _unpack_position("origin", value, None)
        return {"published": True, "source": source}
    return value


def pack_entry(key: str, entry: LedgerEntry) -> StoredEntry:
    """The stored form of invoice or change entry ``entry`` at ``key``: a settled one (``delivered``,
    ``not_billable``, ``failed``, ``superseded``, ``cancelled``, ``held``; not ``uncertain``, its outcome
    published) as compact JSON text, any other as it is.

    The text is a JSON array: the state's code, ``created_at`` in epoch seconds, ``updated_at`` in seconds
    after it, then :data:`_POSITIONAL` (a canonical UUID id in base64url after ``~``, the fingerprint's
    hash in base64url, ``billing.invoices`` left out of the origin, the published outcome as ``0`` when
    its source is the origin), trailing nulls left out, and last, when there are any, the entry's other
    fields as an object. Left out: what :func:`_key_fields` derives from ``key``, ``number`` when it is
    the ``external_number``, ``reconciled`` when false, and the :data:`_DROPPED` fields. Read back by
    :func:`unpack_entry` (times to the second)."""
    code = _STATE_CODES.get(str(entry.get("state")))
    outcome = entry.get("outcome")
    if (
        code is None
        or entry.get("uncertain")
        or (outcome is not None and not _pack_position("outcome", outcome, None)[0])
    ):
        return entry
    rest = {k: v for k, v in entry.items() if k not in _DROPPED and k != "state"}
    for name, derived in _key_fields(key).items():
        if name in rest and rest[name] == derived:
            del rest[name]
    if "number" in rest and rest["number"] == rest.get("external_number"):
        del rest["number"]
    if rest.get("reconciled") is False:
        del rest["reconciled"]
    created, updated = _epoch(rest.get("created_at")), _epoch(rest.get("updated_at"))
    if created is not None and updated is not None:
        del rest["created_at"], rest["updated_at"]
    else:
        created = updated = None
    values: list[Any] = [code, created, None if created is None or updated is None else updated - created]
    origin = rest.get("origin")
    for name in _POSITIONAL:
        ok, packed = _pack_position(name, rest.get(name), origin)
        values.append(packed if ok else None)
        if ok:
            rest.pop(name, None)
    while values[-1] is None:
        values.pop()
    if rest:
        values.append(rest)
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


def unpack_entry(key: str, value: StoredEntry | None) -> LedgerEntry:
    """The entry stored at ``key`` as a dict (a copy): an entry written whole (any version) as it is, a
    compact one (:func:`pack_entry`) with what its key says, ``uncertain`` false, ``number`` its
    ``external_number`` and, delivered, ``reconciled`` false unless kept; empty for anything else."""
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str) or not value.startswith("["):
        return {}
    items = json.loads(value)
    extras = items.pop() if isinstance(items[-1], dict) else {}
    code, created, delta, *fields = items + [None] * (3 + len(_POSITIONAL) - len(items))
    entry = _key_fields(key)
    entry.update({"state": _CODE_STATES.get(code, code), "uncertain": False})
    if created is not None:
        entry["created_at"] = datetime.fromtimestamp(created, UTC).isoformat()
        entry["updated_at"] = datetime.fromtimestamp(created + (delta or 0), UTC).isoformat()
    for name, packed in zip(_POSITIONAL, fields, strict=False):
        if packed is not None:
            entry[name] = _unpack_position(name, packed, entry.get("origin"))
    if entry.get("external_number") is not None and "number" not in extras:
        entry["number"] = entry["external_number"]
    if entry["state"] == "delivered":
        entry["reconciled"] = False
    entry.update(extras)
    return entry


def entry_state(value: StoredEntry | None) -> str | None:
    """The ``state`` of a stored invoice or change entry, whole or compact (``None``: a work-order pointer)."""
    if isinstance(value, dict):
        state = value.get("state")
        return None if state is None else str(state)
    if isinstance(value, str) and value.startswith('["'):
        return _CODE_STATES.get(value[2:3])
    return None


def _ref_of(key: str, entry: LedgerEntry) -> DeliveredRef:
    """The :class:`DeliveredRef` of the invoice entry ``entry`` at ``key`` (what its work order bills)."""
    derived = _key_fields(key)
    corrects = entry.get("corrects", derived.get("corrects"))
    suffix = key.rsplit(":c", 1)[-1]
    return {
        "invoice_key": key,
        "revision": int(entry.get("revision", derived.get("revision")) or 0),
        "external_id": entry.get("external_id"),
        "external_number": entry.get("external_number"),
        "fingerprint": entry.get("fingerprint"),
        "total": entry.get("total"),
        "currency": entry.get("currency"),
        "source": entry.get("origin"),
        "corrects": corrects,
        "correction": int(suffix) if corrects and suffix.isdigit() else 0,
    }


class LedgerRecord(Protocol):
    """What the ledger reads of a record: its ledger key and its document's key."""

    @property
    def invoice_key(self) -> str:
        """Ledger key: the invoice key ``tenant:doc:id:rN`` (a change's ``change_key``)."""

    @property
    def order_key(self) -> str:
        """The document's key ``tenant:doc:id``."""


class DeliveredRef(TypedDict):
    """The delivered revision of a work order (its work-order entry's ``delivered``): the document the
    billing system bills for it.

    Written since content fingerprints exist (absent in older entries): ``fingerprint`` of the billed
    content, its ``total`` (decimal string) and ``currency``, ``source`` (``topic:partition:offset`` of the
    record whose content it is: an older record of the same invoice key is not a correction), and for a
    correction ``corrects`` (the invoice key corrected) and ``correction`` (its number, 1, 2, ...).
    """

    invoice_key: str
    revision: int
    external_id: str | None
    external_number: str | None
    fingerprint: NotRequired[str | None]
    total: NotRequired[str | None]
    currency: NotRequired[str | None]
    source: NotRequired[str | None]
    corrects: NotRequired[str | None]
    correction: NotRequired[int]


class HoldRef(TypedDict):
    """A reopened work order (its work-order entry's ``held``): revisions up to ``revision`` are not billed."""

    revision: int
    change_key: str


class CancelRef(TypedDict):
    """A cancelled document (its work-order entry's ``cancelled``): revisions up to ``revision`` are never billed.

    ``state``: ``pending`` (recorded; the billed document not retired yet), ``done`` or ``failed``
    (dead-lettered: the billing system still bills ``billed``); ``retired``: the document retired,
    ``action`` (``deleted``, ``voided``, ``credited``, ``none``) and ``credit_note_number`` how.
    """

    revision: int
    change_key: str
    state: str
    billed: NotRequired[DeliveredRef | None]
    retired: NotRequired[DeliveredRef | None]
    action: NotRequired[str | None]
    credit_note_number: NotRequired[str | None]


class WorkOrder(TypedDict):
    """A work-order entry: keys waiting in order (head parked first), the delivered revision, and when the
    document was reopened or cancelled, ``held`` / ``cancelled``, and ``awaiting``: its versions held for an
    operator's approval (``docs/approval.md``; each absent when there is none)."""

    parked: list[str]
    delivered: DeliveredRef | None
    held: NotRequired[HoldRef]
    cancelled: NotRequired[CancelRef]
    awaiting: NotRequired[list[str]]


class Amendment(TypedDict):
    """How a new revision replaced the previous one in the billing system (``Delivered.amendment``)."""

    previous_invoice_key: str | None
    previous_number: str | None
    action: str  # credited, deleted, voided, replaced
    credit_note_number: str | None
    credit_note_id: str | None


class PendingOutcome(TypedDict):
    """The copy of an outcome record kept in a ``delivered`` entry until it is published.

    ``partition``: the ``billing.deliveries`` partition it goes to; ``scan_from``: an offset no
    higher than the one it will get; ``value``: the record (JSON text); ``source``:
    ``topic:partition:offset`` of the record that delivered it (``None``: released from the ledger);
    ``key``: the record's Kafka key when it is not the entry's own key (a correction's outcome is keyed
    by the invoice key it corrects).
    """

    published: bool
    partition: int
    scan_from: int
    value: str
    source: str | None
    key: NotRequired[str]


class LedgerStore(Protocol):
    """Where ledger entries live: the Faust table in the worker, a dict in unit tests."""

    def get(self, key: str) -> StoredEntry | None:
        """The entry at ``key`` as stored (``None`` when there is none)."""

    def put(self, key: str, value: StoredEntry) -> None:
        """Set the entry at ``key`` (durable eventually)."""

    async def put_durable(self, key: str, value: StoredEntry) -> None:
        """``put`` and wait until it is durable (the changelog record acknowledged by the brokers)."""


class DictLedgerStore:
    """In-memory :class:`LedgerStore` (tests, tools); ``flushes`` counts :meth:`put_durable` calls."""

    def __init__(self) -> None:
        self.data: dict[str, StoredEntry] = {}
        self.flushes = 0

    def get(self, key: str) -> StoredEntry | None:
        """The entry at ``key`` or ``None``."""
        return self.data.get(key)

    def put(self, key: str, value: StoredEntry) -> None:
        """Set the entry at ``key``."""
        self.data[key] = value

    async def put_durable(self, key: str, value: StoredEntry) -> None:
        """Set the entry at ``key`` and count a flush."""
        self.data[key] = value
        self.flushes += 1


def _header_number(headers: Mapping[str, str], name: str, cast: Callable[[str], _N]) -> _N | None:
    """Header ``name`` as a number (``None`` when absent, empty or not a number)."""
    try:
        return cast(headers[name]) if headers.get(name) not in (None, "") else None
    except ValueError:
        return None


@dataclass
class RecordMeta:
    """Where an invoice record came from and how it fared so far (carried in retry-topic headers).

    ``origin_*``: its position on the topic it was first consumed from (``billing.invoices``);
    ``parks``: times parked; ``first_failure``: epoch seconds of its first failed attempt;
    ``attempts``: calls made; ``replay_count``: DLQ replays; ``last_error``: the last error's text.
    """

    origin_topic: str
    origin_partition: int
    origin_offset: int
    parks: int = 0
    first_failure: float | None = None  # epoch seconds
    attempts: int = 0
    replay_count: int = 0
    last_error: str | None = None

    HEADER_PREFIX = "retry."

    @property
    def origin(self) -> str:
        """``topic:partition:offset`` of the record's first consumption."""
        return f"{self.origin_topic}:{self.origin_partition}:{self.origin_offset}"

    def is_before(self, origin: str | None) -> bool:
        """True when this record came before (or is) the one at ``origin`` (``topic:partition:offset``) on the
        same topic partition; False when ``origin`` is unknown or on another partition."""
        if not origin or origin.count(":") < 2:
            return False
        topic, partition, offset = origin.rsplit(":", 2)
        try:
            same = topic == self.origin_topic and int(partition) == self.origin_partition
            return same and self.origin_offset <= int(offset)
        except ValueError:
            return False

    def to_dict(self) -> dict[str, str | int | float | None]:
        """JSON-ready form (kept in parked/queued ledger entries)."""
        return {
            "origin_topic": self.origin_topic,
            "origin_partition": self.origin_partition,
            "origin_offset": self.origin_offset,
            "parks": self.parks,
            "first_failure": self.first_failure,
            "attempts": self.attempts,
            "replay_count": self.replay_count,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecordMeta:
        """Inverse of :meth:`to_dict` (missing keys get their defaults)."""
        return cls(
            str(d.get("origin_topic") or ""),
            int(d.get("origin_partition") or 0),
            int(d.get("origin_offset") or 0),
            int(d.get("parks") or 0),
            d.get("first_failure"),
            int(d.get("attempts") or 0),
            int(d.get("replay_count") or 0),
            d.get("last_error"),
        )

    def to_headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers of a parked record (``retry.origin``, ``retry.parks``, ``retry.attempts``,
        ``dlq.replay.count`` and, when known, ``retry.first.failure`` and ``retry.last.error``)."""
        out = [
            ("retry.origin", f"{self.origin_topic}:{self.origin_partition}:{self.origin_offset}".encode()),
            ("retry.parks", str(self.parks).encode()),
            ("retry.attempts", str(self.attempts).encode()),
            ("dlq.replay.count", str(self.replay_count).encode()),
        ]
        if self.first_failure is not None:
            out.append(("retry.first.failure", repr(float(self.first_failure)).encode()))
        if self.last_error:
            out.append(("retry.last.error", self.last_error[:500].encode()))
        return out

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, topic: str, partition: int, offset: int) -> RecordMeta:
        """Meta of a consumed record: a retry record carries its origin; any record may carry a replay count.

        ``topic``/``partition``/``offset``: where the record was consumed (its origin unless the
        headers name one); unreadable numbers in headers count as absent."""
        origin = headers.get("retry.origin")
        if origin and origin.count(":") >= 2:
            o_topic, o_part, o_off = origin.rsplit(":", 2)
            topic, partition, offset = o_topic, int(o_part), int(o_off)
        return cls(
            topic,
            partition,
            offset,
            parks=_header_number(headers, "retry.parks", int) or 0,
            first_failure=_header_number(headers, "retry.first.failure", float),
            attempts=_header_number(headers, "retry.attempts", int) or 0,
            replay_count=_header_number(headers, "dlq.replay.count", int) or 0,
            last_error=headers.get("retry.last.error"),
        )


class InvoiceLedger:
    """The delivery ledger's rules over a :class:`LedgerStore`.

    Invoice entry (key = invoice key ``tenant:doc:id:rN``; a correction's ``tenant:doc:id:rN:cN``)::

        {"state": "pending|delivered|not_billable|failed|parked|queued|superseded|cancelled|held|
                   awaiting_approval|approved|rejected",
         "order_key", "revision", "number", "uncertain": bool, "attempts", "external_id",
         "external_number", "last_error", "error_class", "amendment", "created_at", "updated_at",
         "payload" (parked/queued: the invoice JSON), "meta" (parked/queued: RecordMeta), "due",
         "outcome" (delivered: a PendingOutcome until published), "fingerprint", "total", "currency",
         "origin" (delivered: the content's ``topic:partition:offset``),
         "cancelled_by" / "held_by" (the change that retired it or kept it from being billed),
         "approval" / "rejection" (the operator's decision: id, by, at, reason; ``docs/approval.md``)}

    ``awaiting_approval`` (with its payload and meta, like ``queued``): held until an operator decides;
    ``approved``: approved, about to be delivered (then ``pending`` … ``delivered``, the ``approval``
    kept); ``rejected``: settled, never sent.

    A settled entry is stored compact (:func:`pack_entry`: no payload, meta, ``billing_system``,
    ``delivered_at``; times to the second) and read back whole by :meth:`entry`; entries written whole
    (by earlier versions too) are read as they are.

    Change entry (key = ``tenant:doc:id:rN:reopen|cancel``): ``state`` ``pending`` (a cancellation
    about to call the billing system, written durably first), ``held``, ``cancelled``, ``failed``,
    ``parked`` or ``queued``, with ``action``, ``revision``, ``amendment`` (what the retirement did).

    Work-order entry (key = ``order:tenant:doc:id``, a :class:`WorkOrder`)::

        {"parked": [keys, head first], "delivered": DeliveredRef | null,
         "held": HoldRef (reopened), "cancelled": CancelRef (cancelled), "awaiting": [keys awaiting approval]}

    or, when nothing is queued, held or cancelled and the delivered revision's own entry holds its
    :class:`DeliveredRef`, only a pointer to that entry: its revision ``N`` (``…:rN``) or, for a
    correction, its key's suffix ``rN:cN``.
    """

    STATES = (
        "pending",
        "delivered",
        "not_billable",
        "failed",
        "parked",
        "queued",
        "superseded",
        "cancelled",
        "held",
        "awaiting_approval",
        "approved",
        "rejected",
    )

    def __init__(self, store: LedgerStore):
        self.store = store

    # -------------------------------------------------------------- reading
    def entry(self, key: str) -> LedgerEntry:
        """A copy of the invoice entry at ``key``, whole (empty when there is none)."""
        return unpack_entry(key, self.store.get(key))

    def order(self, order_key: str) -> WorkOrder:
        """A copy of the work-order entry of ``order_key`` (``tenant:doc:id``)."""
        raw = self.store.get(ORDER_PREFIX + order_key) or {}
        if isinstance(raw, int | str) and not isinstance(raw, bool):  # a pointer to the delivered revision
            key = f"{order_key}:r{raw}" if isinstance(raw, int) else f"{order_key}:{raw}"
            return {"parked": [], "delivered": _ref_of(key, self.entry(key))}
        if not isinstance(raw, dict):
            raw = {}
        order: WorkOrder = {"parked": list(raw.get("parked") or []), "delivered": raw.get("delivered")}
        if raw.get("held"):
            order["held"] = dict(raw["held"])  # type: ignore[typeddict-item]  # a HoldRef as written
        if raw.get("cancelled"):
            order["cancelled"] = dict(raw["cancelled"])  # type: ignore[typeddict-item]  # a CancelRef as written
        if raw.get("awaiting"):
            order["awaiting"] = list(raw["awaiting"])
        return order

    def parked(self, order_key: str) -> list[str]:
        """Invoice keys waiting in ``order_key``'s queue, the parked head first."""
        return self.order(order_key)["parked"]

    def is_uncertain(self, key: str) -> bool:
        """True when a create may have landed: a crash after ``pending``, a timeout after sending."""
        entry = self.entry(key)
        if not entry:
            return False
        return bool(entry.get("uncertain", entry.get("state") == "pending"))

    def latest_delivered(self, invoice: Invoice) -> DeliveredRef | None:
        """The newest delivered revision of ``invoice``'s work order other than itself (or None)."""
        delivered = self.order(invoice.order_key)["delivered"]
        if delivered and delivered.get("invoice_key") != invoice.invoice_key:
            return delivered
        if delivered:
            return None
        for rev in range(invoice.revision - 1, 0, -1):  # entries written before work-order entries existed
            key = f"{invoice.order_key}:r{rev}"
            entry = self.entry(key)
            if entry.get("state") == "delivered":
                return {
                    "invoice_key": key,
                    "revision": rev,
                    "external_id": entry.get("external_id"),
                    "external_number": entry.get("external_number"),
                }
        return None

    # -------------------------------------------------------------- writing
    def _put(self, key: str, entry: LedgerEntry) -> None:
        now = _utcnow()
        entry.setdefault("created_at", now)
        entry["updated_at"] = now
        before = entry_state(self.store.get(key))
        self.store.put(key, pack_entry(key, entry))
        if entry.get("state") != before:
            metrics.LEDGER_TRANSITIONS.labels(entry.get("state", "unknown")).inc()

    def _put_order(self, order_key: str, order: WorkOrder, written: Mapping[str, LedgerEntry] | None = None) -> None:
        """Write ``order``; ``written``: invoice entries about to be written (key -> entry), read for the pointer."""
        value: dict[str, Any] = {"parked": order["parked"], "delivered": order["delivered"]}
        for extra in ("held", "cancelled", "awaiting"):
            if order.get(extra):
                value[extra] = order.get(extra)
        pointer = self._pointer(order_key, order, written or {})
        self.store.put(ORDER_PREFIX + order_key, value if pointer is None else pointer)

    def _pointer(self, order_key: str, order: WorkOrder, written: Mapping[str, LedgerEntry]) -> int | str | None:
        """The compact form of ``order`` (see the class docstring), or ``None`` when it must be written whole:
        something is queued, held or cancelled, or the delivered revision's entry would not give back its
        :class:`DeliveredRef` exactly (an entry written before entries kept it)."""
        delivered = order["delivered"]
        if order["parked"] or order.get("held") or order.get("cancelled") or order.get("awaiting") or not delivered:
            return None
        key = str(delivered.get("invoice_key") or "")
        if not key.startswith(order_key + ":"):
            return None
        entry = written.get(key) or self.entry(key)
        if _ref_of(key, entry) != dict(delivered):
            return None
        suffix = key[len(order_key) + 1 :]
        match = _REVISION.fullmatch(suffix)
        return int(match.group(1)) if match else suffix

    def _base(self, invoice: LedgerRecord | NotBillable) -> LedgerEntry:
        entry = self.entry(invoice.invoice_key)
        entry.update({"invoice_key": invoice.invoice_key, "order_key": invoice.order_key})
        if isinstance(invoice, Invoice):
            entry.update(
                {
                    "revision": invoice.revision,
                    "number": invoice.invoice_number,
                    "billing_system": invoice.billing_system,
                }
            )
            if invoice.corrects:
                entry["corrects"] = invoice.corrects
        elif isinstance(invoice, DocumentChange):
            entry.update(
                {"revision": invoice.revision, "action": invoice.action, "billing_system": invoice.billing_system}
            )
        return entry

    async def begin_attempt(self, invoice: LedgerRecord) -> None:
        """``pending`` + ``uncertain`` written **durably** before the billing system is called."""
        entry = self.entry(invoice.invoice_key)
        if entry.get("state") == "pending" and entry.get("uncertain"):
            return  # already durable (written by an earlier attempt or recovered from the changelog)
        entry = self._base(invoice)
        entry.update({"state": "pending", "uncertain": True})
        await self._put_durably(invoice.invoice_key, entry)

    async def _put_durably(self, key: str, entry: LedgerEntry) -> None:
        """Write ``entry`` at ``key`` (its times set, its transition counted) and wait until it is durable."""
        now = _utcnow()
        entry.setdefault("created_at", now)
        entry["updated_at"] = now
        if self.entry(key).get("state") != entry["state"]:
            metrics.LEDGER_TRANSITIONS.labels(entry["state"]).inc()
        await self.store.put_durable(key, pack_entry(key, entry))

    def settle(self, invoice: LedgerRecord, attempts: int, error: ConnectorError) -> None:
        """The last call answered definitively (nothing stored): no lookup needed next time."""
        entry = self._base(invoice)
        entry.update(
            {"uncertain": False, "attempts": attempts, "last_error": str(error)[:500], "error_class": error.error_class}
        )
        self._put(invoice.invoice_key, entry)

    def note_attempts(self, invoice: LedgerRecord, attempts: int, error: BaseException | None = None) -> None:
        """Record the number of calls made so far (and the last error's text, at most 500 characters)."""
        entry = self._base(invoice)
        entry["attempts"] = attempts
        if error is not None:
            entry["last_error"] = str(error)[:500]
        self._put(invoice.invoice_key, entry)

    def unqueue(
        self, invoice: LedgerRecord, *, delivered: DeliveredRef | None = None, entry: LedgerEntry | None = None
    ) -> None:
        """Take ``invoice`` out of its work order's queue; ``delivered``: it is now the delivered
        revision (unless a newer one is), ``entry`` its invoice entry about to be written."""
        order = self.order(invoice.order_key)
        if invoice.invoice_key in order["parked"]:
            order["parked"].remove(invoice.invoice_key)
        if delivered is not None:
            current = order["delivered"]
            if current is None or int(current.get("revision", 0)) <= int(delivered["revision"]):
                order["delivered"] = delivered
        self._put_order(invoice.order_key, order, {invoice.invoice_key: entry} if entry is not None else None)

    def drop_queued(self, order_key: str, key: str) -> None:
        """Remove invoice key ``key`` from ``order_key``'s queue (its entry is left as it is)."""
        order = self.order(order_key)
        order["parked"] = [k for k in order["parked"] if k != key]
        self._put_order(order_key, order)

    def _delivered_entry(
        self,
        invoice: Invoice,
        result: DeliveryResult,
        attempts: int,
        *,
        reconciled: bool,
        amendment: Amendment | None,
        outcome: PendingOutcome | None,
        origin: str | None = None,
    ) -> LedgerEntry:
        """The ``delivered`` entry of ``invoice``; writes the work-order and replaced-revision entries.
        ``origin``: ``topic:partition:offset`` of the record whose content was delivered."""
        entry = self._base(invoice)
        for k in ("payload", "meta", "due"):
            entry.pop(k, None)
        entry.update(
            {
                "state": "delivered",
                "uncertain": False,
                "external_id": result.external_id,
                "external_number": result.external_number,
                "attempts": attempts,
                "reconciled": reconciled,
                "delivered_at": _utcnow(),
                "fingerprint": invoice.fingerprint,
                "total": str(invoice.total),
                "currency": invoice.currency,
                "origin": origin,
            }
        )
        if amendment:
            entry["amendment"] = amendment
        if outcome is not None:
            entry["outcome"] = outcome
        self.unqueue(invoice, delivered=_ref_of(invoice.invoice_key, entry), entry=entry)
        if amendment and amendment.get("previous_invoice_key"):
            prev_key = str(amendment["previous_invoice_key"])
            prev = self.entry(prev_key)
            if prev:
                prev.update({"superseded_by": invoice.invoice_key, "amended": amendment.get("action")})
                self._put(prev_key, prev)
        return entry

    def delivered(
        self,
        invoice: Invoice,
        result: DeliveryResult,
        attempts: int,
        *,
        reconciled: bool = False,
        amendment: Amendment | None = None,
        outcome: PendingOutcome | None = None,
        origin: str | None = None,
    ) -> LedgerEntry:
        """Mark ``invoice`` delivered (not waiting for the changelog); returns the entry."""
        entry = self._delivered_entry(
            invoice, result, attempts, reconciled=reconciled, amendment=amendment, outcome=outcome, origin=origin
        )
        self._put(invoice.invoice_key, entry)
        return entry

    async def delivered_durably(
        self,
        invoice: Invoice,
        result: DeliveryResult,
        attempts: int,
        *,
        reconciled: bool = False,
        amendment: Amendment | None = None,
        outcome: PendingOutcome | None = None,
        origin: str | None = None,
    ) -> LedgerEntry:
        """Like :meth:`delivered`, and wait until the broker acknowledged the entry's changelog record.

        ``outcome`` (the outcome record still to publish, see ``docs/delivery.md``) is kept in the
        entry, so that after a crash the outcome is published exactly once; ``origin``: as for
        :meth:`delivered`."""
        entry = self._delivered_entry(
            invoice, result, attempts, reconciled=reconciled, amendment=amendment, outcome=outcome, origin=origin
        )
        entry.setdefault("created_at", _utcnow())
        entry["updated_at"] = _utcnow()
        if self.entry(invoice.invoice_key).get("state") != "delivered":
            metrics.LEDGER_TRANSITIONS.labels("delivered").inc()
        await self.store.put_durable(invoice.invoice_key, pack_entry(invoice.invoice_key, entry))
        return entry

    def outcome_published(self, key: str) -> None:
        """The outcome kept in ``key``'s entry is on ``billing.deliveries``: forget its copy."""
        entry = self.entry(key)
        pending = entry.get("outcome")
        if isinstance(pending, dict) and not pending.get("published"):
            entry["outcome"] = {"published": True, "source": pending.get("source")}
            self._put(key, entry)

    def _settled(self, record: LedgerRecord, state: str, **fields: Any) -> None:
        """Give ``record`` its final ``state`` (and ``fields``) and take it out of its queue. An entry that is
        ``delivered`` or ``cancelled`` keeps that state: what is billed (or retired) stays recorded whatever a
        later record of the same key comes to (a rejected correction, a late duplicate)."""
        entry = self._base(record)
        for k in ("payload", "meta", "due"):
            entry.pop(k, None)
        if entry.get("state") not in ("delivered", "cancelled"):
            entry["state"] = state
        entry.update(fields)
        self._put(record.invoice_key, entry)
        self.unqueue(record)

    def failed(self, invoice: LedgerRecord, error_class: str, error: BaseException, attempts: int) -> None:
        """Dead-lettered: ``failed`` with the error (its text at most 500 characters); leaves the queue.
        A dead-lettered cancellation leaves its document's ``cancelled`` record ``failed``."""
        self._settled(invoice, "failed", error_class=error_class, last_error=str(error)[:500], attempts=attempts)
        if isinstance(invoice, DocumentChange) and invoice.action == "cancel":
            order = self.order(invoice.order_key)
            cancelled = order.get("cancelled")
            if cancelled is not None and cancelled["change_key"] == invoice.change_key:
                cancelled["state"] = "failed"
                self._put_order(invoice.order_key, order)

    def superseded(self, invoice: Invoice, by: DeliveredRef) -> None:
        """A newer revision (``by``) is already billed: ``superseded``; leaves the queue."""
        self._settled(invoice, "superseded", superseded_by=by.get("invoice_key"))

    def withheld(self, invoice: Invoice, state: str, by: str) -> None:
        """Not billed because its document was cancelled (``state="cancelled"``) or reopened (``"held"``) by
        change ``by``; leaves the queue."""
        self._settled(invoice, state, **{f"{state}_by": by})

    # -------------------------------------------------------------- lifecycle changes
    def _drop_queued(self, order: WorkOrder, keep: Callable[[LedgerEntry], bool]) -> list[LedgerEntry]:
        """Take the invoice entries of ``order``'s queue and of its versions awaiting approval that ``keep``
        refuses out of them (change entries stay); returns their entries as they were."""
        dropped: list[LedgerEntry] = []

        def kept(keys: list[str]) -> list[str]:
            out: list[str] = []
            for key in keys:
                entry = self.entry(key)
                if "action" not in entry and not keep(entry):
                    dropped.append(entry)
                else:
                    out.append(key)
            return out

        order["parked"] = kept(order["parked"])
        if order.get("awaiting"):
            order["awaiting"] = kept(order.get("awaiting") or [])
        return dropped

    def hold(self, change: DocumentChange) -> list[LedgerEntry]:
        """Work order reopened at ``change.revision``: revisions up to it are not billed from now on.

        Records the hold (the highest reopened revision wins), marks the change ``held`` and takes the
        queued or parked revisions up to it out of the queue (``held``, ``held_by``); returns their
        entries as they were, for their outcomes."""
        order = self.order(change.order_key)
        held = order.get("held")
        revision = max(change.revision, held["revision"] if held else 0)
        order["held"] = {"revision": revision, "change_key": change.change_key}
        dropped = self._drop_queued(order, lambda entry: int(entry.get("revision") or 0) > revision)
        self._put_order(change.order_key, order)
        for entry in dropped:
            self._put(str(entry["invoice_key"]), {**entry, "state": "held", "held_by": change.change_key})
        self._settled(change, "held")
        return dropped

    def withdraw(self, change: DocumentChange) -> tuple[CancelRef, list[LedgerEntry]]:
        """Document cancelled: record it (``pending`` until the billed document is retired) and take every
        queued or parked revision out of the queue (``cancelled``, ``cancelled_by``).

        The cancelled revision is the highest of the change's, the billed one's and the dropped ones'
        (a cancellation cancels what was completed before it). Returns the document's
        :class:`CancelRef` and the dropped entries as they were. Called again (a retried cancellation)
        it drops nothing more and keeps the record."""
        order = self.order(change.order_key)
        dropped = self._drop_queued(order, lambda _entry: False)
        billed = order["delivered"]
        revisions = [change.revision, *(int(e.get("revision") or 0) for e in dropped)]
        if billed is not None:
            revisions.append(int(billed["revision"]))
        current = order.get("cancelled")
        if current is None or current["change_key"] != change.change_key:
            current = {"revision": 0, "change_key": change.change_key, "state": "pending", "billed": billed}
        current["revision"] = max(current["revision"], *revisions)
        if current["state"] == "failed":
            current["state"] = "pending"  # a replay of a dead-lettered cancellation tries again
        order["cancelled"] = current
        self._put_order(change.order_key, order)
        for entry in dropped:
            self._put(str(entry["invoice_key"]), {**entry, "state": "cancelled", "cancelled_by": change.change_key})
        return current, dropped

    def cancelled(self, change: DocumentChange, amendment: Amendment | None) -> CancelRef:
        """The cancellation is done: ``amendment`` says how the billed document was retired (``None``: none was
        billed). The change and the retired invoice's entry become ``cancelled``; the work order bills nothing
        (``delivered`` is cleared, so a later revision is created, not amended). Returns the record."""
        order = self.order(change.order_key)
        current: CancelRef = order.get("cancelled") or {
            "revision": change.revision,
            "change_key": change.change_key,
            "state": "pending",
        }
        billed = current.get("billed", order["delivered"])
        current["state"] = "done"
        current["retired"] = billed
        current["action"] = amendment["action"] if amendment else None
        current["credit_note_number"] = amendment["credit_note_number"] if amendment else None
        order["cancelled"] = current
        delivered = order["delivered"]
        if billed is not None and delivered is not None and delivered["invoice_key"] == billed["invoice_key"]:
            order["delivered"] = None
        self._put_order(change.order_key, order)
        if billed is not None:
            retired = self.entry(billed["invoice_key"])
            if retired:
                retired.update({"state": "cancelled", "cancelled_by": change.change_key, "amendment": amendment})
                self._put(billed["invoice_key"], retired)
        self._settled(change, "cancelled", amendment=amendment)
        return order["cancelled"]

    # -------------------------------------------------------------- approval (docs/approval.md)
    async def await_approval(self, invoice: Invoice, payload: bytes, meta: RecordMeta) -> list[LedgerEntry]:
        """Hold ``invoice`` for an operator's approval: ``awaiting_approval`` with its payload and meta, written
        **durably** (its outcome, which the operator acts on, is published after it), and listed in its work
        order's ``awaiting``. The document's other versions awaiting approval with a lower revision are
        settled ``superseded`` (never sent); returns their entries as they were, for their outcomes. Called
        again for the same record (a replay) it changes nothing but the times."""
        order = self.order(invoice.order_key)
        superseded: list[LedgerEntry] = []
        kept: list[str] = []
        for key in order.get("awaiting") or []:
            other = self.entry(key)
            if key != invoice.invoice_key and int(other.get("revision") or 0) < invoice.revision:
                superseded.append(other)
            elif key != invoice.invoice_key:
                kept.append(key)
        order["awaiting"] = [*kept, invoice.invoice_key]
        if invoice.invoice_key in order["parked"]:
            order["parked"].remove(invoice.invoice_key)
        self._put_order(invoice.order_key, order)
        for other in superseded:
            settled = {k: v for k, v in other.items() if k not in ("payload", "meta")}
            self._put(
                str(other["invoice_key"]), {**settled, "state": "superseded", "superseded_by": invoice.invoice_key}
            )
        entry = self._base(invoice)
        entry.update({"state": "awaiting_approval", "uncertain": False, "payload": payload.decode("utf-8")})
        entry["meta"] = meta.to_dict()
        await self._put_durably(invoice.invoice_key, entry)
        return superseded

    def _no_longer_awaiting(self, entry: LedgerEntry) -> None:
        """Take ``entry``'s key out of its work order's ``awaiting``."""
        order_key = str(entry.get("order_key") or "")
        order = self.order(order_key)
        if entry["invoice_key"] in (order.get("awaiting") or []):
            order["awaiting"] = [k for k in order.get("awaiting") or [] if k != entry["invoice_key"]]
            self._put_order(order_key, order)

    def approve(self, key: str, approval: Mapping[str, Any]) -> LedgerEntry | None:
        """An operator approved invoice version ``key`` (``approval``: the decision's ``id``, ``by``, ``at``,
        ``reason``). ``awaiting_approval`` becomes ``approved`` (payload kept, ``approval`` recorded, out of
        ``awaiting``). Returns the entry to deliver from its payload: this one, or one approved before whose
        delivery is not finished (``approved`` or ``pending``: a decision consumed again after a crash);
        ``None`` when there is nothing to deliver (unknown, delivered, superseded, rejected, ...)."""
        entry = self.entry(key)
        state = entry.get("state")
        if state == "awaiting_approval":
            entry.update({"state": "approved", "approval": dict(approval)})
            self._put(key, entry)
            self._no_longer_awaiting(entry)
            return entry
        if state in ("approved", "pending") and entry.get("approval") and entry.get("payload"):
            return entry
        return None

    def reject(self, key: str, rejection: Mapping[str, Any]) -> LedgerEntry | None:
        """An operator rejected invoice version ``key``: ``awaiting_approval`` becomes ``rejected`` (settled,
        never sent; ``rejection`` recorded, out of ``awaiting``). Returns the entry, also when this very
        decision (same ``id``) rejected it before (consumed again after a crash: its outcome is repeated);
        ``None`` when it does not await approval."""
        entry = self.entry(key)
        if entry.get("state") == "rejected":
            done = entry.get("rejection")
            return entry if isinstance(done, dict) and done.get("id") == rejection.get("id") else None
        if entry.get("state") != "awaiting_approval":
            return None
        for k in ("payload", "meta", "due"):
            entry.pop(k, None)
        entry.update({"state": "rejected", "rejection": dict(rejection)})
        self._put(key, entry)
        self._no_longer_awaiting(entry)
        return entry

    def parked_at(
        self, invoice: LedgerRecord, payload: bytes, meta: RecordMeta, *, due: float, reason: str, level: int
    ) -> str | None:
        """Parked on a retry topic; it heads its work order's queue (later revisions wait behind it).

        ``payload``: the invoice record (UTF-8 JSON); ``due``: epoch seconds; ``level``: retry topic number.
        Returns the outcome to report (``parked``, or ``needs_reauth`` for that reason) when the entry has not
        reported it since it was last parked otherwise or retried on request (``park_reported``), else ``None``:
        one outcome per change, not one per retry."""
        entry = self._base(invoice)
        kind = "needs_reauth" if reason == "needs_reauth" else "parked"
        report = kind if entry.get("park_reported") != kind else None
        entry.update(
            {
                "state": "parked",
                "payload": payload.decode("utf-8"),
                "meta": meta.to_dict(),
                "due": due,
                "park_reason": reason,
                "park_level": level,
                "park_reported": kind,
                "attempts": meta.attempts,
            }
        )
        self._put(invoice.invoice_key, entry)
        order = self.order(invoice.order_key)
        if invoice.invoice_key not in order["parked"]:
            order["parked"].append(invoice.invoice_key)
        self._put_order(invoice.order_key, order)
        return report

    def retry_now(self, key: str, request_id: str) -> LedgerEntry | None:
        """An operator asked to try invoice version ``key`` now (request ``request_id``). Returns its entry when
        it is ``parked`` at the head of its work order's queue and this request was not taken before (a
        request consumed again after a crash is not attempted twice); records the request and forgets the
        reported parking, so that parking it again reports it anew. ``None``: nothing to do."""
        entry = self.entry(key)
        if entry.get("state") != "parked" or not entry.get("payload") or entry.get("retry_request") == request_id:
            return None
        parked = self.parked(str(entry.get("order_key") or ""))
        if not parked or parked[0] != key:
            return None
        entry["retry_request"] = request_id
        entry.pop("park_reported", None)
        self._put(key, entry)
        return entry

    def queue_behind(self, invoice: LedgerRecord, payload: bytes, meta: RecordMeta) -> None:
        """An earlier revision of the work order is parked: wait behind it (kept here, with the payload)."""
        entry = self._base(invoice)
        entry.update({"state": "queued", "payload": payload.decode("utf-8"), "meta": meta.to_dict()})
        self._put(invoice.invoice_key, entry)
        order = self.order(invoice.order_key)
        if invoice.invoice_key not in order["parked"]:
            order["parked"].append(invoice.invoice_key)
        self._put_order(invoice.order_key, order)

    def not_billable(self, record: NotBillable) -> None:
        """Priced as not billable: ``not_billable`` with its reason."""
        entry = self._base(record)
        entry.update({"state": "not_billable", "reason": record.reason})
        self._put(record.invoice_key, entry)
