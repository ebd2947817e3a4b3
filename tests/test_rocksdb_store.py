"""``BROKER_STORE=rocksdb``: the worker keeps its tables on disk (faust's rocksdb store on rocksdict);
after a ``kill -9`` and a restart on the same data directory, an event sent again is recognised
(``already_delivered``) and a new one is created: one invoice each."""

from __future__ import annotations

from collections import Counter

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics, publish
from broker.settings import TOPIC_EVENTS
from tests.delivery_support import FAST_ENV, delivery_config, wait_for, work_order

pytestmark = pytest.mark.integration


def test_the_ledger_on_rocksdb_survives_a_kill_9(kafka, xero, worker_factory, tmp_path):
    config = delivery_config(tmp_path, xero.url)
    ensure_topics(kafka, 4)
    worker = worker_factory(config, kafka, **{**FAST_ENV, "BROKER_STORE": "rocksdb"})
    tally = Tally(kafka)
    try:
        publish(kafka, TOPIC_EVENTS, [work_order("acme-fm", "R1")])
        wait_for(lambda: tally.poll() >= 0 and len(tally.outcomes) >= 1, timeout=90, what="R1", workers=[worker])
        worker.kill()
        assert list((tmp_path / "data").rglob("*.sst")) or list((tmp_path / "data").rglob("CURRENT")), (
            "no RocksDB files in the data directory"
        )
        worker.start()
        publish(kafka, TOPIC_EVENTS, [work_order("acme-fm", "R1"), work_order("acme-fm", "R2")])
        wait_for(
            lambda: (
                tally.poll() >= 0
                and ("acme-fm:wo:R2:r1", "created") in {(o["invoice_key"], o["outcome"]) for o in tally.outcomes}
                and sum(o["invoice_key"] == "acme-fm:wo:R1:r1" for o in tally.outcomes) >= 2
            ),
            timeout=120,
            what="R2 created and R1 recognised",
            workers=[worker],
        )
    finally:
        tally.close()
    # a record consumed again after the kill (before its commit) adds an already_delivered outcome
    created = Counter(o["invoice_key"] for o in tally.outcomes if o["outcome"] == "created")
    assert created == Counter({"acme-fm:wo:R1:r1": 1, "acme-fm:wo:R2:r1": 1})
    assert {o["outcome"] for o in tally.outcomes} == {"created", "already_delivered"}
    numbers = Counter(inv["InvoiceNumber"] for inv in xero.invoices())
    assert numbers == Counter({"ACME-WO-R1-R1": 1, "ACME-WO-R2-R1": 1})
