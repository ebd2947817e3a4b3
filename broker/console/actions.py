"""The console's actions on Kafka: replaying one dead letter.

:func:`replay_dead_letter` re-publishes one ``billing.dlq`` record exactly as ``broker dlq replay``
does (:mod:`broker.dlq`): to its stage's input topic (:attr:`broker.dlq.DeadLetter.target_topic`),
with its original key and value, on its original partition when that still exists (else where its
key goes), with ``dlq.replay.count`` (previous + 1) and ``dlq.replay.source`` (the DLQ record's id).
It refuses a bounded copy of an oversized record and a record replayed ``limit`` times already.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.dlq import fetch_dead_letter, key_partition
from broker.kafka_security import tool_options

__all__ = ["ReplayRefusedError", "Replayed", "replay_dead_letter"]


class ReplayRefusedError(ValueError):
    """The dead letter cannot be replayed (a bounded copy, or past the replay limit); the message says why."""


@dataclass(frozen=True)
class Replayed:
    """Where a replayed dead letter went: ``topic``, ``partition`` and ``offset`` of the copy, and the
    ``replay_count`` it carries."""

    source: str
    topic: str
    partition: int
    offset: int
    replay_count: int


def replay_dead_letter(bootstrap: str, record_id: str, *, limit: int) -> Replayed | None:
    """Re-publish the dead letter ``record_id`` (``billing.dlq:P:O``) to its stage's input topic (module
    docstring) and wait for Kafka's acknowledgement (``acks=all``).

    Returns ``None`` when there is no such record on Kafka (any more). Raises
    :class:`ReplayRefusedError` for a bounded copy or a record replayed ``limit`` times, ``ValueError``
    for an id not of the form ``TOPIC:PARTITION:OFFSET``, and kafka-python's ``KafkaError`` when Kafka
    does not take the copy."""
    from kafka import KafkaProducer

    record = fetch_dead_letter(bootstrap, record_id)
    if record is None:
        return None
    if record.truncated:
        raise ReplayRefusedError(
            f"{record_id} is a bounded copy of a {record.headers.get('dlq.value.size', '?')}-byte value: "
            f"the original is at {record.original}"
        )
    if record.replay_count >= limit:
        raise ReplayRefusedError(f"{record_id} was replayed {record.replay_count} times (limit {limit})")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=5, **tool_options())
    try:
        target = record.target_topic
        partitions = sorted(producer.partitions_for(target) or [])
        try:
            partition = int(record.headers.get("dlq.partition", ""))
        except ValueError:
            partition = -1
        if partition not in partitions:
            partition = key_partition(record.key, len(partitions)) if record.key is not None and partitions else 0
        count = record.replay_count + 1
        headers = [("dlq.replay.count", str(count).encode()), ("dlq.replay.source", record.id.encode())]
        future = producer.send(target, key=record.key, value=record.value, headers=headers, partition=partition)
        meta = future.get(timeout=30)
        return Replayed(record.id, target, int(meta.partition), int(meta.offset), count)
    finally:
        producer.close()
