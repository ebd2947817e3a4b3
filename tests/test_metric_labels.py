"""Bounded metric labels: the ``billing_system`` label is the tenant's configured system, so priced
invoices produced to ``billing.invoices`` with 40 made-up ``billing_system`` values add no series."""

from __future__ import annotations

import json
import re

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_INVOICES
from tests.delivery_support import delivery_config, metrics_text, priced, publish_records, wait_for, work_order

pytestmark = pytest.mark.integration

N = 40


def test_crafted_billing_system_values_add_no_series(kafka, xero, tmp_path, worker_factory):
    config = delivery_config(tmp_path, xero.url)
    ensure_topics(kafka, 4)
    records = []
    for i, (key, value) in enumerate(priced([work_order("acme-fm", f"L{i}") for i in range(N)], config)):
        invoice = json.loads(value)
        invoice["billing_system"] = f"crafted-{i}"
        records.append((key, json.dumps(invoice).encode()))
    worker = worker_factory(config, kafka)
    publish_records(kafka, TOPIC_INVOICES, records)
    tally = Tally(kafka)
    try:
        wait_for(lambda: tally.poll() >= 0 and tally.terminal >= N, timeout=120, what=f"{N} outcomes", workers=[worker])
    finally:
        tally.close()
    text = metrics_text(worker)
    systems = set(re.findall(r'billing_system="([^"]*)"', text))
    assert systems == {"xero"}, sorted(systems)[:10]
    assert f'broker_invoices_delivered_total{{billing_system="xero",outcome="created"}} {N}.0' in text
    assert {o["billing_system"] for o in tally.outcomes} == {"xero"}
