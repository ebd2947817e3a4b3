"""Scale-out (issue 13 acceptance): three workers share one consumer group on 12 partitions; one is
killed with SIGKILL while they deliver, a new one joins, and every invoice is created exactly once.

The Xero emulator keeps no idempotency cache and accepts duplicate invoice numbers, so nothing on the
billing-system side hides a second create. Events go in three batches: before the kill, between the
kill and the new worker, after it joined: 90 work orders in the default suite, 600 in the ``slow`` one.
Every worker left must be alive without a crash in its log: before ``SeekingConsumerThread._seek_wait``
one run in four lost a worker in Faust's standby recovery after the rebalance
(``broker/faust_compat.py``, "Standby seek after a rebalance").
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from broker.demo import Tally
from broker.embedded import EmbeddedKafka
from broker.kafka import ensure_topics, publish
from broker.settings import ALL_TOPICS, TOPIC_EVENTS
from connectors.xero.emulator import XeroEmulator
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    delivery_config,
    group_worker,
    metric,
    metrics_text,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration

PARTITIONS = 12
APP_ID = "scale-out"
FAST = {"rate_limit_per_minute": 100000}
ENV = {**FAST_ENV, "BROKER_TOPIC_PARTITIONS": str(PARTITIONS)}


def _events(start: int, count: int) -> list[bytes]:
    tenants = ("acme-fm", "nordic-hvac")
    return [work_order(tenants[i % 2], f"S{i:04d}") for i in range(start, start + count)]


def _rebalances(worker) -> float:
    try:
        return metric(metrics_text(worker), "broker_rebalances_total")
    except OSError:  # not serving yet
        return 0.0


def _scale_out(n: int, xero_validator, tmp_path) -> None:
    third = n // 3
    with EmbeddedKafka() as kafka:
        bootstrap = kafka.bootstrap
        xero = XeroEmulator(
            tenant_ids=(ORG_ACME, ORG_NORDIC),
            request_validator=xero_validator,
            idempotency_ttl=0,
            enforce_unique_numbers=False,
            rate_limit_per_minute=100000,
        ).start()
        workers = []
        try:
            config = delivery_config(tmp_path, xero.url, settings={"acme-fm": FAST, "nordic-hvac": FAST})
            ensure_topics(bootstrap, PARTITIONS, [*ALL_TOPICS, f"{APP_ID}-events-by-client"])
            workers = [
                group_worker(config, bootstrap, tmp_path, f"w{i}", app_id=APP_ID, **ENV).start() for i in (1, 2, 3)
            ]
            tally = Tally(bootstrap)
            try:
                publish(bootstrap, TOPIC_EVENTS, _events(0, third))
                wait_for(
                    lambda: tally.poll() >= 0 and len(xero.invoices()) >= third // 2,
                    timeout=120,
                    what="half of the first batch delivered",
                    workers=workers,
                )
                os.killpg(workers[1].proc.pid, signal.SIGKILL)  # one worker dies while the group delivers
                workers[1].proc.wait(10)
                publish(bootstrap, TOPIC_EVENTS, _events(third, third))
                joined = group_worker(config, bootstrap, tmp_path, "w4", app_id=APP_ID, **ENV).start()
                workers.append(joined)
                wait_for(
                    lambda: _rebalances(joined) >= 1,
                    timeout=120,
                    what="the new worker joined the group",
                    workers=workers,
                )
                publish(bootstrap, TOPIC_EVENTS, _events(2 * third, n - 2 * third))
                deadline = time.monotonic() + 240
                while len({o["invoice_key"] for o in tally.outcomes}) < n:
                    assert time.monotonic() < deadline, (
                        f"{len({o['invoice_key'] for o in tally.outcomes})}/{n} outcomes; "
                        + "\n".join(w.log()[-1500:] for w in workers)
                    )
                    tally.poll()
            finally:
                tally.close()
            numbers = Counter(inv["InvoiceNumber"] for inv in xero.invoices())
            assert len(numbers) == n and set(numbers.values()) == {1}, numbers.most_common(3)
            created = Counter(o["invoice_key"] for o in tally.outcomes if o["outcome"] == "created")
            assert len(created) == n and set(created.values()) == {1}, created.most_common(3)
            assert tally.dead == []
            live = [w for w in workers if w.proc.poll() is None]
            assert len(live) == 3, "\n".join(w.log()[-3000:] for w in workers if w not in live)
            assert not [w.log() for w in live if "Crashed reason" in w.log()]
            assert sum(1 for w in live if metric(metrics_text(w), "broker_invoices_delivered_total") > 0) >= 2
        finally:
            for w in workers:
                w.stop()
            xero.stop()


def test_three_workers_one_killed_one_added_deliver_every_invoice_once(xero_validator, tmp_path):
    _scale_out(90, xero_validator, tmp_path)


@pytest.mark.slow
def test_three_workers_one_killed_one_added_600_invoices(xero_validator, tmp_path):
    _scale_out(600, xero_validator, tmp_path)
