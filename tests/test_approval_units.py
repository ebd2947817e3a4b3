"""Approval ``required`` without Kafka: the Deliverer's decisions and the ledger's transitions
(``awaiting_approval`` -> ``approved`` -> delivered, ``rejected``, superseded, cancelled, reopened, replays),
and the decision records of ``billing.approvals`` (broker/approvals.py, docs/approval.md)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from broker.approvals import APPROVED, REJECTED, ApprovalDecision, decision_event, order_key_of
from broker.delivery import (
    Cancelled,
    Corrected,
    Delivered,
    DictLedgerStore,
    Held,
    InvoiceLedger,
    Unapproved,
    apply_change,
    pack_entry,
)
from tests.test_delivery_units import run
from tests.test_lifecycle_units import (
    META,
    ORDER,
    LifecycleConnector,
    at,
    cancel_change,
    delivered,
    deliverer_with,
    rev,
)

APPROVAL = {"id": "dec-1", "by": "bob", "at": "2026-03-02T10:00:00+00:00", "reason": None}


def required(conn):
    """A deliverer whose clients all need approval."""
    d = deliverer_with(conn)
    d.approval = lambda invoice: "required"  # type: ignore[method-assign]
    return d


def held(ledger: InvoiceLedger, d, inv, meta=META):
    """Process ``inv`` and hold it as the deliver stage does; returns the older versions it superseded."""
    out = run(d.process(inv, ledger, meta))
    assert isinstance(out, Unapproved) and out.kind == "awaiting_approval", out
    return run(ledger.await_approval(inv, inv.model_dump_json().encode(), meta))


def held_r1(script=()):
    """Revision 1 of ACME-WO-1 held for approval: (store, ledger, connector, deliverer, r1)."""
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    conn = LifecycleConnector(list(script), ledger)
    d = required(conn)
    r1 = rev(1)
    assert held(ledger, d, r1) == []
    return store, ledger, conn, d, r1


def test_a_required_invoice_is_held_durably_with_its_payload_and_nothing_is_called():
    store, ledger, conn, d, r1 = held_r1()
    entry = ledger.entry(r1.invoice_key)
    assert entry["state"] == "awaiting_approval" and json.loads(entry["payload"])["invoice_key"] == r1.invoice_key
    assert entry["meta"]["origin_offset"] == 10
    assert ledger.order(ORDER)["awaiting"] == [r1.invoice_key]
    assert store.flushes == 1 and conn.calls == []
    assert held(ledger, d, r1) == []  # the same record consumed again: still held, once
    assert ledger.order(ORDER)["awaiting"] == [r1.invoice_key]
    assert not isinstance(store.data[f"order:{ORDER}"], int)  # a work order awaiting approval is written whole
    assert isinstance(store.data[r1.invoice_key], dict)  # not settled: kept whole, payload and all


def test_an_approval_delivers_once_and_is_kept_with_the_delivered_entry():
    store, ledger, conn, d, r1 = held_r1(["ok"])
    entry = ledger.approve(r1.invoice_key, APPROVAL)
    assert entry is not None and entry["state"] == "approved" and entry["payload"]
    assert ledger.order(ORDER).get("awaiting", []) == []
    assert ledger.approve(r1.invoice_key, APPROVAL) is not None  # consumed again before the delivery finished
    out = run(d.process(r1, ledger, META))
    assert isinstance(out, Delivered)
    assert conn.calls == [("deliver", "ACME-WO-1-R1", "pending", True)]  # pending, durably, before the call
    ledger.delivered(r1, out.result, 1, origin=META.origin)
    settled = ledger.entry(r1.invoice_key)
    assert settled["state"] == "delivered" and settled["approval"] == APPROVAL and "payload" not in settled
    assert isinstance(store.data[r1.invoice_key], str)  # compact, the approval in its extras
    assert ledger.approve(r1.invoice_key, {**APPROVAL, "id": "dec-2"}) is None  # a second approval: nothing
    assert ledger.reject(r1.invoice_key, {**APPROVAL, "id": "dec-3"}) is None


def test_an_approval_replayed_after_a_crash_during_the_call_continues_the_same_delivery():
    _, ledger, _, _, r1 = held_r1()
    ledger.approve(r1.invoice_key, APPROVAL)
    run(ledger.begin_attempt(r1))  # then the worker died: the changelog holds pending, uncertain
    again = ledger.approve(r1.invoice_key, APPROVAL)
    assert again is not None and again["state"] == "pending" and again["uncertain"] is True and again["payload"]


def test_a_rejection_settles_it_and_it_is_never_sent():
    store, ledger, conn, d, r1 = held_r1()
    rejection = {**APPROVAL, "reason": "wrong client"}
    entry = ledger.reject(r1.invoice_key, rejection)
    assert entry is not None and entry["state"] == "rejected" and "payload" not in entry
    assert isinstance(store.data[r1.invoice_key], str) and store.data[r1.invoice_key].startswith('["r"')
    assert ledger.entry(r1.invoice_key)["rejection"] == rejection
    assert ledger.reject(r1.invoice_key, rejection) is not None  # the same decision again: its outcome repeats
    assert ledger.reject(r1.invoice_key, {**rejection, "id": "dec-9"}) is None
    assert ledger.approve(r1.invoice_key, {**APPROVAL, "id": "dec-9"}) is None  # too late
    out = run(d.process(r1, ledger, at(30)))  # the platform sends it again
    assert isinstance(out, Unapproved) and out.kind == "rejected"
    assert conn.calls == [] and ledger.order(ORDER).get("awaiting", []) == []


def test_a_new_revision_supersedes_the_one_awaiting_approval():
    _, ledger, conn, d, r1 = held_r1(["ok"])
    r2 = rev(2, total="123.00", tax="23.00", net="100.00")
    [older] = held(ledger, d, r2, at(11))
    assert older["invoice_key"] == r1.invoice_key and older["state"] == "awaiting_approval"
    assert ledger.entry(r1.invoice_key)["state"] == "superseded"
    assert ledger.entry(r1.invoice_key)["superseded_by"] == r2.invoice_key
    assert ledger.order(ORDER)["awaiting"] == [r2.invoice_key]
    assert ledger.approve(r1.invoice_key, APPROVAL) is None  # the old one is never sent
    assert ledger.approve(r2.invoice_key, APPROVAL) is not None
    assert isinstance(run(d.process(r2, ledger, at(11))), Delivered)
    assert conn.calls == [("deliver", "ACME-WO-1-R2", "pending", True)]


def test_a_cancellation_drops_the_version_awaiting_approval_and_a_reopening_holds_it():
    _, ledger, conn, d, _ = held_r1()
    out = run(apply_change(d, cancel_change(1), ledger, META))
    assert isinstance(out, Cancelled) and [e["invoice_key"] for e in out.dropped] == [f"{ORDER}:r1"]
    assert ledger.entry(f"{ORDER}:r1")["state"] == "cancelled" and conn.calls == []
    assert ledger.approve(f"{ORDER}:r1", APPROVAL) is None

    _, other, _, d2, _ = held_r1()
    held(other, d2, rev(3, total="1.23", tax="0.23", net="1.00"), at(11))  # supersedes r1
    reopened = run(apply_change(d2, cancel_change(2, "reopen"), other, META))
    assert isinstance(reopened, Held) and reopened.dropped == []  # r3 is above the reopened revision
    assert other.order(ORDER)["awaiting"] == [f"{ORDER}:r3"]


def test_a_correction_of_an_approved_invoice_waits_for_approval_too():
    _, ledger, conn, d, r1 = held_r1(["ok"])
    ledger.approve(r1.invoice_key, APPROVAL)
    out = run(d.process(r1, ledger, META))
    delivered(ledger, r1, out.result.external_id)
    fixed = rev(1, total="123.00", tax="23.00", net="100.00")
    corrected = run(d.process(fixed, ledger, at(20)))
    assert isinstance(corrected, Corrected) and isinstance(corrected.outcome, Unapproved)
    assert corrected.invoice.invoice_key == f"{ORDER}:r1:c1" and len(conn.calls) == 1


def test_without_approval_required_nothing_changes():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = LifecycleConnector(["ok"], ledger)
    d = deliverer_with(conn)  # no configuration: approval none
    assert d.approval(rev(1)) == "none"
    assert isinstance(run(d.process(rev(1), ledger, META)), Delivered)


def test_settled_rejected_entries_pack_and_unpack():
    entry = {
        "invoice_key": f"{ORDER}:r1",
        "order_key": ORDER,
        "revision": 1,
        "state": "rejected",
        "rejection": APPROVAL,
        "created_at": "2026-03-02T10:00:00+00:00",
        "updated_at": "2026-03-02T10:00:05+00:00",
    }
    packed = pack_entry(f"{ORDER}:r1", entry)
    assert isinstance(packed, str)
    assert InvoiceLedger(DictLedgerStore()).entry(f"{ORDER}:r1") == {}
    store = DictLedgerStore()
    store.data[f"{ORDER}:r1"] = packed
    back = InvoiceLedger(store).entry(f"{ORDER}:r1")
    assert back["state"] == "rejected" and back["rejection"] == APPROVAL


# =========================================================================== billing.approvals records
def test_decision_records_are_cloudevents_keyed_by_the_order_key():
    decision = decision_event(True, "acme-fm:wo:1001:r2", "bob", "looks right")
    assert decision.type == APPROVED and decision.approved and decision.tenant == "acme-fm"
    assert decision.order_key == "acme-fm:wo:1001" and decision.invoice_key == "acme-fm:wo:1001:r2"
    raw = json.loads(decision.model_dump_json(exclude_none=True))
    assert raw["specversion"] == "1.0" and raw["source"] == "/broker/console"
    assert raw["data"] == {"invoice_key": "acme-fm:wo:1001:r2", "operator": "bob", "reason": "looks right"}
    assert ApprovalDecision.model_validate(raw) == decision
    assert decision_event(False, "acme-fm:wo:1001:r2", "bob").type == REJECTED
    assert order_key_of("acme-fm:sj:a:b:r10") == "acme-fm:sj:a:b"
    with pytest.raises(ValueError, match="is not an invoice key"):
        order_key_of("acme-fm:wo:1001")
    with pytest.raises(ValidationError):
        ApprovalDecision.model_validate({**raw, "type": "billing.invoice.paid"})
    with pytest.raises(ValidationError):
        ApprovalDecision.model_validate({**raw, "data": {**raw["data"], "operator": ""}})
    with pytest.raises(ValidationError, match="is not the tenant of"):
        ApprovalDecision.model_validate({**raw, "tenant": "nordic-hvac"})
