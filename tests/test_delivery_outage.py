"""Acceptance: outage. One organisation's Xero answers 503 for a while, then recovers: everything is
delivered once, each work order's revisions in order, and the other tenant was not delayed.

The issue's 2-minute outage is shortened by configuration: ``DELIVERY_OUTAGE_SECONDS`` (default 8 s)
with the worker's in-line retry budget at 2 s and park delays 2, 4, 8 s, so the acme invoices go
through the whole path: in-line retries, parking on ``billing.invoices.retry.N``, the tenant's
circuit, later revisions queued behind a parked one, delivery after recovery. The test marked
``slow`` runs the full 120 s.
"""

from __future__ import annotations

import os
import time

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_INVOICES
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    delivery_config,
    metric,
    metrics_text,
    outcomes_by_key,
    priced,
    publish_records,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = float(os.environ.get("DELIVERY_OUTAGE_SECONDS", "8"))
#: acme work orders and their revisions, published during the outage
ACME = {"O-1": 2, "O-2": 1, "O-3": 3, "O-4": 1}


def _run_outage(kafka, xero, tmp_path, worker_factory, outage: float) -> None:
    config = delivery_config(tmp_path, xero.url)
    ensure_topics(kafka, 4)
    worker = worker_factory(config, kafka, **FAST_ENV)
    tally = Tally(kafka)
    try:
        publish_records(
            kafka,
            TOPIC_INVOICES,
            priced([work_order("acme-fm", "WARM-A"), work_order("nordic-hvac", "WARM-N")], config),
        )
        wait_for(lambda: len(tally.outcomes) >= 2, timeout=60, what="warm-up invoices", tally=tally, workers=[worker])

        xero.outage(outage, tenant_id=ORG_ACME)
        started = time.monotonic()
        acme = [work_order("acme-fm", wo, rev) for wo, revs in ACME.items() for rev in range(1, revs + 1)]
        publish_records(kafka, TOPIC_INVOICES, priced(acme, config))
        nordic_sent = 0
        # other tenants' invoices keep arriving during the outage (50 a minute, within their own
        # 60/min Xero limit); they must not wait for acme
        while time.monotonic() - started < outage - 1:
            publish_records(kafka, TOPIC_INVOICES, priced([work_order("nordic-hvac", f"N-{nordic_sent}")], config))
            nordic_sent += 1
            deadline = time.monotonic() + 1.2
            while time.monotonic() < deadline:
                tally.poll(0.1)
        expected = 2 + len(acme) + nordic_sent
        wait_for(
            lambda: len({o["invoice_key"] for o in tally.outcomes}) >= expected,
            timeout=outage + 90,
            what="every invoice after the outage",
            tally=tally,
            workers=[worker],
        )

        # delivered once each
        numbers = [h[3] for h in xero.history if h[1] == "invoice.created"]
        assert len(numbers) == len(set(numbers)) == expected
        by_key = outcomes_by_key(tally)
        created = {k for k, os_ in by_key.items() if any(o["outcome"] == "created" for o in os_)}
        assert len(created) == expected and all(o["outcome"] == "created" for os_ in by_key.values() for o in os_)

        # in the order of each work order's revisions; each later revision voids the (unpaid) one before
        acme_events = [
            (h[1], h[3]) for h in xero.history if h[2] == ORG_ACME and h[1] in ("invoice.created", "invoice.status")
        ]
        for wo, revs in ACME.items():
            seq = [e for e in acme_events if f"-{wo}-" in e[1]]
            want = []
            for rev in range(1, revs + 1):
                if rev > 1:
                    want.append(("invoice.status", f"ACME-WO-{wo}-R{rev - 1}"))
                want.append(("invoice.created", f"ACME-WO-{wo}-R{rev}"))
            assert seq == want, (wo, seq)
        first_acme = min(h[0] for h in xero.history if h[2] == ORG_ACME and h[3].startswith("ACME-WO-O-"))
        assert first_acme >= min(h[0] for h in xero.history if h[3] == "ACME-WO-WARM-A-R1") + outage * 0.9

        # the other tenant was not delayed: its latency (event time -> confirmed) stayed low
        nordic = [
            o for o in tally.outcomes if o["tenant"] == "nordic-hvac" and o["invoice_key"] != "nordic-hvac:wo:WARM-N:r1"
        ]
        assert len(nordic) == nordic_sent >= 3
        latencies = sorted(o["latency_seconds"] for o in nordic)
        assert latencies[-1] < 3.0, [
            (o["invoice_key"], o["latency_seconds"]) for o in nordic if o["latency_seconds"] >= 3
        ]
        acme_latency = max(o["latency_seconds"] for o in tally.outcomes if o["invoice_key"].startswith("acme-fm:wo:O-"))
        assert acme_latency >= outage * 0.9
        assert not [h for h in xero.history if h[2] == ORG_NORDIC and h[1] != "invoice.created"]

        text = metrics_text(worker)
        assert metric(text, "broker_invoices_parked_total", reason="retryable") >= 1
        assert metric(text, "broker_invoices_parked_total", reason="behind_revision") >= 1
        assert metric(text, "broker_delivery_retries_total", reason="retryable") >= 1
        assert metric(text, "broker_amendments_total", action="voided") == sum(r - 1 for r in ACME.values())
        assert metric(text, "broker_delivery_latency_seconds_count") >= expected
        assert not tally.dead
    finally:
        tally.close()


def test_outage_then_recovery_delivers_once_in_order_without_delaying_others(kafka, xero, tmp_path, worker_factory):
    _run_outage(kafka, xero, tmp_path, worker_factory, OUTAGE_SECONDS)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_minute_outage(kafka, xero, tmp_path, worker_factory):
    _run_outage(kafka, xero, tmp_path, worker_factory, 120.0)
