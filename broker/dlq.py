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

:func:`replay` publishes in batches and commits its progress in a consumer group of its own (one
per filter set, see :func:`replay_group`). Before publishing a batch it notes, as committed offsets
of a second group (``<group>-publishing``, :func:`publishing_group`), the batch's first offset in
each DLQ partition it publishes from and the end offset of every partition it may publish to;
once the broker acknowledged every copy, it commits the offsets after the batch in the first
group. An interrupted replay therefore resumes exactly: a DLQ partition whose noted offset is not
behind its committed one was interrupted in a batch, whose records are looked for (by
``dlq.replay.source``) in the target partitions from the noted offsets, and re-published only when
missing. (Offsets, not offset-commit metadata: the embedded Tansu does not keep metadata.)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import time
from collections import Counter
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


#: ``(copy of the environment, secret values read from it)`` of the last :func:`secret_values` call.
_secrets_read: tuple[dict[Any, Any], tuple[str, ...]] | None = None


def secret_values() -> tuple[str, ...]:
    """The values :func:`redact` removes, longest first: those of the environment variables whose name
    looks secret (contains ``secret``, ``token``, ``password``, ``api_key`` or ``apikey``, any case;
    the ``*_env`` settings of the tenant config name such variables) and that have 6 characters or more.

    Read from ``os.environ`` again only when it changed since the last call (it is compared with a
    copy kept from then, which costs well under a microsecond), not on every dead letter.
    """
    global _secrets_read  # noqa: PLW0603 - a one-entry cache
    environ = getattr(os.environ, "_data", None)  # CPython's dict behind os.environ
    cached = _secrets_read
    if cached is not None and isinstance(environ, dict) and cached[0] == environ:
        return cached[1]
    values = {
        value for name, value in os.environ.items() if len(value) >= 6 and _SECRET_ENV_HINT.search(name) is not None
    }
    found = tuple(sorted(values, key=len, reverse=True))  # a secret that contains another is removed whole
    if isinstance(environ, dict):
        _secrets_read = (dict(environ), found)
    return found


def redact(message: str) -> str:
    """Remove bearer tokens and the values of secret-looking environment variables
    (:func:`secret_values`) from ``message``; each becomes ``[REDACTED]``."""
    message = _BEARER.sub(r"\1[REDACTED]", message)
    for value in secret_values():
        if value in message:
            message = message.replace(value, "[REDACTED]")
    return message


#: Seconds between two dead-letter lines at WARNING (:class:`DeadLetterLog`).
DEAD_LETTER_LOG_INTERVAL = 10.0


