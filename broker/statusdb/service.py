"""The status view's consumer: every partition of the five topics into the status database.

No consumer group: the view assigns itself every partition of ``billing.invoices``,
``billing.deliveries``, ``billing.payments``, ``billing.dlq`` and ``billing.approvals`` (kafka-python,
manual assignment) and seeks each to the offset stored in the database (``consumer_offsets``; a
partition without one starts at its beginning). Each poll's records are written with their partitions' next offsets in
one transaction (:func:`broker.statusdb.store.write_batch`), so a restart at any moment resumes
exactly after the last batch written: no row is lost or doubled. Topics and partitions are looked up
again every ``refresh_seconds``: ``billing.payments`` and ``billing.approvals`` are read from when they
appear.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from broker.kafka_security import tool_options
from broker.settings import TOPIC_APPROVALS, TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_INVOICES, TOPIC_PAYMENTS
from broker.statusdb.mapping import Consumed
from broker.statusdb.store import OffsetConflictError, load_offsets, write_batch

if TYPE_CHECKING:  # kafka-python has no type information
    from kafka import KafkaConsumer, TopicPartition

log = logging.getLogger("broker.statusdb")

__all__ = ["STATUS_TOPICS", "StatusView"]

#: The topics the status view materialises.
STATUS_TOPICS = (TOPIC_INVOICES, TOPIC_DELIVERIES, TOPIC_PAYMENTS, TOPIC_DLQ, TOPIC_APPROVALS)
#: Seconds between two tries to write a batch while the database is unavailable.
RETRY = 1.0


class StatusView:
    """Reads ``topics`` from ``bootstrap`` into the database of ``engine`` (migrated already).

    ``max_records``: most records per poll, hence per transaction; ``poll_seconds``: how long a poll
    waits for records; ``refresh_seconds``: how often topics and partitions are looked up again.
    ``consumer``: builds the kafka-python consumer (tests; default: :meth:`default_consumer`).
    """

    def __init__(
        self,
        engine: Engine,
        bootstrap: str,
        *,
        topics: Sequence[str] = STATUS_TOPICS,
        max_records: int = 500,
        poll_seconds: float = 0.5,
        refresh_seconds: float = 5.0,
        consumer: Callable[[str], KafkaConsumer] | None = None,
    ):
        self.engine = engine
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.max_records = max_records
        self.poll_seconds = poll_seconds
        self.refresh_seconds = refresh_seconds
        self._make_consumer = consumer or self.default_consumer
        self._consumer: KafkaConsumer | None = None
        self._assigned: set[TopicPartition] = set()
        self._offsets: dict[tuple[str, int], int | None] = {}
        self._refreshed = float("-inf")
        self._stale = False
        #: records written since the start, and batches
        self.written = 0
        self.batches = 0

    @staticmethod
    def default_consumer(bootstrap: str) -> KafkaConsumer:
        """A kafka-python consumer without a group (no commits), TLS/SASL from the environment."""
        from kafka import KafkaConsumer

        return KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # an offset gone with retention: from the oldest record kept
            client_id="broker-status-view",
            **tool_options(),
        )

    def _refresh_assignment(self, consumer: KafkaConsumer) -> None:
        """Assign every partition of the topics that exist; seek new ones to their stored offsets."""
        from kafka import TopicPartition

        consumer.topics()  # fresh metadata: topics and partitions created since
        wanted = {
            TopicPartition(topic, partition)
            for topic in self.topics
            for partition in (consumer.partitions_for_topic(topic) or ())
        }
        self._refreshed = time.monotonic()
        if wanted == self._assigned:
            return
        added = wanted - self._assigned
        consumer.assign(sorted(wanted))
        self._seek(consumer, added)
        log.info("status view: reading %d partitions (%d new)", len(wanted), len(added))
        self._assigned = wanted

    def _seek(self, consumer: KafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Seek ``partitions`` to their stored offsets (the beginning without one); note the stored ones."""
        stored = load_offsets(self.engine)
        for tp in sorted(partitions):
            offset = stored.get((tp.topic, tp.partition))
            self._offsets[(tp.topic, tp.partition)] = offset
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    def step(self) -> int:
        """One poll and its transaction; returns the number of records written (0: none came)."""
        consumer = self._consumer
        if consumer is None:
            consumer = self._consumer = self._make_consumer(self.bootstrap)
        if time.monotonic() - self._refreshed >= self.refresh_seconds:
            self._refresh_assignment(consumer)
        if not self._assigned:
            time.sleep(self.poll_seconds)
            return 0
        if self._stale:  # a batch failed: its records are read again from the stored offsets
            self._seek(consumer, set(self._assigned))
            self._stale = False
        polled: dict[Any, list[Any]] = consumer.poll(
            timeout_ms=int(self.poll_seconds * 1000), max_records=self.max_records
        )
        records = [Consumed.of(msg) for msgs in polled.values() for msg in msgs]
        if not records:
            return 0
        try:
            ends = write_batch(self.engine, records, self._offsets)
        except OffsetConflictError as exc:
            log.warning("status view: %s; reading again from the stored offsets", exc)
            self._seek(consumer, set(self._assigned))
            return 0
        self._offsets.update(ends)
        self.written += len(records)
        self.batches += 1
        return len(records)

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to read of each partition whose offset is known, stored or written (a copy; safe
        to call from another thread)."""
        return {tp: offset for tp, offset in dict(self._offsets).items() if offset is not None}

    def run(self, stop: threading.Event) -> None:
        """:meth:`step` until ``stop`` is set (checked between batches: a batch is written whole), then close.

        While the database is unavailable (``OperationalError``: down, locked) it tries again every
        :data:`RETRY` seconds, from the stored offsets; any other error ends it (a restart resumes)."""
        try:
            while not stop.is_set():
                try:
                    self.step()
                except OperationalError as exc:  # the database is down or locked: the batch was not written
                    first = str(exc).splitlines()[0][:300]
                    log.warning("status view: database unavailable (%s); trying again in %g s", first, RETRY)
                    self._stale = True
                    stop.wait(RETRY)
        finally:
            self.close()

    def close(self) -> None:
        """Close the Kafka consumer (the engine is the caller's)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
