"""The priced documents of one tenant on ``billing.invoices``, for the economic report.

:func:`read_priced` reads the topic with kafka-python from the beginning of every partition to the
end offsets it finds when it starts (records published meanwhile may or may not be included), with
no consumer group (nothing is committed, any number of reports can run at once), the TLS/SASL
options of :mod:`broker.kafka_security` and the ``KAFKA_CONNECT_TIMEOUT`` bound of the command-line
tools. Records are keyed ``tenant:doc:id`` (the price stage, :mod:`broker.app`): another tenant's are
skipped by key, unread; the tenant's are decoded as
:class:`~connectors.sdk.invoice.Invoice`, :class:`~connectors.sdk.invoice.NotBillable` or
:class:`~connectors.sdk.invoice.DocumentChange` JSON and yielded in offset order per partition
(partitions interleaved), which is what :func:`broker.economics.select_documents` needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from broker.kafka_security import tool_options
from broker.settings import TOPIC_INVOICES
from connectors.sdk.invoice import DocumentChange, Invoice, NotBillable

if TYPE_CHECKING:
    from kafka import KafkaConsumer, TopicPartition

__all__ = ["ReadStats", "TopicNotFoundError", "read_priced"]

_PRICED: TypeAdapter[Invoice | NotBillable | DocumentChange] = TypeAdapter(Invoice | NotBillable | DocumentChange)


class TopicNotFoundError(LookupError):
    """The topic does not exist on the cluster (its message names the topic and the address)."""


@dataclass
class ReadStats:
    """What :func:`read_priced` saw: ``records`` read, ``skipped`` (another tenant's key),
    ``undecodable`` (``"<partition>:<offset>: <why>"`` of the tenant's records that are not priced
    documents), ``end_offsets`` ``{partition: offset}`` read up to."""

    records: int = 0
    skipped: int = 0
    undecodable: list[str] = field(default_factory=list)
    end_offsets: dict[int, int] = field(default_factory=dict)


def read_priced(
    bootstrap: str, tenant_id: str, *, topic: str = TOPIC_INVOICES, stats: ReadStats | None = None
) -> Iterator[Invoice | NotBillable | DocumentChange]:
    """Yield the priced records of ``tenant_id`` on ``topic`` (module docstring), updating ``stats``.

    Raises :class:`TopicNotFoundError` when the topic does not exist, ``ValueError`` naming a bad Kafka
    security variable, and kafka-python's ``NoBrokersAvailable`` / ``KafkaTimeoutError`` when the
    cluster cannot be reached (:func:`broker.kafka.exits_when_kafka_is_unreachable` turns those into
    ``cannot reach Kafka at <address>``).
    """
    from kafka import KafkaConsumer

    stats = stats if stats is not None else ReadStats()
    prefix = f"{tenant_id}:".encode()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        client_id="broker-report",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **tool_options(),
    )
    try:
        partitions = _partitions(consumer, topic)
        if not partitions:
            raise TopicNotFoundError(f"topic {topic} does not exist at {bootstrap}")
        begin, end = consumer.beginning_offsets(partitions), consumer.end_offsets(partitions)
        stats.end_offsets = {tp.partition: end[tp] for tp in partitions}
        for message in _read(consumer, begin, end):
            stats.records += 1
            key = message.key
            if key is not None and not key.startswith(prefix):
                stats.skipped += 1
                continue
            try:
                record = _PRICED.validate_json(message.value)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(part) for part in first["loc"]) or "value"
                stats.undecodable.append(f"{message.partition}:{message.offset}: {where}: {first['msg']}")
                continue
            if record.tenant != tenant_id:  # a keyless record of another tenant
                stats.skipped += 1
                continue
            yield record
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    from kafka import TopicPartition

    found = consumer.partitions_for_topic(topic)
    if found is None:  # metadata not loaded yet
        consumer.topics()
        found = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(found or ())]


def _read(consumer: KafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int]) -> Iterator[Any]:
    """The messages of every partition from its offset in ``starts`` to at least its offset in ``ends``
    (exclusive), then what one more short poll returns: the embedded Tansu can report an end offset
    lower than the real one after a multi-record batch. One poll only, so a topic written to all the
    time still ends the read."""
    consumer.assign(list(starts))
    for tp, offset in starts.items():
        consumer.seek(tp, offset)
    ends = dict(ends)
    while True:
        reached = all(consumer.position(tp) >= ends[tp] for tp in starts)
        batch = consumer.poll(timeout_ms=200 if reached else 1000, max_records=1000)
        for messages in batch.values():
            yield from messages
        if reached:
            return
        if batch:
            continue
        waiting = [tp for tp in starts if consumer.position(tp) < ends[tp]]
        latest = consumer.end_offsets(waiting)
        for tp in waiting:
            if consumer.position(tp) >= latest[tp]:  # asked for more than exists: one short poll more, then stop
                ends[tp] = consumer.position(tp)