class DeadLetterLog:
    """The log lines of dead letters, cheap in a burst of them.

    The first dead letter of an interval of ``interval`` seconds is logged at WARNING:
    ``dead-lettered <topic:partition:offset> at <stage>: <error class>: <reason> (key <key>)``, the
    reason redacted (:func:`redact`) and clipped (:func:`clip`). The others of the interval are
    logged the same way at INFO (so nothing is formatted when the logger is at WARNING, the
    default), and counted; when the interval is over (a timer of the running event loop, the next
    dead letter or :meth:`flush`) one WARNING line sums them up: ``dead-lettered <n> more record(s)
    (one INFO line each; all on billing.dlq): <stage>/<error class> <count>, ...; the last:
    <topic:partition:offset> (key <key>)``.
    Every dead letter is on ``billing.dlq`` with its reason and key (``broker dlq list``) and counted
    by ``broker_dead_letters_total{stage,error_class}``.

    ``clock``: seconds, monotonic (tests give their own).
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = DEAD_LETTER_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self._interval_end: float | None = None
        self._more: Counter[str] = Counter()
        self._last: tuple[str, bytes | str | None] = ("", None)
        self._timer: asyncio.TimerHandle | None = None

    def dead_lettered(
        self, where: str, stage: str, error_class: str, reason: object, key: bytes | str | None = None
    ) -> None:
        """Log one dead letter: ``where`` its original ``topic:partition:offset``, ``reason`` the
        exception (or text) naming why, ``key`` the record's key or invoice key (``None``: none)."""
        now = self.clock()
        if self._interval_end is None or now >= self._interval_end:
            self.flush()
            self._interval_end = now + self.interval
            self._log(logging.WARNING, where, stage, error_class, reason, key)
            return
        self._more[f"{stage}/{error_class}"] += 1
        self._last = (where, key)
        if self.logger.isEnabledFor(logging.INFO):
            self._log(logging.INFO, where, stage, error_class, reason, key)
        if self._timer is None:
            with contextlib.suppress(RuntimeError):  # no running loop: summed up by the next call or flush()
                self._timer = asyncio.get_running_loop().call_later(self._interval_end - now, self.flush)

    def flush(self) -> None:
        """Log the WARNING line that sums up the dead letters not logged at WARNING yet (none: nothing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._more:
            return
        counts = ", ".join(f"{what} {n}" for what, n in sorted(self._more.items()))
        self.logger.warning(
            "dead-lettered %d more record(s) (one INFO line each; all on %s): %s; the last: %s%s",
            self._more.total(),
            TOPIC_DLQ,
            counts,
            self._last[0],
            _key_text(self._last[1]),
        )
        self._more.clear()

    def _log(
        self, level: int, where: str, stage: str, error_class: str, reason: object, key: bytes | str | None
    ) -> None:
        self.logger.log(
            level,
            "dead-lettered %s at %s: %s: %s%s",
            where,
            stage,
            error_class,
            clip(redact(str(reason))),
            _key_text(key),
        )


def _key_text(key: bytes | str | None) -> str:
    """`` (key <key>)`` for a log line, clipped (``""`` without a key)."""
    if key is None:
        return ""
    text = key.decode("utf-8", "replace") if isinstance(key, bytes) else key
    return f" (key {clip(text, 200)})"


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


def _consumer(bootstrap: str, group_id: str | None = None, **options: Any) -> KafkaConsumer:
    from kafka import KafkaConsumer

    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=1000,
        **options,
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


def _read_partitions(
    consumer: KafkaConsumer, starts: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
) -> Iterator[ConsumedRecord]:
    """Messages of every partition of ``starts``, read together, from its start offset to at least its
    offset in ``ends`` (exclusive), then whatever more the polls return until one short poll returns
    nothing (as :func:`_read_range`, for the embedded Tansu's low end offsets). Partitions come
    interleaved, each in offset order; their tails cost one short poll in all, not one each."""
    if not starts:
        return
    consumer.assign(list(starts))
    for tp, start in starts.items():
        consumer.seek(tp, start)
    ends = dict(ends)
    while True:
        reached = all(consumer.position(tp) >= ends[tp] for tp in starts)
        batch = consumer.poll(timeout_ms=200 if reached else 1000, max_records=500)
        if batch:
            for msgs in batch.values():
                yield from msgs
            continue
        if reached:
            return
        waiting = [tp for tp in starts if consumer.position(tp) < ends[tp]]
        latest = consumer.end_offsets(waiting)
        for tp in waiting:
            if consumer.position(tp) >= latest[tp]:  # asked for more than exists: one short poll more, then stop
                ends[tp] = consumer.position(tp)


def _published_sources(consumer: KafkaConsumer, starts: Mapping[TopicPartition, int]) -> set[str]:
    """``dlq.replay.source`` of every record of each partition of ``starts`` from its offset there to its end."""
    if not starts:
        return set()
    ends = consumer.end_offsets(list(starts))
    found = (_decode_headers(msg.headers).get("dlq.replay.source") for msg in _read_partitions(consumer, starts, ends))
    return {source for source in found if source}


def publishing_group(group: str) -> str:
    """The consumer group in which :func:`replay` with progress group ``group`` notes the batch it is
    publishing (module docstring): ``<group>-publishing``."""
    return f"{group}-publishing"


#: Records :func:`replay` sends before it waits for their acknowledgements (one batch) ...
REPLAY_BATCH = 2000
#: ... and bytes of their keys and values at most.
REPLAY_BATCH_BYTES = 16 * 1024 * 1024
#: Bytes :func:`replay` fetches from one partition of the DLQ at a time (a larger record comes whole).
REPLAY_FETCH_BYTES = 64 * 1024

#: One record of a :func:`replay` batch: the DLQ partition, the record, what is done with it (``None``:
#: not matching the filter) and the partition it is published to (``None``: not published).
_Planned = tuple["TopicPartition", DeadLetter, ReplayItem | None, "TopicPartition | None"]


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
    batch: int = REPLAY_BATCH,
) -> ReplayReport:
    """Re-publish dead letters matching ``flt`` to their stage's input topic (module docstring), with
    progress in consumer group ``group`` (and :func:`publishing_group`).

    Records whose ``dlq.replay.count`` is ``limit`` or more are refused (progress moves past them).
    ``dry_run`` publishes and commits nothing. ``on_total(n)`` gets the number of records to scan,
    ``on_record(item | None)`` is called once per scanned record (``None`` for non-matching ones)
    once its batch is done, in the order read (offset order within a partition); the report lists
    the items by partition and offset.

    Pipelined: the partitions of ``topic`` are read together and a batch of records (``batch`` at
    most, :data:`REPLAY_BATCH_BYTES` of keys and values at most) is sent without waiting for each
    acknowledgement; then the producer is flushed and the progress of every partition committed at
    once: a batch costs four round trips, not four per record. Each produce batch holds one record,
    as the embedded Tansu needs (it reports a wrong end offset after a multi-record batch, and the
    intake reads ``maintenance.events`` up to its end offsets); the sends still overlap (5 requests
    in flight, each with one record per target partition). Raises the producer's ``KafkaError``
    when a record is not acknowledged: the next run re-publishes only what is missing.
    """
    from kafka import KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    flt = flt or DlqFilter()
    report = ReplayReport(group=group, dry_run=dry_run)
    # small fetches per partition: a poll returns records of several partitions, whose copies mostly
    # go to as many target partitions, which one produce request carries together
    consumer = _consumer(bootstrap, group_id=group, max_partition_fetch_bytes=REPLAY_FETCH_BYTES)
    checker = _consumer(bootstrap)
    marker = None if dry_run else _consumer(bootstrap, group_id=publishing_group(group))
    producer = (
        None
        if dry_run
        else KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,  # explicit: a retried send is not stored twice (kafka-python >= 2.2)
            retries=5,
            batch_size=1,  # one record per batch: the embedded Tansu's end offsets (docstring)
            **tool_options(),
        )
    )
    target_partitions: dict[str, int] = {}
    in_doubt: set[TopicPartition] = set()  # DLQ partitions whose last batch was interrupted
    looked_at: set[TopicPartition] = set()  # target partitions searched for copies of that batch ...
    published: set[str] = set()  # ... and the records they hold copies of

    def partitions_of(name: str) -> int:
        if name not in target_partitions:
            target_partitions[name] = len(_partitions(checker, name))
        return target_partitions[name]

    def stage_targets() -> list[TopicPartition]:
        """Every partition of the stages' input topics."""
        names = sorted(set(STAGE_INPUT_TOPICS.values()))
        return [TopicPartition(name, p) for name in names for p in range(partitions_of(name))]

    def look_for_copies(targets: Iterable[TopicPartition]) -> None:
        """Add to ``published`` the copies in ``targets`` since the interrupted batch noted their end offsets."""
        assert marker is not None  # not a dry run
        todo = [t for t in targets if t not in looked_at]
        looked_at.update(todo)
        noted = {t: marker.committed(t) for t in todo}
        published.update(_published_sources(checker, {t: o for t, o in noted.items() if o is not None}))

    def plan(tp: TopicPartition, record: DeadLetter) -> tuple[ReplayItem, TopicPartition | None]:
        """What to do with one matching record: its item, and the partition to publish it to (or ``None``)."""
        target = record.target_topic
        if record.truncated:
            reason = (
                f"a bounded copy of a {record.headers.get('dlq.value.size', '?')}-byte value: "
                f"the original is at {record.original}"
            )
            return ReplayItem(record, "refused", target, reason), None
        if record.replay_count >= limit:
            return ReplayItem(record, "refused", target, f"replayed {record.replay_count} times (limit {limit})"), None
        if dry_run:
            return ReplayItem(record, "would replay", target), None
        n = partitions_of(target)
        try:
            original = int(record.headers.get("dlq.partition", ""))
        except ValueError:
            original = -1
        partition = original
        if not 0 <= original < n:  # the original partition no longer exists: where the key goes
            partition = key_partition(record.key, n) if record.key is not None else 0
        target_tp = TopicPartition(target, partition)
        if tp in in_doubt:
            look_for_copies([target_tp])
            if record.id in published:
                return ReplayItem(record, "resumed", target, "already re-published before the interruption"), None
        return ReplayItem(record, "replayed", target), target_tp

    def finish(planned: list[_Planned]) -> None:
        """Publish one batch, wait for its acknowledgements, commit past it, report it."""
        rows: dict[TopicPartition, list[_Planned]] = {}
        for row in planned:
            rows.setdefault(row[0], []).append(row)
        sends = [(record, target_tp) for _, record, _, target_tp in planned if target_tp is not None]
        if sends:
            assert producer is not None  # not a dry run
            assert marker is not None
            targets = sorted({target_tp for _, target_tp in sends} | set(stage_targets()))
            notes = {t: OffsetAndMetadata(offset, "", -1) for t, offset in checker.end_offsets(targets).items()}
            for tp, of_tp in rows.items():
                if any(target_tp is not None for _, _, _, target_tp in of_tp):
                    notes[tp] = OffsetAndMetadata(of_tp[0][1].offset, "", -1)
            marker.commit(notes)  # "publishing": from where, and from where in each target partition
            futures = [
                producer.send(
                    target_tp.topic,
                    key=record.key,
                    value=record.value,
                    headers=_replay_headers(record),
                    partition=target_tp.partition,
                )
                for record, target_tp in sends
            ]
            producer.flush(timeout=60)
            for future in futures:
                future.get(timeout=30)  # raises the send's error
        if not dry_run:
            consumer.commit({tp: OffsetAndMetadata(of_tp[-1][1].offset + 1, "", -1) for tp, of_tp in rows.items()})
        for _, _, item, _ in planned:
            if item is not None:
                report.items.append(item)
            if on_record:
                on_record(item)

    try:
        tps = _partitions(consumer, topic)
        if not tps:
            return report
        begin, end = consumer.beginning_offsets(tps), consumer.end_offsets(tps)
        starts: dict[TopicPartition, int] = {}
        for tp in tps:
            committed = consumer.committed(tp)
            starts[tp] = begin[tp] if committed is None or committed < 0 else max(begin[tp], committed)
            noted = marker.committed(tp) if marker is not None else None
            if noted is not None and (committed is None or noted >= committed):  # not done with that batch
                in_doubt.add(tp)
        if in_doubt:
            look_for_copies(stage_targets())
        if on_total:
            on_total(sum(max(0, end[tp] - starts[tp]) for tp in tps))
        planned: list[_Planned] = []
        size = 0
        for msg in _read_partitions(consumer, starts, end):
            tp = TopicPartition(msg.topic, msg.partition)
            record = _to_dead_letter(msg)
            report.scanned += 1
            item, target_tp = plan(tp, record) if flt.matches(record) else (None, None)
            planned.append((tp, record, item, target_tp))
            if target_tp is not None:
                size += len(record.value or b"") + len(record.key or b"")
            if len(planned) >= batch or size >= REPLAY_BATCH_BYTES:
                finish(planned)
                planned, size = [], 0
        if planned:
            finish(planned)
        report.items.sort(key=lambda item: (item.record.partition, item.record.offset))
        return report
    finally:
        if producer is not None:
            producer.close()
        for client in (consumer, checker, marker):
            if client is not None:
                client.close()
