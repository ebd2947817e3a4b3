"""``broker dlq replay`` (:func:`broker.dlq.replay`) in batches: every matching record re-published once,
refused ones not, and an interrupted batch resumed exactly (real Tansu, no mocks of Kafka)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from broker import dlq
from broker.kafka import ensure_topics
from broker.settings import TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES

pytestmark = pytest.mark.integration

#: Dead letters 0..23: even ones from ``enrich`` (back to maintenance.events), odd ones from ``deliver``
#: (back to billing.invoices), each on DLQ partition and original partition ``i % 2``; 5 and 6 were
#: replayed 3 times already (refused), 20..23 are another tenant's (not matching ``tenant=acme-fm``).
N = 24
REFUSED = {5, 6}
OTHER_TENANT = {20, 21, 22, 23}


def _fill(bootstrap: str) -> None:
    from kafka import KafkaProducer

    ensure_topics(bootstrap, 2, [TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=0)
    try:
        for i in range(N):
            headers = dlq.dlq_headers(
                topic=TOPIC_EVENTS if i % 2 == 0 else TOPIC_INVOICES,
                partition=i % 2,
                offset=100 + i,
                stage="enrich" if i % 2 == 0 else "deliver",
                error_class="invalid",
                exc=ValueError(f"bad record {i}"),
                tenant="other" if i in OTHER_TENANT else "acme-fm",
                replay_count=3 if i in REFUSED else 0,
            )
            producer.send(
                TOPIC_DLQ, key=f"k{i}".encode(), value=f'{{"n": {i}}}'.encode(), headers=headers, partition=i % 2
            )
        producer.flush()
    finally:
        producer.close()


def _dlq_id(i: int) -> str:
    """The DLQ record id of dead letter ``i`` (partition ``i % 2``, in order there)."""
    return f"{TOPIC_DLQ}:{i % 2}:{i // 2}"


def _copies(bootstrap: str) -> Counter[str]:
    """How many re-published copies of each dead letter (``dlq.replay.source``) the target topics hold."""
    found: Counter[str] = Counter()
    for topic in (TOPIC_EVENTS, TOPIC_INVOICES):
        for record in dlq.read_dlq(bootstrap, topic=topic):
            found[record.headers["dlq.replay.source"]] += 1
            n = json.loads(record.value)["n"]
            assert record.topic == (TOPIC_EVENTS if n % 2 == 0 else TOPIC_INVOICES) and record.partition == n % 2
            assert record.key == f"k{n}".encode() and record.headers["dlq.replay.count"] == "1"
    return found


def test_replay_in_batches_publishes_each_matching_record_once(kafka):
    _fill(kafka)
    seen: list[str | None] = []
    flt = dlq.DlqFilter(tenant="acme-fm")
    report = dlq.replay(
        kafka,
        flt,
        group="replay-batches",
        batch=5,
        on_record=lambda item: seen.append(None if item is None else item.action),
    )
    matching = [i for i in range(N) if i not in OTHER_TENANT]
    replayed = [i for i in matching if i not in REFUSED]
    assert report.scanned == N and len(seen) == N and seen.count(None) == len(OTHER_TENANT)
    assert [(item.record.id, item.action) for item in report.items] == sorted(
        [(_dlq_id(i), "refused" if i in REFUSED else "replayed") for i in matching],
        key=lambda pair: (int(pair[0].split(":")[1]), int(pair[0].split(":")[2])),
    )
    assert _copies(kafka) == Counter({_dlq_id(i): 1 for i in replayed})

    again = dlq.replay(kafka, flt, group="replay-batches")
    assert (again.scanned, again.items) == (0, [])  # progress committed past every record
    assert _copies(kafka) == Counter({_dlq_id(i): 1 for i in replayed})


def test_an_interrupted_batch_is_resumed_without_publishing_twice(kafka, monkeypatch):
    """A send fails in the middle of a batch: what was sent before is acknowledged (the producer
    flushes on close), the batch stays marked "publishing"; the next run finds those copies and
    publishes only the others."""
    from kafka import KafkaProducer

    _fill(kafka)
    real_send, calls = KafkaProducer.send, []

    def failing_send(self, *args, **kwargs):
        calls.append(kwargs.get("partition"))
        if len(calls) == 4:
            raise RuntimeError("connection lost")
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(KafkaProducer, "send", failing_send)
    with pytest.raises(RuntimeError, match="connection lost"):
        dlq.replay(kafka, group="replay-resume", batch=8)
    monkeypatch.setattr(KafkaProducer, "send", real_send)
    first = _copies(kafka)
    assert sum(first.values()) == 3 and set(first.values()) == {1}

    report = dlq.replay(kafka, group="replay-resume", batch=8)
    resumed = {item.record.id for item in report.items if item.action == "resumed"}
    assert resumed == set(first)
    assert report.count("replayed") == N - len(REFUSED) - 3 and report.count("refused") == len(REFUSED)
    assert _copies(kafka) == Counter({_dlq_id(i): 1 for i in range(N) if i not in REFUSED})
    assert dlq.replay(kafka, group="replay-resume").scanned == 0  # done: nothing in doubt any more
