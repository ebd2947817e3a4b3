"""Replaying a dead letter from the console, on a real Kafka (the embedded Tansu): the status database is
filled from what is on ``billing.dlq`` by the status view's own mapping, and the copy lands on its stage's
input topic with the headers ``broker dlq replay`` gives it."""

from __future__ import annotations

import pytest

from broker import dlq
from broker.kafka import ensure_topics
from broker.settings import TOPIC_DLQ, TOPIC_INVOICES
from broker.statusdb.mapping import Consumed
from broker.statusdb.store import migrate, open_database, write_batch
from tests.console_support import DLQ_HEADERS, console_client
from tests.status_view_support import as_bytes, invoice

pytestmark = pytest.mark.integration

CAROL = ("carol", "carol-pw")


def test_a_dead_letter_is_replayed_to_its_stage_input_once(kafka, tmp_path):
    from kafka import KafkaProducer

    ensure_topics(kafka, 2, [TOPIC_DLQ, TOPIC_INVOICES])
    nordic = invoice(tenant="nordic-hvac", wo="2001", hours="10")
    worn_out = invoice(tenant="nordic-hvac", wo="2002", hours="1")
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=0, batch_size=0)
    try:
        for inv, count in ((nordic, b"0"), (worn_out, b"3")):
            headers = [(k, count if k == "dlq.replay.count" else v) for k, v in DLQ_HEADERS]
            producer.send(TOPIC_DLQ, key=inv.order_key.encode(), value=as_bytes(inv), headers=headers, partition=0)
        producer.flush()
    finally:
        producer.close()
    engine = open_database(f"sqlite:///{tmp_path / 'status.db'}")
    migrate(engine)
    records = dlq.read_dlq(kafka)
    assert [r.id for r in records] == ["billing.dlq:0:0", "billing.dlq:0:1"]
    write_batch(engine, [Consumed.of(_Record(r)) for r in records], {})

    client = console_client(engine, bootstrap=kafka, replay_limit=3)
    answer = client.post("/api/dead-letters/billing.dlq:0:0/replay", auth=CAROL)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"replayed": "billing.dlq:0:0", "to": "billing.invoices:0:0", "replay_count": 1}
    (copy,) = dlq.read_dlq(kafka, topic=TOPIC_INVOICES)
    assert (copy.partition, copy.key, copy.value) == (0, b"nordic-hvac:wo:2001", as_bytes(nordic))
    assert (copy.headers["dlq.replay.count"], copy.headers["dlq.replay.source"]) == ("1", "billing.dlq:0:0")

    assert client.post("/api/dead-letters/billing.dlq:0:0/replay", auth=CAROL).status_code == 409  # not twice
    refused = client.post("/api/dead-letters/billing.dlq:0:1/replay", auth=CAROL)
    assert refused.status_code == 409
    assert refused.json()["detail"] == "billing.dlq:0:1 was replayed 3 times (limit 3)"
    assert len(dlq.read_dlq(kafka, topic=TOPIC_INVOICES)) == 1
    outcomes = [(r["target"], r["outcome"]) for r in client.get("/api/audit", auth=CAROL).json()["items"]]
    assert outcomes == [("billing.dlq:0:1", "refused"), ("billing.dlq:0:0", "refused"), ("billing.dlq:0:0", "ok")]
    engine.dispose()


class _Record:
    """A :class:`broker.dlq.DeadLetter` seen as the consumed record it was (for :meth:`Consumed.of`)."""

    def __init__(self, record: dlq.DeadLetter) -> None:
        self.topic, self.partition, self.offset = record.topic, record.partition, record.offset
        self.key, self.value, self.timestamp = record.key, record.value, record.timestamp_ms
        self.headers = [(k, v.encode()) for k, v in record.headers.items()]
