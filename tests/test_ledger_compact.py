"""The compact ledger (issue 15 item 7): what a settled entry keeps and drops, old whole entries still
read, and a bound on a settled entry's stored size."""

from __future__ import annotations

import asyncio
import json

from broker.delivery import DictLedgerStore, InvoiceLedger, PendingOutcome, RecordMeta, pack_entry, unpack_entry
from broker.delivery.ledger import entry_state
from connectors.sdk.interface import DeliveryResult
from connectors.sdk.invoice import Invoice
from tests.test_xero_connector import make_invoice

KEY = "acme:wo:ACME-WO-1:r1"
ORDER = "acme:wo:ACME-WO-1"
EXTERNAL_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
META = RecordMeta("billing.invoices", 2, 41)


def _invoice(revision: int = 1) -> Invoice:
    inv = make_invoice("ACME-WO-1-R1", key=KEY).model_copy(
        update={"order_key": ORDER, "fingerprint": "sha256:" + "cd" * 32}
    )
    if revision == 1:
        return inv
    return inv.model_copy(
        update={"invoice_key": f"{ORDER}:r{revision}", "invoice_number": f"ACME-WO-1-R{revision}", "revision": revision}
    )


def _deliver(ledger: InvoiceLedger, inv: Invoice, external_id: str = EXTERNAL_ID, *, publish: bool = True) -> None:
    """As the deliver stage does: pending durably, delivered with the outcome to publish, then published."""
    outcome: PendingOutcome = {
        "published": False,
        "partition": 1,
        "scan_from": 9,
        "value": json.dumps({"invoice_key": inv.invoice_key, "outcome": "created", "notes": "x" * 300}),
        "source": META.origin,
    }
    result = DeliveryResult(inv.invoice_key, external_id, inv.invoice_number, True)

    async def go() -> None:
        await ledger.begin_attempt(inv)
        await ledger.delivered_durably(inv, result, 1, outcome=outcome, origin=META.origin)

    asyncio.run(go())
    if publish:
        ledger.outcome_published(inv.invoice_key)


def test_a_delivered_entry_keeps_what_later_steps_read_and_drops_the_rest() -> None:
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    inv = _invoice()
    _deliver(ledger, inv)
    stored = store.data[KEY]
    assert isinstance(stored, str)  # compact text
    entry = ledger.entry(KEY)
    times = {k: entry.pop(k) for k in ("created_at", "updated_at")}
    assert all(t.endswith("+00:00") for t in times.values())
    assert entry == {
        "invoice_key": KEY,
        "order_key": ORDER,
        "revision": 1,
        "number": "ACME-WO-1-R1",
        "state": "delivered",
        "uncertain": False,
        "reconciled": False,
        "external_id": EXTERNAL_ID,
        "external_number": "ACME-WO-1-R1",
        "fingerprint": inv.fingerprint,
        "total": str(inv.total),
        "currency": inv.currency,
        "origin": "billing.invoices:2:41",
        "outcome": {"published": True, "source": "billing.invoices:2:41"},
        "attempts": 1,
    }
    # dropped: the outcome record (published), billing system, delivery time
    for gone in ("payload", "meta", "due", "billing_system", "delivered_at", "value"):
        assert gone not in stored
    # the work-order entry only points at the revision; read back whole
    assert store.data["order:" + ORDER] == 1
    assert ledger.order(ORDER) == {
        "parked": [],
        "delivered": {
            "invoice_key": KEY,
            "revision": 1,
            "external_id": EXTERNAL_ID,
            "external_number": "ACME-WO-1-R1",
            "fingerprint": inv.fingerprint,
            "total": str(inv.total),
            "currency": inv.currency,
            "source": "billing.invoices:2:41",
            "corrects": None,
            "correction": 0,
        },
    }
    assert entry_state(stored) == "delivered"


def test_an_unpublished_outcome_and_a_parked_payload_are_kept_whole() -> None:
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    inv = _invoice()
    _deliver(ledger, inv, publish=False)
    stored = store.data[KEY]
    assert isinstance(stored, dict) and stored["outcome"]["published"] is False and "value" in stored["outcome"]
    r2 = _invoice(2)
    ledger.parked_at(r2, b'{"x":1}', META, due=1.0, reason="retryable", level=1)
    parked = store.data[r2.invoice_key]
    assert isinstance(parked, dict) and parked["payload"] == '{"x":1}' and parked["meta"]["origin_offset"] == 41
    assert isinstance(store.data["order:" + ORDER], dict)  # a queue: whole


def test_a_failed_entry_keeps_its_error_and_drops_the_payload() -> None:
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    inv = _invoice()
    ledger.parked_at(inv, b'{"x":1}', META, due=1.0, reason="retryable", level=1)
    ledger.failed(inv, "permanent", ValueError("400 bad contact"), 3)
    stored = store.data[KEY]
    assert isinstance(stored, str) and "payload" not in stored and "park_reason" not in stored
    entry = ledger.entry(KEY)
    assert (entry["state"], entry["error_class"], entry["last_error"], entry["attempts"]) == (
        "failed",
        "permanent",
        "400 bad contact",
        3,
    )
    assert "payload" not in entry and "meta" not in entry and entry["uncertain"] is False


