"""Dead-letter records for ``billing.dlq``.

A record keeps the original key and value unchanged and explains the failure in headers, in the
style of Kafka Connect's error context (``errors.deadletterqueue.context.headers.enable``):

======================  =====================================================
header                  value
======================  =====================================================
``dlq.topic``           original topic
``dlq.partition``       original partition
``dlq.offset``          original offset
``dlq.stage``           ``decode``, ``enrich`` or ``deliver``
``dlq.error.class``     taxonomy class (``not_json``, ``invalid``, ``pricing``, ``permanent`` ...;
                        see "Error classes" below)
``dlq.exception.type``  Python exception type
``dlq.message``         human message naming the field and value (secrets redacted)
``dlq.tenant``          tenant, when known
``dlq.connector``       billing system, for the deliver stage
``dlq.http.status``     billing system's HTTP status, when there was one
``dlq.attempts``        delivery attempts made
``dlq.first.failure``   ISO 8601 UTC time of the first failure
``dlq.idempotency.key`` idempotency key used, when any
``dlq.replay.count``    times this record was replayed (0 on first failure)
``dlq.value.truncated`` ``true`` when the value is a bounded copy (below)
``dlq.value.size``      size in bytes of the original value (bounded copies)
``dlq.value.sha256``    SHA-256 (hex) of the original value (bounded copies)
``dlq.key.truncated``   ``true`` when the key is cut (likewise ``dlq.key.size``, ``dlq.key.sha256``)
======================  =====================================================

**Bounded copies.** A value over :data:`DLQ_MAX_VALUE_BYTES` (a record that is itself too large to
process) would not fit on ``billing.dlq`` next to its headers; it is dead-lettered as its first
:data:`DLQ_HEAD_BYTES` bytes with the three ``dlq.value.*`` headers, and a key over
:data:`DLQ_MAX_KEY_BYTES` likewise. The original stays findable on its topic at ``dlq.topic``,
``dlq.partition``, ``dlq.offset`` (until its retention ends); :func:`replay` refuses bounded copies.

Operators inspect and replay it with ``broker dlq list | show | replay`` (:mod:`broker.dlq_cli`);
the functions below do the work. A replayed record goes back to its stage's input topic
(``decode``/``enrich`` -> ``maintenance.events``, ``deliver`` -> ``billing.invoices``; any other
stage -> ``dlq.topic``) with its original key and value, the original partition when it still
exists, and two headers: ``dlq.replay.count`` (previous count + 1, so a record that fails again is
dead-lettered with it, and :func:`replay` refuses it past the limit) and ``dlq.replay.source``
(the DLQ record's ``topic:partition:offset``).

**Error classes.** ``decode``/``enrich``: ``too_large``, ``not_json``, ``not_cloudevent``,
``unknown_type`` (a type neither handled nor in the tenant's ``ignored_event_types``), ``invalid``,
``unknown_tenant``, ``pricing``, ``internal``. ``deliver``: the connector taxonomy
(:mod:`connectors.sdk.errors`: ``permanent``, ``auth``, ``config``, ``uncertain``, ``retryable`` and
``rate_limited`` once parking gives up, ``number_conflict``), ``invalid`` (an unreadable record),
``internal``, and :data:`CONTENT_CONFLICT` (:class:`ContentConflictError`). A cancellation the
tenant's connector cannot make (``capabilities.amendments`` false) is ``permanent``, with the reason.

:func:`replay` commits its progress in a consumer group of its own (one per filter set, see
:func:`replay_group`): before publishing a record it commits that record's offset with metadata
naming the target partition and its end offset, after the broker acknowledged the copy it commits
the next offset. An interrupted replay therefore resumes exactly: a record marked "publishing" is
looked for (by ``dlq.replay.source``) in its target partition and re-published only when missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from broker.kafka_security import tool_options
from broker.settings import TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES

if TYPE_CHECKING:  # kafka-python has no type information: these are Any to the type checker
    from kafka import KafkaConsumer, TopicPartition

#: ``dlq.error.class`` of a correction the tenant refuses (``corrections: reject``).
CONTENT_CONFLICT = "content_conflict"


class ContentConflictError(ValueError):
    """A delivered invoice version arrived again with other content and the tenant's ``corrections``
    policy is ``reject``: dead-lettered as ``content_conflict``, the message naming both totals (what
    the billing system bills and what the new content totals); nothing is changed in the billing system."""

    error_class = CONTENT_CONFLICT


#: Kafka headers as clients give them: ``[(name, bytes)]`` (or a ``{name: value}`` mapping); ``None`` = none.
Headers = Mapping[str, object] | Iterable[tuple[str, object]] | None


class ConsumedRecord(Protocol):
    """What this module reads of a consumed Kafka record (kafka-python's ``ConsumerRecord``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes: ...
    @property
    def headers(self) -> Iterable[tuple[str, object]] | None: ...
    @property
    def timestamp(self) -> int: ...


_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_SECRET_ENV_HINT = re.compile(r"(?i)(secret|token|password|api_key|apikey)")


#: Largest value dead-lettered whole; larger ones become a bounded copy (module docstring).
DLQ_MAX_VALUE_BYTES = 512 * 1024
#: Bytes of the value a bounded copy keeps.
DLQ_HEAD_BYTES = 64 * 1024
#: Largest key dead-lettered whole.
DLQ_MAX_KEY_BYTES = 1024


def clip(text: object, limit: int = 300) -> str:
    """``str(text)`` cut to ``limit`` characters (an ellipsis and the full length mark a cut): for log lines,
    which must never carry a whole record value."""
    value = str(text)
    if len(value) <= limit:
        return value
    return f"{value[:limit]}… ({len(value)} chars)"


def bounded_copy(key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """``(key, value, extra_headers)`` to dead-letter: unchanged when small enough, else the head of an
    oversized value (:data:`DLQ_HEAD_BYTES`) or key (:data:`DLQ_MAX_KEY_BYTES`) with ``dlq.value.*`` /
    ``dlq.key.*`` headers giving the original size and SHA-256."""
    extra: list[tuple[str, bytes]] = []
    if value is not None and len(value) > DLQ_MAX_VALUE_BYTES:
        extra += [
            ("dlq.value.truncated", b"true"),
            ("dlq.value.size", str(len(value)).encode()),
            ("dlq.value.sha256", hashlib.sha256(value).hexdigest().encode()),
        ]
        value = bytes(value[:DLQ_HEAD_BYTES])
    if key is not None and len(key) > DLQ_MAX_KEY_BYTES:
        extra += [
            ("dlq.key.truncated", b"true"),
            ("dlq.key.size", str(len(key)).encode()),
            ("dlq.key.sha256", hashlib.sha256(key).hexdigest().encode()),
        ]
        key = bytes(key[:DLQ_MAX_KEY_BYTES])
    return key, value, extra


def redact(message: str) -> str:
    """Remove bearer tokens and the values of secret-looking environment variables from ``message``."""
    message = _BEARER.sub(r"\1[REDACTED]", message)
    for name, value in os.environ.items():
        if value and len(value) >= 6 and _SECRET_ENV_HINT.search(name) and value in message:
            message = message.replace(value, "[REDACTED]")
    return message


def dlq_headers(
    *,
    topic: str,
    partition: int,
    offset: int,
    stage: str,
    error_class: str,
    exc: BaseException,
    tenant: str | None = None,
    connector: str | None = None,
    http_status: int | None = None,
    attempts: int = 0,
    first_failure: datetime | None = None,
    idempotency_key: str | None = None,
    replay_count: int = 0,
) -> list[tuple[str, bytes]]:
    """Build the header list (``[(name, utf-8 bytes)]``) described in the module docstring."""
    first = (first_failure or datetime.now(UTC)).astimezone(UTC).isoformat()
    values = {
        "dlq.topic": topic,
        "dlq.partition": str(partition),
        "dlq.offset": str(offset),
        "dlq.stage": stage,
        "dlq.error.class": error_class,
        "dlq.exception.type": type(exc).__name__,
        "dlq.message": redact(str(exc))[:2000],
        "dlq.tenant": tenant,
        "dlq.connector": connector,
        "dlq.http.status": None if http_status is None else str(http_status),
        "dlq.attempts": str(attempts),
        "dlq.first.failure": first,
        "dlq.idempotency.key": idempotency_key,
        "dlq.replay.count": str(replay_count),
    }
    return [(k, v.encode()) for k, v in values.items() if v is not None]


def replay_count(headers: Headers) -> int:
    """``dlq.replay.count`` of a record's headers (0 when absent or unreadable)."""
    try:
        return max(0, int(headers_to_dict(headers).get("dlq.replay.count") or 0))
    except (TypeError, ValueError):
        return 0


def headers_to_dict(headers: Headers) -> dict[str, str]:
    """Decode Kafka headers (list of ``(str, bytes)`` or a dict) into ``{name: str}``."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or [])
    return {k: (v.decode() if isinstance(v, (bytes, bytearray)) else str(v)) for k, v in items}


# =========================================================================== reading the DLQ
#: Where a stage's dead letters are replayed to.
STAGE_INPUT_TOPICS = {"decode": TOPIC_EVENTS, "enrich": TOPIC_EVENTS, "deliver": TOPIC_INVOICES}


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class DeadLetter:
    """One ``billing.dlq`` record (decoded headers)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, str]
    timestamp_ms: int

    @property
    def id(self) -> str:
        """``topic:partition:offset`` of the DLQ record (what ``broker dlq show`` takes)."""
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def stage(self) -> str:
        return self.headers.get("dlq.stage", "")

    @property
    def error_class(self) -> str:
        return self.headers.get("dlq.error.class", "")

    @property
    def tenant(self) -> str:
        return self.headers.get("dlq.tenant", "")

    @property
    def connector(self) -> str:
        return self.headers.get("dlq.connector", "")

    @property
    def message(self) -> str:
        return self.headers.get("dlq.message", "")

    @property
    def replay_count(self) -> int:
        return replay_count(self.headers)

    @property
    def truncated(self) -> bool:
        """True when the value is a bounded copy of an oversized original (module docstring)."""
        return self.headers.get("dlq.value.truncated") == "true"

    @property
    def original(self) -> str:
        """``topic:partition:offset`` of the record that failed."""
        h = self.headers
        return f"{h.get('dlq.topic', '?')}:{h.get('dlq.partition', '?')}:{h.get('dlq.offset', '?')}"

    @property
    def dead_lettered_at(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp_ms / 1000.0, UTC)

    @property
    def first_failure(self) -> datetime | None:
        return _parse_time(self.headers.get("dlq.first.failure"))

    @property
    def target_topic(self) -> str:
        """The stage's input topic, where :func:`replay` re-publishes the record."""
        return STAGE_INPUT_TOPICS.get(self.stage) or self.headers.get("dlq.topic") or TOPIC_EVENTS

    def original_json(self) -> Any | None:
        """The original value parsed as JSON (``None`` when it is not JSON)."""
        try:
            return json.loads(self.value)
        except (ValueError, UnicodeDecodeError):
            return None


@dataclass(frozen=True)
class DlqFilter:
    """Which dead letters a command looks at; empty fields match everything.

    ``since``/``until`` compare with the time the record was dead-lettered (its Kafka timestamp).
    """

    tenant: str | None = None
    connector: str | None = None
    error_class: str | None = None
    stage: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, record: DeadLetter) -> bool:
        """Whether ``record`` passes every filter that is set."""
        if self.tenant and record.tenant != self.tenant:
            return False
        if self.connector and record.connector != self.connector:
            return False
        if self.error_class and record.error_class != self.error_class:
            return False
        if self.stage and record.stage != self.stage:
            return False
        at = record.dead_lettered_at
        if self.since and at < self.since:
            return False
        return not (self.until and at > self.until)

    def describe(self) -> str:
        """The filters that are set, as ``name=value`` joined with commas (empty when none)."""
        parts = [f"{k}={getattr(self, k)}" for k in ("tenant", "connector", "error_class", "stage") if getattr(self, k)]
        parts += [f"{k}={getattr(self, k).isoformat()}" for k in ("since", "until") if getattr(self, k)]
        return ",".join(parts)


