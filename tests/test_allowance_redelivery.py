"""Redelivery on a real broker: consuming the same event again never consumes the allowance twice.

Tansu (Kafka protocol) on loopback, real ``python -m broker run`` worker processes and the Xero
emulator; the allowance state is the worker's changelog-backed table ``corrective-allowance``,
read here from its changelog topic. Client CLI-CDP of the example configuration has contract
ABONO-2026-CDP: 4 h of corrective labour a month, labour discount 5 %.
"""

from __future__ import annotations

import json
import time

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics, publish
from broker.settings import TOPIC_EVENTS, TOPIC_INVOICES
from tests.conftest import write_config

pytestmark = pytest.mark.integration

APP_ID = "broker-allowance"
CHANGELOG = f"{APP_ID}-corrective-allowance-changelog"
ALLOWANCE_KEY = "acme-fm:CLI-CDP:2026-04"


def _event(wo_id: str, day: int, start: str, end: str) -> bytes:
    """A corrective work order of CLI-CDP in April 2026 (Lisbon summer time, +01:00), T31 alone."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"test:wo:{wo_id}:r1",
            "source": "/platforms/test",
            "type": "maintenance.work_order.completed",
            "time": f"2026-04-{day:02d}T13:00:00+01:00",
            "tenant": "acme-fm",
            "data": {
                "work_order_id": wo_id,
                "kind": "corrective",
                "client_id": "CLI-CDP",
                "site_id": "LIS-CDP-PLANT",
                "time_entries": [
                    {
                        "id": f"TE-{wo_id}",
                        "technician_id": "T31",
                        "start": f"2026-04-{day:02d}T{start}:00+01:00",
                        "end": f"2026-04-{day:02d}T{end}:00+01:00",
                    }
                ],
            },
        }
    ).encode()


def _read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record of ``topic`` (all partitions), read from the beginning until it is idle for 0.8 s."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=800,
    )
    try:
        return [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def _allowance_records(bootstrap: str) -> list[dict]:
    return [json.loads(value) for key, value in _read_topic(bootstrap, CHANGELOG) if json.loads(key) == ALLOWANCE_KEY]


def _invoices(bootstrap: str, invoice_key: str) -> list[dict]:
    out = []
    for _key, value in _read_topic(bootstrap, TOPIC_INVOICES):
        doc = json.loads(value)
        if doc["invoice_key"] == invoice_key:
            doc.pop("priced_at")  # the worker's clock: the only field allowed to differ
            out.append(doc)
    return out


def _wait_outcomes(tally: Tally, invoice_key: str, n: int, worker, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(o["invoice_key"] == invoice_key for o in tally.outcomes) < n:
        assert time.monotonic() < deadline, (
            f"waiting for {n} outcomes of {invoice_key}; worker log:\n{worker.log()[-4000:]}"
        )
        assert worker.proc.poll() is None, f"worker exited:\n{worker.log()[-4000:]}"
        tally.poll()


def test_redelivered_event_leaves_the_allowance_unchanged_and_gives_the_same_invoice(
    kafka, xero, tmp_path, worker_factory
):
    config = write_config(tmp_path, xero.url)
    ensure_topics(kafka, 4)
    env = {"BROKER_SESSION_TIMEOUT": "3", "BROKER_REBALANCE_TIMEOUT": "2"}
    worker = worker_factory(config, kafka, app_id=APP_ID, **env)
    tally = Tally(kafka)
    a_key, b_key = "acme-fm:wo:7001:r1", "acme-fm:wo:7002:r1"
    event_a = _event("7001", 7, "09:00", "12:00")  # Tuesday 09:00-12:00: 180 min, all inside the 240 min allowance
    event_b = _event("7002", 14, "09:00", "11:00")  # Tuesday a week later: 120 min, only 60 min left
    try:
        # 1. first delivery: consumes 180 min of April's allowance
        publish(kafka, TOPIC_EVENTS, [event_a])
        _wait_outcomes(tally, a_key, 1, worker)
        first = _allowance_records(kafka)
        assert first == [{"ABONO-2026-CDP": {a_key: 180}}]
        (invoice,) = _invoices(kafka, a_key)
        # call-out 45.00 (tax 10.35) + 3 h covered by the contract at 0.00: net 45.00, tax 10.35, total 55.35
        assert (invoice["net_total"], invoice["tax_total"], invoice["total"]) == ("45.00", "10.35", "55.35")
        assert invoice["allowance"]["consumed_minutes"] == 180 and invoice["allowance"]["used_before_minutes"] == 0

        # 2. the same event consumed again (a platform retrying its webhook): the table is not written again
        publish(kafka, TOPIC_EVENTS, [event_a])
        _wait_outcomes(tally, a_key, 2, worker)
        assert _allowance_records(kafka) == first
        again = _invoices(kafka, a_key)
        assert len(again) == 2 and again[1] == again[0]

        # 3. restart: a new worker recovers the table from its changelog; A once more changes nothing
        worker.stop()
        worker = worker_factory(config, kafka, app_id=APP_ID, **env)
        publish(kafka, TOPIC_EVENTS, [event_a])
        _wait_outcomes(tally, a_key, 3, worker)
        assert _allowance_records(kafka) == first
        assert all(doc == again[0] for doc in _invoices(kafka, a_key))

        # 4. the next work order sees exactly 180 min used: 60 min covered, 60 min billed
        publish(kafka, TOPIC_EVENTS, [event_b])
        _wait_outcomes(tally, b_key, 1, worker)
        assert _allowance_records(kafka)[-1] == {"ABONO-2026-CDP": {a_key: 180, b_key: 60}}
        (invoice_b,) = _invoices(kafka, b_key)
        # call-out 45.00 (tax 10.35); 1 h covered; 1 h × 42.00 less 5 % = 39.90 (tax 9.177 -> 9.18)
        # net 84.90; tax 19.53; total 104.43
        assert (invoice_b["net_total"], invoice_b["tax_total"], invoice_b["total"]) == ("84.90", "19.53", "104.43")
        assert (invoice_b["allowance"]["used_before_minutes"], invoice_b["allowance"]["consumed_minutes"]) == (180, 60)
        assert {o["outcome"] for o in tally.outcomes if o["invoice_key"] == a_key} <= {"created", "already_delivered"}
        assert [inv["InvoiceNumber"] for inv in xero.invoices()].count("ACME-WO-7001-R1") == 1

        # 5. an event that cannot be priced is dead-lettered as the original maintenance.events record
        bad = json.loads(_event("7003", 15, "09:00", "10:00"))
        bad["data"]["client_id"] = "CLI-NOPE"
        raw_bad = json.dumps(bad).encode()
        publish(kafka, TOPIC_EVENTS, [raw_bad])
        deadline = time.monotonic() + 60
        while not tally.dead:
            assert time.monotonic() < deadline, worker.log()[-4000:]
            tally.poll()
        (dead,) = tally.dead
        headers = dead["headers"]
        assert (dead["key"], dead["value"]) == (b"acme-fm:wo:7003", raw_bad)
        assert (headers["dlq.topic"], headers["dlq.stage"], headers["dlq.error.class"]) == (
            TOPIC_EVENTS,
            "enrich",
            "pricing",
        )
        assert int(headers["dlq.partition"]) in range(4) and int(headers["dlq.offset"]) >= 0
        assert (
            headers["dlq.message"].startswith("data.client_id: unknown client") and "CLI-NOPE" in headers["dlq.message"]
        )
    finally:
        tally.close()