def test_an_amendment_reads_the_previous_revision_from_the_compact_ledger() -> None:
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    r1 = _invoice()
    _deliver(ledger, r1)
    previous = ledger.latest_delivered(_invoice(2))
    assert previous is not None
    assert (previous["external_id"], previous["external_number"], previous["total"], previous["fingerprint"]) == (
        EXTERNAL_ID,
        "ACME-WO-1-R1",
        str(r1.total),
        r1.fingerprint,
    )
    amendment = {
        "previous_invoice_key": KEY,
        "previous_number": "ACME-WO-1-R1",
        "action": "voided",
        "credit_note_number": None,
        "credit_note_id": None,
    }
    r2 = _invoice(2)
    result = DeliveryResult(r2.invoice_key, "id-r2", r2.invoice_number, True)
    ledger.delivered(r2, result, 1, amendment=amendment, origin="billing.invoices:2:50")  # type: ignore[arg-type]
    assert store.data["order:" + ORDER] == 2
    old = ledger.entry(KEY)
    assert (old["state"], old["superseded_by"], old["amended"], old["external_id"]) == (
        "delivered",
        r2.invoice_key,
        "voided",
        EXTERNAL_ID,
    )
    assert ledger.entry(r2.invoice_key)["amendment"] == amendment


def test_an_old_whole_entry_and_work_order_are_still_read() -> None:
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    old_entry = {
        "invoice_key": KEY,
        "order_key": ORDER,
        "revision": 1,
        "number": "ACME-WO-1-R1",
        "billing_system": "xero",
        "state": "delivered",
        "uncertain": False,
        "created_at": "2026-03-01T10:00:00.123456+00:00",
        "updated_at": "2026-03-01T10:00:01.654321+00:00",
        "external_id": EXTERNAL_ID,
        "external_number": "ACME-WO-1-R1",
        "attempts": 1,
        "reconciled": False,
        "delivered_at": "2026-03-01T10:00:01.600000+00:00",
        "fingerprint": "sha256:" + "ab" * 32,
        "outcome": {"published": True, "source": "billing.invoices:0:7"},
    }
    old_order = {
        "parked": [],
        "delivered": {"invoice_key": KEY, "revision": 1, "external_id": EXTERNAL_ID, "external_number": "ACME-WO-1-R1"},
    }
    store.data[KEY] = json.loads(json.dumps(old_entry))
    store.data["order:" + ORDER] = json.loads(json.dumps(old_order))
    assert ledger.entry(KEY) == old_entry
    assert ledger.order(ORDER) == old_order
    assert ledger.latest_delivered(_invoice(2)) == old_order["delivered"]
    # rewritten by this version (a later write): compact, the same fields back (times to the second)
    ledger.note_attempts(_invoice(), 1)
    assert isinstance(store.data[KEY], str)
    again = ledger.entry(KEY)
    assert again["created_at"] == "2026-03-01T10:00:00+00:00"
    for field in ("state", "external_id", "external_number", "number", "fingerprint", "outcome", "attempts"):
        assert again[field] == old_entry[field], field
    # the work order's ref lacks what the entry would give back: it stays whole
    ledger.unqueue(_invoice())
    assert store.data["order:" + ORDER] == old_order


def test_pack_and_unpack_are_lossless_for_odd_values() -> None:
    entry = {
        "state": "delivered",
        "external_id": "~not-a-uuid",
        "external_number": "INV:7",
        "number": "ACME-WO-1-R1",
        "fingerprint": "md5:abc",
        "origin": None,
        "outcome": {"published": True, "source": "billing.invoices.retry.1:0:3"},
        "reconciled": True,
        "attempts": 2,
        "amendment": None,
        "created_at": "not a time",
        "updated_at": "2026-03-01T10:00:00+00:00",
    }
    packed = pack_entry(KEY, entry)
    assert isinstance(packed, str)
    back = unpack_entry(KEY, json.loads(json.dumps(packed)))
    for field, value in entry.items():
        if field != "origin":
            assert back[field] == value, field
    upper = {"state": "delivered", "external_id": EXTERNAL_ID.upper()}
    assert unpack_entry(KEY, pack_entry(KEY, upper))["external_id"] == EXTERNAL_ID.upper()


def test_a_settled_entry_is_small() -> None:
    """A delivered invoice's stored entries (its own and its work order's) stay within a fixed bound."""
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    _deliver(ledger, _invoice())
    stored = store.data[KEY]
    size = len(json.dumps(KEY)) + len(json.dumps(stored))
    size += len(json.dumps("order:" + ORDER)) + len(json.dumps(store.data["order:" + ORDER]))
    assert size < 250, size
    whole = len(json.dumps(ledger.entry(KEY))) + len(json.dumps(ledger.order(ORDER)))
    assert size * 4 < whole
