"""Plain Kafka client helpers (kafka-python): topic creation, reading events files and publishing.

The Faust worker has its own (aiokafka) clients; these helpers serve the CLI, the demo and tests.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from broker.kafka_security import connect_timeout, tool_options
from broker.settings import ALL_TOPICS

_F = TypeVar("_F", bound=Callable[..., Any])


def exits_when_kafka_is_unreachable(command: _F) -> _F:
    """Decorate a command-line command that talks to Kafka (its ``bootstrap_servers`` argument): when
    kafka-python cannot reach the cluster it prints ``cannot reach Kafka at <address> within <n> s
    (KAFKA_CONNECT_TIMEOUT)`` to stderr and exits 2, instead of a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        from kafka import errors  # kafka-python 3 has no NoBrokersAvailable: take the ones there are

        unreachable = tuple(
            getattr(errors, name)
            for name in ("KafkaTimeoutError", "NoBrokersAvailable", "KafkaConnectionError")
            if hasattr(errors, name)
        )
        try:
            return command(*args, **kwargs)
        except unreachable as exc:
            where = kwargs.get("bootstrap_servers") or "?"
            print(
                f"error: cannot reach Kafka at {where} within {connect_timeout():g} s (KAFKA_CONNECT_TIMEOUT): "
                f"{type(exc).__name__}: {str(exc)[:200]}",
                file=sys.stderr,
            )
            raise SystemExit(2) from None

    return run  # type: ignore[return-value]


def ensure_topics(bootstrap: str, partitions: int, topics: Iterable[str] = ALL_TOPICS, timeout: float = 30.0) -> None:
    """Create ``topics`` with ``partitions`` partitions (replication factor 1) unless they exist.

    Raises ``RuntimeError`` when the cluster cannot be reached within ``timeout`` seconds.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="broker-admin", **tool_options())
            break
        except KafkaError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Kafka broker reachable at {bootstrap}") from None
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics if t not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


def read_events_file(path: str | Path) -> list[bytes]:
    """Read events from NDJSON (one JSON value per line) or a JSON array; return each as raw JSON bytes.

    Lines that are not valid JSON are kept as-is (as bytes) so that the pipeline dead-letters
    them with the reason instead of the publisher silently dropping them. Raises ``ValueError``
    naming the file and the place when it is not UTF-8, or is a JSON array that does not parse
    (there is no line to keep then).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}: not a JSON array of events: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        if not isinstance(items, list):
            raise ValueError(f"{path}: not a JSON array of events")
        return [json.dumps(item).encode() for item in items]
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

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,  # explicit: a retried send is not stored twice (kafka-python >= 2.2)
        linger_ms=5,
        retries=5,
        **tool_options(),
    )
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
