"""Publishing delivery outcomes on ``billing.deliveries`` exactly once per invoice version.

The deliver stage writes an invoice's ``delivered`` ledger entry durably, with a copy of the
outcome record it is about to publish, the ``billing.deliveries`` partition it goes to and a lower
bound of the offset it will get (``scan_from``); then it publishes the record and waits for the
acknowledgement; then it marks the copy published. After a crash anywhere in between, the record
is consumed again, the ledger says ``delivered`` with an unpublished copy, and
:meth:`OutcomeLog.contains` reads that partition from ``scan_from`` to its end: the copy is
published only when it is not there yet. So each ``created`` outcome appears exactly once, whatever
the crash point (``docs/delivery.md``, "What a consumer of billing.deliveries may rely on").

The partition is chosen here (murmur2 of the key, Kafka's default partitioner, the same as every
Kafka client's) and passed explicitly, so the scan reads the partition the record went to.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from faust.types import AppT, TopicT

from broker.kafka_security import client_options

log = logging.getLogger("broker.outcomes")

__all__ = ["OutcomeLog", "bootstrap_of"]


def bootstrap_of(app: AppT) -> str:
    """``host:port,...`` of a Faust app's brokers (``app.conf.broker`` URLs)."""
    return ",".join(f"{url.host}:{url.port or 9092}" for url in app.conf.broker)


class OutcomeLog:
    """The ``billing.deliveries`` topic as the deliver stage uses it.

    ``topic`` is the Faust topic (used to send, through the app's producer), ``bootstrap`` the
    cluster to read from when checking for an outcome published before a crash.
    """

    def __init__(self, topic: TopicT, bootstrap: str):
        self.topic = topic
        self.bootstrap = bootstrap
        self._partitioner = DefaultPartitioner()
        self._partitions: list[int] | None = None
        self._next: dict[int, int] = {}  # partition -> lower bound of the next offset an outcome gets
        self._reader: AIOKafkaConsumer | None = None
        self._start_lock = asyncio.Lock()
        self._scan_lock = asyncio.Lock()  # one scan at a time: a scan re-assigns the reader

    @property
    def name(self) -> str:
        """The topic name."""
        return str(self.topic.get_topic_name())

    async def _consumer(self) -> AIOKafkaConsumer:
        async with self._start_lock:
            if self._reader is None:
                reader = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    **client_options(),
                )
                await reader.start()
                self._reader = reader
        return self._reader

    async def partition_for(self, key: bytes) -> int:
        """The partition of ``key`` (Kafka's default partitioner over the topic's partitions)."""
        if self._partitions is None:
            reader = await self._consumer()
            parts = reader.partitions_for_topic(self.name)
            if not parts:
                await reader.topics()  # refresh metadata
                parts = reader.partitions_for_topic(self.name)
            if not parts:
                raise RuntimeError(f"topic {self.name!r} has no partitions (does it exist?)")
            self._partitions = sorted(parts)
        return int(self._partitioner(key, self._partitions, self._partitions))

    async def low_water(self, partition: int) -> int:
        """An offset no lower than the one the next outcome sent to ``partition`` will get."""
        if partition not in self._next:
            reader = await self._consumer()
            tp = TopicPartition(self.name, partition)
            ends = await reader.end_offsets([tp])
            self._next.setdefault(partition, int(ends[tp]))
        return self._next[partition]

    async def publish(self, key: bytes, value: bytes, partition: int) -> int:
        """Send one outcome to ``partition`` and wait for the broker's acknowledgement; returns its offset."""
        fut = await self.topic.send(key=key, value=value, partition=partition)
        metadata = await fut
        offset = int(metadata.offset)
        if offset + 1 > self._next.get(partition, 0):
            self._next[partition] = offset + 1
        return offset

    async def contains(self, partition: int, start: int, key: bytes, value: bytes) -> bool:
        """True when ``partition`` holds a record with exactly ``key`` and ``value`` at or after ``start``.

        Reads up to the partition's end offset, then one more short poll (the embedded Tansu can
        report an end offset below the real one after a multi-record batch)."""
        async with self._scan_lock:
            return await self._scan(partition, start, key, value)

    async def _scan(self, partition: int, start: int, key: bytes, value: bytes) -> bool:
        reader = await self._consumer()
        tp = TopicPartition(self.name, partition)
        reader.assign([tp])
        reader.seek(tp, max(0, int(start)))
        end = int((await reader.end_offsets([tp]))[tp])
        while True:
            reached = await reader.position(tp) >= end
            batch = await reader.getmany(tp, timeout_ms=200 if reached else 1000, max_records=500)
            for msg in batch.get(tp, []):
                if msg.key == key and msg.value == value:
                    return True
            if reached and not batch.get(tp):
                return False

    async def aclose(self) -> None:
        """Stop the reader (when one was started)."""
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await reader.stop()