def _decode_headers(raw: Iterable[tuple[str, object]] | None) -> dict[str, str]:
    return {k: (v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else str(v)) for k, v in (raw or [])}


def _to_dead_letter(msg: ConsumedRecord) -> DeadLetter:
    return DeadLetter(
        msg.topic, msg.partition, msg.offset, msg.key, msg.value, _decode_headers(msg.headers), msg.timestamp
    )


def _consumer(bootstrap: str, group_id: str | None = None) -> KafkaConsumer:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **tool_options(),
    )


def _partitions(consumer: KafkaConsumer, topic: str) -> list[TopicPartition]:
    from kafka import TopicPartition

    parts = consumer.partitions_for_topic(topic)
    if parts is None:  # metadata not loaded yet
        consumer.topics()
        parts = consumer.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts or ())]


def _read_range(consumer: KafkaConsumer, tp: TopicPartition, start: int, end: int) -> Iterator[ConsumedRecord]:
    """Messages of ``tp`` from ``start`` to at least ``end`` (exclusive), then whatever a last short poll returns.

    The extra poll matters with the embedded Tansu, whose reported end offset can be lower than the
    real one after a multi-record batch (see ``BROKER_PRODUCER_MAX_BATCH_SIZE``).
    """
    consumer.assign([tp])
    consumer.seek(tp, start)
    while True:
        reached = consumer.position(tp) >= end
        batch = consumer.poll(timeout_ms=200 if reached else 1000, max_records=500)
        msgs = batch.get(tp, [])
        if msgs:
            yield from msgs
            continue
        if reached:
            return
        if consumer.position(tp) >= consumer.end_offsets([tp])[tp]:
            end = consumer.position(tp)  # asked for more than exists: one short poll more, then stop


