"""Plain Kafka client helpers (kafka-python): topic creation, publishing and reading topics.

The Faust worker has its own (aiokafka) clients; these helpers serve the CLI, the demo and tests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from broker.settings import ALL_TOPICS


def ensure_topics(bootstrap: str, partitions: int, topics: Iterable[str] = ALL_TOPICS, timeout: float = 30.0) -> None:
    """Create ``topics`` with ``partitions`` partitions (replication factor 1) unless they exist.

    Raises ``RuntimeError`` when the cluster cannot be reached within ``timeout`` seconds.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="broker-admin")
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Kafka broker reachable at {bootstrap}") from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    finally:
        admin.close()


def read_events_file(path: str | Path) -> list[bytes]:
    """Read events from NDJSON (one JSON value per line) or a JSON array; return each as raw JSON bytes.

    Lines that are not valid JSON are kept as-is (as bytes) so that the pipeline dead-letters
    them with the reason instead of the publisher silently dropping them.
    """
    text = Path(path).read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return [json.dumps(item).encode() for item in json.loads(stripped)]
    return [line.strip().encode() for line in text.splitlines() if line.strip()]


def event_key(raw: bytes) -> bytes | None:
    """Kafka key of an event: ``tenant:doc:id`` (see ``broker.events``); None when undecodable.

    Undecodable events are still published (keyless) so that they reach the dead-letter topic.
    """
    from broker.events import EventDecodeError, parse_event

    try:
        return parse_event(raw).partition_key.encode()
    except EventDecodeError:
        try:
            obj = json.loads(raw)
            data = obj.get("data") or {}
            ident = data.get("work_order_id") or data.get("scheduled_job_id") or data.get("quote_id")
            if obj.get("tenant") and ident:
                return f"{obj['tenant']}:{ident}".encode()
        except (ValueError, AttributeError):
            pass
        return None


def publish(
    bootstrap: str,
    topic: str,
    records: list[bytes],
    on_sent: Callable[[], None] | None = None,
    keyer: Callable[[bytes], bytes | None] = event_key,
) -> int:
    """Send ``records`` to ``topic`` with acks=all, keyed by ``keyer``; block until all are acknowledged.

    Returns the number of records sent. Raises ``kafka.errors.KafkaError`` if a send fails.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, retries=5)
    try:
        futures = []
        for raw in records:
            fut = producer.send(topic, key=keyer(raw), value=raw)
            if on_sent:
                fut.add_callback(lambda _md: on_sent())
            futures.append(fut)
        producer.flush()
        for fut in futures:
            fut.get(timeout=30)
        return len(futures)
    finally:
        producer.close()


@dataclass
class Record:
    """A consumed Kafka record with decoded headers."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int

    @property
    def id(self) -> str:
        """``topic:partition:offset``, the record's address."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    def json(self):
        return json.loads(self.value)


def iter_topic(
    bootstrap: str, topic: str, *, timeout: float = 2.0, group_id: str | None = None, from_beginning: bool = True
) -> Iterator[Record]:
    """Yield the records of ``topic`` until no new record arrived for ``timeout`` seconds."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(timeout * 1000),
    )
    try:
        for msg in consumer:
            yield Record(
                msg.topic,
                msg.partition,
                msg.offset,
                msg.key,
                msg.value,
                {k: v.decode(errors="replace") for k, v in (msg.headers or [])},
                msg.timestamp,
            )
    finally:
        consumer.close()
