"""Batched delivery through the worker on the embedded Kafka (issue 15 acceptance): Xero takes up to 50
invoices per ``PUT Invoices?summarizeErrors=false``, and the deliver stage groups one tenant's ready
invoices into such calls (broker/delivery/batching.py).

One worker, four phases against a strict Xero emulator (no idempotency cache, duplicate numbers
accepted: nothing on its side hides a second create), all with acme-fm throttled to 20 calls per
10 s (one invoice per call would need 4 minutes for the backlog):

1. a backlog of 500 invoices is delivered in batches — at most 25 ``PUT Invoices`` calls, 0 × 429 —
   with exactly one Xero invoice per key;
2. the answer to a batch is dropped after Xero stored it: each of its invoices is looked up by its
   number and none is created twice;
3. a batch with one invoice Xero refuses (an unknown contact) delivers the others and dead-letters
   that one, naming Xero's message;
4. two revisions of one work order among 20 new invoices: revision 1 is created (in a batch), then
   revision 2 replaces it (alone: revision 1 voided) — revision order holds.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_DLQ, TOPIC_INVOICES
from connectors.sandbox.faults import Fault
from connectors.xero.emulator import XeroEmulator
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    delivery_config,
    metric,
    metrics_text,
    priced,
    publish_records,
    topic_records,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration

LIMIT, WINDOW = 20, 10.0
INVOICES_PATH = "/api.xro/2.0/Invoices"


def _puts(xero: XeroEmulator) -> int:
    return sum(1 for method, path, _status in xero.calls if method == "PUT" and path == INVOICES_PATH)


def _numbers(xero: XeroEmulator) -> list[str]:
    return [inv["InvoiceNumber"] for inv in xero.invoices(ORG_ACME)]


def _wait_outcomes(tally: Tally, keys: set[str], worker, what: str, timeout: float = 120) -> None:
    def done() -> bool:
        tally.poll()
        return keys <= {o["invoice_key"] for o in tally.outcomes}

    wait_for(done, timeout=timeout, what=what, workers=[worker])


def test_batched_delivery_backlog_lost_answer_rejected_item_and_revision_order(
    kafka, xero_validator, tmp_path, worker_factory
):
    xero = XeroEmulator(
        tenant_ids=(ORG_ACME, ORG_NORDIC),
        request_validator=xero_validator,
        idempotency_ttl=0,
        enforce_unique_numbers=False,
    ).start()
    xero.rate_limit_per_minute = LIMIT
    xero.rate_limit_window_seconds = WINDOW
    config = delivery_config(
        tmp_path, xero.url, settings={"acme-fm": {"rate_limit_per_minute": LIMIT, "rate_limit_window_seconds": WINDOW}}
    )
    ensure_topics(kafka, 4)
    worker = worker_factory(config, kafka, **FAST_ENV)
    tally = Tally(kafka)
    try:
        # -- 1. a 500-invoice backlog
        backlog = priced([work_order("acme-fm", f"B-{i:04d}") for i in range(500)], config)
        publish_records(kafka, TOPIC_INVOICES, backlog)
        keys = {json.loads(value)["invoice_key"] for _key, value in backlog}
        _wait_outcomes(tally, keys, worker, "the 500-invoice backlog", timeout=180)
        numbers = _numbers(xero)
        assert len(numbers) == 500 and len(set(numbers)) == 500
        puts = _puts(xero)
        print(f"500 invoices in {puts} PUT Invoices calls")
        assert puts <= 25, puts  # one invoice per call would be 500 calls
        assert xero.count_429 == 0
        assert {o["outcome"] for o in tally.outcomes} == {"created"}
        text = metrics_text(worker)
        assert metric(text, "broker_delivery_batch_size_sum", billing_system="xero") == 500
        assert metric(text, "broker_delivery_batch_size_count", billing_system="xero") == puts

        # -- 2. the answer to a batch is lost after Xero stored it
        xero._add_fault(Fault("drop_after_commit", method="PUT", path=INVOICES_PATH))
        lost = priced([work_order("acme-fm", f"L-{i:02d}") for i in range(30)], config)
        publish_records(kafka, TOPIC_INVOICES, lost)
        _wait_outcomes(tally, {json.loads(v)["invoice_key"] for _k, v in lost}, worker, "the lost batch")
        numbers = _numbers(xero)
        assert len(numbers) == 530 and len(set(numbers)) == 530  # nothing created twice
        assert xero.faults.kinds_pending() == []  # the fault hit a batch
        assert metric(metrics_text(worker), "broker_delivery_lookups_total", billing_system="xero", result="found") >= 1

        # -- 3. one invoice of a batch refused by Xero
        mixed = priced([work_order("acme-fm", f"M-{i:02d}") for i in range(10)], config)
        bad_key, bad_value = mixed[4]
        bad = json.loads(bad_value)
        bad["contact_id"] = "c0000000-0000-0000-0000-00000000dead"
        mixed[4] = (bad_key, json.dumps(bad).encode())
        publish_records(kafka, TOPIC_INVOICES, mixed)
        _wait_outcomes(tally, {json.loads(v)["invoice_key"] for _k, v in mixed}, worker, "the mixed batch")
        by_key = {o["invoice_key"]: o["outcome"] for o in tally.outcomes}
        assert [by_key[json.loads(v)["invoice_key"]] for _k, v in mixed] == ["created"] * 4 + ["dead_lettered"] + [
            "created"
        ] * 5
        assert bad["invoice_number"] not in _numbers(xero) and len(_numbers(xero)) == 539
        dead = [json.loads(r.value) for r in topic_records(kafka, TOPIC_DLQ)]
        assert len(dead) == 1
        dead_headers = {k: v.decode() for k, v in topic_records(kafka, TOPIC_DLQ)[0].headers}
        assert dead[0]["invoice_key"] == bad["invoice_key"]
        assert dead_headers["dlq.error.class"] == "permanent"
        assert "does not exist" in dead_headers["dlq.message"], dead_headers["dlq.message"]

        # -- 4. two revisions of one work order among new invoices
        first = priced([work_order("acme-fm", "R-1")], config)
        others = priced([work_order("acme-fm", f"N-{i:02d}") for i in range(20)], config)
        second = priced([work_order("acme-fm", "R-1", 2, minutes=90)], config)
        records = first + others[:10] + second + others[10:]
        publish_records(kafka, TOPIC_INVOICES, records)
        _wait_outcomes(tally, {json.loads(v)["invoice_key"] for _k, v in records}, worker, "the revisions")
        r1, r2 = json.loads(first[0][1]), json.loads(second[0][1])
        # The two outcomes have different keys, so they may sit on different partitions and be read in
        # either order; their ``at`` is taken before the ledger write that revision 2's amendment reads.
        revisions = sorted(
            (o for o in tally.outcomes if o["invoice_key"] in (r1["invoice_key"], r2["invoice_key"])),
            key=lambda o: datetime.fromisoformat(o["at"]),
        )
        assert [(o["invoice_key"], o["outcome"], o.get("amendment")) for o in revisions] == [
            (r1["invoice_key"], "created", None),
            (r2["invoice_key"], "created", "voided"),  # revision 2 replaces the unpaid revision 1
        ]
        assert revisions[1]["replaced"] == r1["invoice_key"]
        stored = {inv["InvoiceNumber"]: inv for inv in xero.invoices(ORG_ACME)}
        assert (stored[r1["invoice_number"]]["Status"], stored[r2["invoice_number"]]["Status"]) == (
            "VOIDED",
            "AUTHORISED",
        )
        assert len(stored) == 561 and len(_numbers(xero)) == 561  # 539 + R-1 r1 and r2 + 20
        assert xero.count_429 == 0
    finally:
        tally.close()
        xero.stop()
    assert not xero.validation_failures, xero.validation_failures