def read_dlq(bootstrap: str, flt: DlqFilter | None = None, *, topic: str = TOPIC_DLQ) -> list[DeadLetter]:
    """Every record of ``topic`` (up to its current end) matching ``flt``, by partition then offset."""
    flt = flt or DlqFilter()
    consumer = _consumer(bootstrap)
    try:
        out: list[DeadLetter] = []
        tps = _partitions(consumer, topic)
        if not tps:
            return []
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        for tp in tps:
            for msg in _read_range(consumer, tp, begin[tp], end[tp]):
                record = _to_dead_letter(msg)
                if flt.matches(record):
                    out.append(record)
        return out
    finally:
        consumer.close()


def parse_record_id(record_id: str) -> tuple[str, int, int]:
    """``topic:partition:offset`` -> parts; ``ValueError`` naming the expected form otherwise."""
    parts = record_id.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"record id {record_id!r}: expected TOPIC:PARTITION:OFFSET, e.g. {TOPIC_DLQ}:0:12")
    try:
        return parts[0], int(parts[1]), int(parts[2])
    except ValueError:
        raise ValueError(f"record id {record_id!r}: partition and offset must be integers") from None


def fetch_dead_letter(bootstrap: str, record_id: str) -> DeadLetter | None:
    """The record at ``topic:partition:offset`` (``None`` when there is none)."""
    from kafka import TopicPartition

    topic, partition, offset = parse_record_id(record_id)
    consumer = _consumer(bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        if tp not in _partitions(consumer, topic):
            return None
        for msg in _read_range(consumer, tp, offset, offset + 1):
            if msg.offset == offset:
                return _to_dead_letter(msg)
            if msg.offset > offset:
                break
        return None
    finally:
        consumer.close()


# =========================================================================== replay
@dataclass
class ReplayItem:
    """What :func:`replay` did with one matching dead letter (``target``: the topic it goes back to)."""

    record: DeadLetter
    action: str  # "replayed", "would replay", "refused", "resumed" (found already published), "skipped"
    target: str = ""
    reason: str = ""


@dataclass
class ReplayReport:
    """The outcome of one :func:`replay` run: the consumer group, each matching record, records scanned."""

    group: str
    items: list[ReplayItem] = field(default_factory=list)
    scanned: int = 0
    dry_run: bool = False

    def count(self, action: str) -> int:
        """How many items got ``action``."""
        return sum(1 for item in self.items if item.action == action)


def replay_group(app_id: str, flt: DlqFilter | str) -> str:
    """Consumer group that holds replay progress for this filter set (``<app id>-dlq-replay[-<digest>]``).

    ``flt`` may be the filter options as typed (``"tenant=acme,since=2h"``): a relative time then
    names the same group on every run.
    """
    described = flt if isinstance(flt, str) else flt.describe()
    if not described:
        return f"{app_id}-dlq-replay"
    return f"{app_id}-dlq-replay-{hashlib.sha256(described.encode()).hexdigest()[:12]}"


def key_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as in Java, aiokafka and kafka-python) gives ``key``."""
    from kafka.partitioner.default import murmur2

    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def _replay_headers(record: DeadLetter) -> list[tuple[str, bytes]]:
    return [("dlq.replay.count", str(record.replay_count + 1).encode()), ("dlq.replay.source", record.id.encode())]


def _already_published(consumer: KafkaConsumer, tp: TopicPartition, start: int, source_id: str) -> bool:
    end: int = consumer.end_offsets([tp])[tp]
    for msg in _read_range(consumer, tp, start, end):
        if _decode_headers(msg.headers).get("dlq.replay.source") == source_id:
            return True
    return False


def replay(
    bootstrap: str,
    flt: DlqFilter | None = None,
    *,
    group: str,
    limit: int = 3,
    dry_run: bool = False,
    topic: str = TOPIC_DLQ,
    on_total: Callable[[int], None] | None = None,
    on_record: Callable[[ReplayItem | None], None] | None = None,
) -> ReplayReport:
    """Re-publish dead letters matching ``flt`` to their stage's input topic (module docstring).

    Records whose ``dlq.replay.count`` is ``limit`` or more are refused (progress moves past them).
    ``dry_run`` publishes and commits nothing. ``on_total(n)`` gets the number of records to scan,
    ``on_record(item | None)`` is called once per scanned record (``None`` for non-matching ones).
    """
    from kafka import KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    flt = flt or DlqFilter()
    report = ReplayReport(group=group, dry_run=dry_run)
    consumer = _consumer(bootstrap, group_id=group)
    checker = _consumer(bootstrap)
    producer = (
        None
        if dry_run
        else KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,  # explicit: a retried send is not stored twice (kafka-python >= 2.2)
            retries=5,
            **tool_options(),
        )
    )
    target_partitions: dict[str, int] = {}

    def partitions_of(name: str) -> int:
        if name not in target_partitions:
            target_partitions[name] = len(_partitions(checker, name))
        return target_partitions[name]

    try:
        tps = _partitions(consumer, topic)
        if not tps:
            return report
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        starts: dict[TopicPartition, int] = {}
        pending: dict[TopicPartition, dict[str, Any]] = {}
        for tp in tps:
            committed = consumer.committed(tp, metadata=True)
            start = begin[tp]
            if committed is not None and committed.offset is not None and committed.offset >= 0:
                start = max(start, committed.offset)
                try:
                    meta = json.loads(committed.metadata or "{}")
                except ValueError:
                    meta = {}
                if meta.get("state") == "publishing":
                    pending[tp] = meta
            starts[tp] = start
        if on_total:
            on_total(sum(max(0, end[tp] - starts[tp]) for tp in tps))
        for tp in tps:
            for msg in _read_range(consumer, tp, starts[tp], end[tp]):
                record = _to_dead_letter(msg)
                report.scanned += 1
                if not flt.matches(record):
                    if not dry_run:
                        consumer.commit({tp: OffsetAndMetadata(msg.offset + 1, "", -1)})
                    if on_record:
                        on_record(None)
                    continue
                target = record.target_topic
                if record.truncated:
                    item = ReplayItem(
                        record,
                        "refused",
                        target,
                        f"a bounded copy of a {record.headers.get('dlq.value.size', '?')}-byte value: "
                        f"the original is at {record.original}",
                    )
                    if not dry_run:
                        consumer.commit({tp: OffsetAndMetadata(msg.offset + 1, "", -1)})
                elif record.replay_count >= limit:
                    item = ReplayItem(
                        record, "refused", target, f"replayed {record.replay_count} times (limit {limit})"
                    )
                    if not dry_run:
                        consumer.commit({tp: OffsetAndMetadata(msg.offset + 1, "", -1)})
                elif dry_run:
                    item = ReplayItem(record, "would replay", target)
                else:
                    assert producer is not None  # not a dry run
                    n = partitions_of(target)
                    try:
                        original = int(record.headers.get("dlq.partition", ""))
                    except ValueError:
                        original = -1
                    partition = original if 0 <= original < n else None
                    marker = pending.pop(tp, None)
                    if (
                        marker
                        and marker.get("id") == record.id
                        and marker.get("partition") is not None
                        and _already_published(
                            checker,
                            TopicPartition(target, int(marker["partition"])),
                            int(marker.get("from", 0)),
                            record.id,
                        )
                    ):
                        item = ReplayItem(record, "resumed", target, "already re-published before the interruption")
                    else:
                        if partition is None:
                            partition = key_partition(record.key, n) if record.key is not None else 0
                        target_tp = TopicPartition(target, partition)
                        before = checker.end_offsets([target_tp])[target_tp]
                        consumer.commit(
                            {
                                tp: OffsetAndMetadata(
                                    msg.offset,
                                    json.dumps(
                                        {
                                            "state": "publishing",
                                            "id": record.id,
                                            "target": target,
                                            "partition": partition,
                                            "from": before,
                                        }
                                    ),
                                    -1,
                                )
                            }
                        )
                        producer.send(
                            target,
                            key=record.key,
                            value=record.value,
                            headers=_replay_headers(record),
                            partition=partition,
                        ).get(timeout=30)
                        item = ReplayItem(record, "replayed", target)
                    consumer.commit({tp: OffsetAndMetadata(msg.offset + 1, "", -1)})
                report.items.append(item)
                if on_record:
                    on_record(item)
        return report
    finally:
        if producer is not None:
            producer.close()
        consumer.close()
        checker.close()
