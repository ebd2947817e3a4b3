"""Parked outcomes and "Retry now" without Kafka: the ledger reports a parking once per change (not per retry),
an operator's retry request takes a parked head once per request, the Deliverer attempts it through an open
circuit, and the records: ``DeliveryOutcome`` ``parked`` / ``needs_reauth`` with ``next_attempt_at``, the
``billing.invoice.retry_requested`` decision and its schema (docs/delivery.md §4, docs/approval.md)."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from broker.approvals import RETRY_REQUESTED, ApprovalDecision, retry_request_event
from broker.delivery import Delivered, DictLedgerStore, InvoiceLedger, Park, pack_entry
from connectors.sdk.errors import RetryableError
from connectors.sdk.invoice import DeliveryOutcome
from tests.test_delivery_units import run
from tests.test_lifecycle_units import META, ORDER, LifecycleConnector, deliverer_with, rev

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


def parked_r1() -> tuple[InvoiceLedger, object]:
    ledger = InvoiceLedger(DictLedgerStore())
    r1 = rev(1)
    assert ledger.parked_at(r1, r1.model_dump_json().encode(), META, due=1.0, reason="retryable", level=1) == "parked"
    return ledger, r1


def test_a_parking_is_reported_once_per_change_not_per_retry():
    ledger, r1 = parked_r1()
    payload = r1.model_dump_json().encode()
    again = replace(META, parks=2)
    assert ledger.parked_at(r1, payload, again, due=2.0, reason="rate_limited", level=2) is None
    run(ledger.begin_attempt(r1))  # came due, attempted, failed again: still not reported anew
    ledger.settle(r1, 1, RetryableError("503"))
    assert ledger.parked_at(r1, payload, again, due=3.0, reason="retryable", level=2) is None
    assert ledger.parked_at(r1, payload, again, due=4.0, reason="needs_reauth", level=2) == "needs_reauth"
    assert ledger.parked_at(r1, payload, again, due=5.0, reason="needs_reauth", level=2) is None
    assert ledger.parked_at(r1, payload, again, due=6.0, reason="retryable", level=2) == "parked"
    ledger.failed(r1, "retryable", RetryableError("still down"), 3)
    packed = pack_entry(r1.invoice_key, ledger.entry(r1.invoice_key))
    assert isinstance(packed, str) and "park_reported" not in packed  # a settled entry does not keep it


def test_a_retry_request_takes_a_parked_head_once_and_reports_the_next_parking_anew():
    ledger, r1 = parked_r1()
    r2 = rev(2)
    ledger.queue_behind(r2, r2.model_dump_json().encode(), META)
    assert ledger.retry_now(r2.invoice_key, "req-1") is None  # queued behind r1: not parked itself
    entry = ledger.retry_now(r1.invoice_key, "req-1")
    assert entry is not None and entry["payload"] == r1.model_dump_json() and "park_reported" not in entry
    assert ledger.retry_now(r1.invoice_key, "req-1") is None  # the same request consumed again
    payload = r1.model_dump_json().encode()
    assert ledger.parked_at(r1, payload, replace(META, parks=2), due=9.0, reason="retryable", level=2) == "parked"
    assert ledger.retry_now(r1.invoice_key, "req-2") is not None  # a new request, parked again
    assert ledger.retry_now(f"{ORDER}:r9", "req-3") is None  # unknown


def test_retry_now_attempts_through_an_open_circuit_and_closes_it():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = LifecycleConnector(["ok"], ledger)
    d = deliverer_with(conn)
    state = d.state("acme")
    state.circuit_until, state.circuit_reason = time.time() + 300, "retryable"
    waiting = run(d.process(rev(1), ledger, META))
    assert isinstance(waiting, Park) and not waiting.attempted and conn.calls == []
    done = run(d.process(rev(1), ledger, META, retry_now=True))
    assert isinstance(done, Delivered) and not state.circuit_open()


def test_parked_outcomes_and_the_retry_request_record():
    due = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
    out = DeliveryOutcome(
        invoice_key=f"{ORDER}:r1",
        tenant="acme",
        billing_system="xero",
        outcome="parked",
        error="retryable: 503; next attempt at 2026-03-02T10:05:00+00:00",
        next_attempt_at=due,
        at=due,
    )
    assert DeliveryOutcome.model_validate_json(out.model_dump_json()).next_attempt_at == due
    assert DeliveryOutcome.model_validate({**out.model_dump(), "outcome": "needs_reauth"}).outcome == "needs_reauth"
    request = retry_request_event(f"{ORDER}:r1", "bob")
    assert (request.type, request.retry_requested, request.approved) == (RETRY_REQUESTED, True, False)
    assert request.order_key == ORDER and request.tenant == "acme"
    assert ApprovalDecision.model_validate_json(request.model_dump_json()) == request
    with pytest.raises(ValidationError):
        ApprovalDecision.model_validate({**request.model_dump(), "type": "billing.invoice.retry"})
    schema = json.loads((SCHEMAS / "approval-decision.schema.json").read_text(encoding="utf-8"))
    assert RETRY_REQUESTED in json.dumps(schema)
    outcomes = json.dumps(json.loads((SCHEMAS / "delivery-outcome.schema.json").read_text(encoding="utf-8")))
    assert '"needs_reauth"' in outcomes and "next_attempt_at" in outcomes
