"""Acceptance (fencing): a worker frozen while it waits for the billing system loses its partitions to
another member; when it runs again it writes no ledger entry and publishes no outcome for them.

Worker A delivers alone. The Xero emulator's ``on_invoice_created`` hook stops A (``SIGSTOP``) when
the test's invoice is created, before the emulator answers: the answer waits in A's socket. Worker
B joins the group; A cannot answer the rebalance, is expelled after the group's timeouts, and B
takes every partition, finds A's ``pending`` ledger entry, reconciles the invoice with the emulator
and publishes its outcome. Then A continues (``SIGCONT``) with the answer to its create in hand.

Without the fence A would write ``delivered`` and publish a second ``created`` outcome. With it: the
invoice has exactly one outcome (B's), the ledger changelog has exactly one ``delivered`` entry for
it (B's, ``reconciled``, then its outcome marked published), the emulator holds it once, and A
counts ``broker_fenced_total``.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from broker.delivery import unpack_entry
from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_INVOICES
from connectors.xero.emulator import XeroEmulator
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    delivery_config,
    group_worker,
    metric,
    metrics_text,
    outcomes_by_key,
    priced,
    publish_records,
    read_to_end,
    topic_records,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration

APP_ID = "fence-test"
ENV = {**FAST_ENV, "BROKER_LOG_LEVEL": os.environ.get("FENCE_LOG_LEVEL", "INFO")}


def _ledger_writes(bootstrap: str, key: str) -> list[dict]:
    """The ledger changelog's values for ledger key ``key``, in partition order."""
    records = topic_records(bootstrap, f"{APP_ID}-delivery-ledger-changelog")
    return [unpack_entry(key, json.loads(r.value)) for r in records if r.key and json.loads(r.key) == key]


def test_a_frozen_worker_writes_nothing_for_the_partitions_it_lost(kafka, xero_validator, tmp_path):
    warm_up, target = work_order("acme-fm", "F-000"), work_order("acme-fm", "F-001")
    key = "acme-fm:wo:F-001:r1"
    frozen = threading.Event()
    workers: dict[str, object] = {}

    def on_created(tenant: str, invoice: dict) -> None:  # emulator thread, before the answer
        if invoice["InvoiceNumber"].endswith("-F-001-R1") and not frozen.is_set():
            os.killpg(workers["a"].proc.pid, signal.SIGSTOP)
            frozen.set()

    xero = XeroEmulator(
        tenant_ids=(ORG_ACME, ORG_NORDIC),
        request_validator=xero_validator,
        rate_limit_per_minute=100000,
        on_invoice_created=on_created,
    ).start()
    config = delivery_config(tmp_path, xero.url, settings={"acme-fm": {"rate_limit_per_minute": 100000}})
    ensure_topics(kafka, 4)
    tally = Tally(kafka)
    a = workers["a"] = group_worker(config, kafka, tmp_path, "a", app_id=APP_ID, **ENV).start()
    b = None
    try:
        publish_records(kafka, TOPIC_INVOICES, priced([warm_up], config))
        wait_for(
            lambda: "acme-fm:wo:F-000:r1" in outcomes_by_key(tally),
            timeout=120,
            what="worker A delivers the warm-up invoice",
            tally=tally,
            workers=[a],
        )
        publish_records(kafka, TOPIC_INVOICES, priced([target], config))
        assert frozen.wait(60), "worker A never created the test's invoice"
        b = workers["b"] = group_worker(config, kafka, tmp_path, "b", app_id=APP_ID, **ENV).start()
        wait_for(
            lambda: key in outcomes_by_key(tally),
            timeout=120,
            what="worker B reconciles and reports the invoice A created",
            tally=tally,
            workers=[b],
        )
        os.killpg(a.proc.pid, signal.SIGCONT)
        wait_for(
            lambda: metric(metrics_text(a), "broker_fenced_total") >= 1,
            timeout=60,
            what="worker A finds it is fenced",
            workers=[a, b],
        )
        wait_for(
            lambda: "Joined group" in a.log().split("no longer a current member", 1)[-1],
            timeout=60,
            what="worker A rejoins the group",
            workers=[a, b],
        )
        read_to_end(tally)
        outcomes = outcomes_by_key(tally)[key]
        assert [o["outcome"] for o in outcomes] == ["created"]
        assert outcomes[0]["reconciled"] is True
        writes = _ledger_writes(kafka, key)
        states = [(w["state"], w.get("reconciled"), (w.get("outcome") or {}).get("published")) for w in writes]
        # A: pending (before its call); B: delivered by reconciling, then its outcome marked published
        assert states == [("pending", None, None), ("delivered", True, False), ("delivered", True, True)], states
        assert [i["InvoiceNumber"] for i in xero.invoices(ORG_ACME)].count("ACME-WO-F-001-R1") == 1
    finally:
        if a.proc.poll() is None:
            os.killpg(a.proc.pid, signal.SIGCONT)
        for w in (a, b):
            if w is not None:
                w.stop()
        tally.close()
        xero.stop()
