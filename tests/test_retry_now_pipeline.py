"""Acceptance of "Retry now" (issue 12 item 3) on the embedded Tansu, a real worker, the Xero emulator (spec
validation on), the status view and the console's API.

Xero answers 503: the invoice is parked for ``BROKER_PARK_DELAYS`` = 300 s, with one outcome ``parked`` naming
the reason and ``next_attempt_at``; the view and the console show it parked with both. The emulator is fixed
and an operator posts ``/api/documents/{order_key}/retry``: the worker attempts it at once (its tenant's
circuit is still open for 300 s) and delivers it once, long before the scheduled next attempt, so only the
request can explain the delivery. A second request for the delivered invoice does nothing.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from broker.approvals import publish_decision, retry_request_event
from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_INVOICES
from broker.statusdb.read import document_history, get_invoice
from tests import delivery_support as ds
from tests.console_support import console_client, status_view
from tests.test_console import BOB

pytestmark = pytest.mark.integration

KEY, ORDER_KEY, NUMBER = "acme-fm:wo:RN-1:r1", "acme-fm:wo:RN-1", "ACME-WO-RN-1-R1"
PARK_SECONDS = 300


def test_a_parked_invoice_is_shown_and_retry_now_delivers_it_once(kafka, xero, tmp_path, worker_factory):
    config = ds.delivery_config(tmp_path, xero.url)
    ensure_topics(kafka, 4)
    worker = worker_factory(config, kafka, **{**ds.FAST_ENV, "BROKER_PARK_DELAYS": str(PARK_SECONDS)})
    tally = Tally(kafka)
    try:
        with status_view(kafka, tmp_path) as engine:

            def status() -> str | None:
                row = get_invoice(engine, KEY)
                return row.status if row else None

            xero.outage(600)  # every Accounting call answers 503
            published = time.time()
            ds.publish_records(kafka, TOPIC_INVOICES, ds.priced([ds.work_order("acme-fm", "RN-1")], config))
            ds.wait_for(lambda: status() == "parked", timeout=60, what="parked in the view", workers=[worker])

            tally.poll()
            [parked] = tally.parked
            assert (parked["invoice_key"], parked["outcome"]) == (KEY, "parked")
            assert parked["error"].startswith("retryable: ") and "503" in parked["error"]
            next_attempt = datetime.fromisoformat(parked["next_attempt_at"]).timestamp()
            assert published + PARK_SECONDS - 5 < next_attempt < time.time() + PARK_SECONDS + 1
            row = get_invoice(engine, KEY)
            assert row is not None and row.error == parked["error"] and "next attempt at " in row.error
            history = document_history(engine, ORDER_KEY).events
            assert history[-1].detail["next_attempt_at"] == parked["next_attempt_at"]  # type: ignore[index]
            assert xero.invoices(ds.ORG_ACME) == []

            client = console_client(engine, bootstrap=kafka)
            listed = client.get("/api/invoices?status=parked", auth=BOB).json()
            assert [(i["invoice_key"], i["status_reason"]) for i in listed["items"]] == [(KEY, parked["error"])]

            xero.outage(0)  # the billing system is back; the worker would wait 300 s for it
            asked = time.time()
            answer = client.post(f"/api/documents/{ORDER_KEY}/retry", auth=BOB)
            assert answer.status_code == 202, answer.text
            ds.wait_for(lambda: status() == "delivered", timeout=30, what="delivered in the view", workers=[worker])
            assert time.time() - asked < 30 and time.time() < next_attempt - 200  # well before its next attempt
            assert [i["InvoiceNumber"] for i in xero.invoices(ds.ORG_ACME)] == [NUMBER]

            # a second request, for an invoice no longer parked: the console refuses it, the worker ignores it
            assert client.post(f"/api/documents/{ORDER_KEY}/retry", auth=BOB).status_code == 409
            publish_decision(kafka, retry_request_event(KEY, "bob", source="/tests"))
            ds.wait_for(lambda: "nothing to do" in worker.log(), timeout=30, what="the second request ignored")
            tally.poll(1.0)
            assert [(o["invoice_key"], o["outcome"]) for o in tally.outcomes] == [(KEY, "created")]
            assert len(tally.parked) == 1 and len(xero.invoices(ds.ORG_ACME)) == 1
    finally:
        tally.close()
    assert datetime.now(UTC).timestamp() < next_attempt
