"""What the broker changes in faust-streaming and aiokafka, in one place.

Supported range: faust-streaming ``>=0.11,<0.16`` on aiokafka ``>=0.10,<0.15`` (pinned in
``pyproject.toml``); ``tests/test_faust_compat.py`` has one contract test per hook below, so an
upgrade that moves a private detail fails there first, not in production.

Seek of partitions without a committed offset
---------------------------------------------
While Faust recovers its tables after an assignment, its consumer already fetches the stream
partitions; records fetched while the flow is stopped are dropped and Faust asks the consumer to
seek back to the committed offsets (``Consumer.perform_seek`` -> ``seek_to_committed``). aiokafka's
``AIOKafkaConsumer.seek_to_committed`` only seeks ``if offset and offset > 0``: a partition whose
group has **no** committed offset (a new group, a crash before the first commit, a retry topic
before its first use, an offset expired under ``offsets.retention.minutes``) keeps its position
after the dropped records. Faust then accepts the next record as the first one (its read offset is
``None``) and, once it is acknowledged, commits past everything it never processed: those invoices
are never created, with no outcome and no dead letter.

Sources read (2026-12): aiokafka ``aiokafka/consumer/consumer.py`` ``seek_to_committed`` (the
``if offset and offset > 0`` guard is in every tag from v0.5.0 to v0.14.0, the latest); faust-streaming
``faust/transport/consumer.py`` ``perform_seek`` and ``getmany`` ("getmany called while flow not
active. Seek back to committed offsets"), ``faust/tables/recovery.py`` ``_resume_streams``
(perform_seek after recovery) and ``Consumer._drain_messages`` (a record is accepted when the read
offset is ``None``) — the same in every tag from v0.10.0 to v0.15.2 and in the installed 0.15.3.

:class:`SeekingConsumerThread` fixes it at the root: after the committed-offset seek, every
assigned **stream** partition without a committed offset (``None`` or ``<= 0``) is positioned at
its log-start offset, so the first record an agent sees is the partition's first record.
Changelog partitions are left alone (table recovery positions those itself).
:func:`create_faust_app` builds the app on a transport that uses it.

Records before the seek
-----------------------
After an assignment Faust resumes the stream partitions *before* it seeks them to the committed
offsets (``Recovery._resume_streams``: ``resume_partitions``, then ``await perform_seek()``; the
flow itself may already run for table recovery), so records fetched from an older position reach
the agents first, and ``Consumer._drain_messages`` / ``getmany`` drop records whose hand-over is
cut short when the flow is suspended. Seen in the whole-group crash test: a new owner of a
partition committed at 33 handed records 35..50 to the agents, 33 and 34 having been dropped, then
sought back to 33. An agent that acknowledges 35..50 lets Faust commit past 33 whenever its commit
runs before the seek (``_committed_offset`` is unknown then); the deliver stage's offset check,
anchored on the first record it saw, took the re-fetched 33 and 34 for repeats and stalled.
:class:`SeekingConsumer` keeps where its seek positioned each stream partition (``start_offsets``,
cleared on every assignment and revocation) and :class:`SeekingConsumerThread` passes no fetched
record of a stream partition that is not positioned yet. It checks in the consumer thread, right
as aiokafka hands the records over: the seek runs in that thread too, and aiokafka discards
buffered records that do not match a partition's new position, so what passes was fetched from the
sought position (a check later, in Faust's ``getmany``, let through the rest of a batch fetched
before the seek whenever the seek landed while the batch was being handed to the streams). The
agents see each partition from its start offset on.

Standby seek after a rebalance
------------------------------
Faust's table recovery builds the changelog offsets of its active and standby partitions, recovers
the active ones (awaiting), then seeks the standby partitions to the offsets it built
(``Recovery._restart_recovery`` -> ``_seek_offsets`` -> ``Consumer.seek_wait``). A rebalance in
between replaces the standby set in place (``Recovery.on_rebalance``: ``standby_tps.clear()``, then
``add_standby``, whose offset is ``None`` until the next round builds it) and signals a new round,
but the running round goes on to seek the new set with ``None``: aiokafka raises ``ValueError('Offset
must be a positive integer')`` and the recovery service crashes the worker (seen one run in four
when a worker joins or leaves a group of three: ``tests/test_scale_out.py``). Sources read
(2026-12): faust-streaming ``faust/tables/recovery.py`` ``_restart_recovery``, ``on_rebalance``,
``_add``, ``_seek_offsets`` (0.15.3); aiokafka ``AIOKafkaConsumer.seek``.
:meth:`SeekingConsumerThread._seek_wait` seeks only the partitions it can (an int offset ``>= 0``,
still assigned) and logs the others: they belong to the newer assignment, whose recovery round
builds their offsets and seeks them.

Fetch wait
----------
Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` written into the call
(``AIOKafkaConsumerThread._create_worker_consumer``; no setting reaches it): how long a fetch request
waits at the broker when it has no record to return. With ``fetch_min_bytes=1`` (aiokafka's default,
which Faust keeps) Apache Kafka answers as soon as a record arrives, but a partition that becomes
fetchable while a request is in flight (aiokafka sends one request per broker at a time) waits for
that request. The embedded Tansu seems to answer a waiting fetch only when its wait is over: a probe
measured 377 ms per Kafka hop (p50) at 1,500 ms, 125 ms at 500 ms and 4 ms at 100 ms, and
``make bench-latency`` an event's way through the pipeline's three hops growing by about 1.4 times
the wait (``docs/operations.md``, "Latency").
:meth:`SeekingConsumerThread._create_worker_consumer` lets Faust build the consumer, then sets the
private ``AIOKafkaConsumer._fetch_max_wait_ms`` (read by ``AIOKafkaConsumer.start()``, when it builds
its ``Fetcher``) to :attr:`BrokerApp.fetch_max_wait_ms` (``BROKER_FETCH_MAX_WAIT_MS``). Sources read
(2026-12): faust-streaming ``faust/transport/drivers/aiokafka.py`` (0.15.3), aiokafka
``aiokafka/consumer/consumer.py`` ``__init__`` / ``start`` and ``aiokafka/consumer/fetcher.py``
``_get_actions_per_node`` (0.14.0).

One record per batch
--------------------
The embedded Tansu answers ListOffsets (latest) after a multi-record producer batch with the end
offset of the batch's *first* record: 3 records at offsets 1–3 -> end offset 2, until the next
record lands on that partition; the offsets it assigns and the high watermark of its fetch answers
are right (a probe, ``docs/operations.md`` "Producer batches on the embedded Kafka"). Whatever reads
a partition "to its end offset" then stops early: Faust's table recovery (changelogs: ledger entries
missed after a crash), the DLQ tools, the economics report, test helpers. So on Tansu the broker's
records go one per batch (``BROKER_PRODUCER_MAX_BATCH_SIZE=1``); but a batch of one per partition
in flight makes a busy partition wait one produce round trip per record. Nothing reads the internal
by-client topic to its end (its consumer is the ``price`` agent; the lag gauge is clamped at 0), so
:func:`broker.app.create_app` lets that topic batch (:attr:`BrokerApp.batched_topics`) and
:class:`TopicBatchingProducer` sends every other record as a batch of its own
(``AIOKafkaProducer.create_batch`` / ``send_batch``, public API; ``send_batch`` waits, as ``send``
does, until the partition's previous batch is drained, so a partition's records keep their order).
Hooks: ``Transport.Producer`` (the class the transport builds the app's producer from),
``Producer.send`` (every topic send and changelog write reaches it), ``Producer._ensure_producer``,
``Producer._send_on_produce_message`` and ``Producer.partitioner`` (faust-streaming
``faust/transport/drivers/aiokafka.py`` 0.15.3).

Agent crashes
-------------
Faust passes every exception that escapes an agent to the private ``App._on_agent_error`` (whatever
``on_error`` an agent is given) and restarts the agent. :class:`BrokerApp` counts them first: the
agents catch every per-record error themselves, so the counter must stay 0.

Root logger level
-----------------
``faust.Worker`` sets up logging (mode's ``Worker._setup_logging``: ``dictConfig`` of the given
``logging_config``, the root at ``loglevel``), then calls ``on_setup_root_logger``, where Faust adds
a handler for its terminal progress spinner and sets the **root logger to DEBUG** (unless the level
is below WARNING): every library's debug record would then be created and passed to the handlers,
and ``BROKER_LOG_LEVEL`` would be overridden. :class:`BrokerWorker` has no spinner and sets the
root logger to the configured level there (faust-streaming ``faust/worker.py``
``on_setup_root_logger`` / ``_setup_spinner_handler``, mode ``mode/worker.py`` ``_setup_logging``,
0.15.3).

The deliver stage's hooks
-------------------------
:mod:`broker.deliver_stage` finishes records out of order in its tenant lanes and acknowledges
them in offset order; it reaches into Faust only through these functions:

* :func:`acknowledge` — what ``Stream.ack`` does, synchronously (``event.ack()`` and the private
  sensor hooks ``Stream._on_stream_event_out`` / ``Stream._on_message_out``), so that
  acknowledgements keep their order.
* :func:`start_offset` — where :class:`SeekingConsumer` positioned a partition after its
  assignment (its committed offset, or its log start; "Records before the seek" above), where the
  stage's offset check starts. A record still queued from before the seek is not taken.
* :func:`forget_unacked` — drops an abandoned record from the consumer's private
  ``Consumer._unacked_messages`` (the set ``wait_empty`` waits on during a rebalance).
* :func:`set_current_event` — sets the private context variable ``faust.streams._current_event``
  that tables read to pick the changelog partition, in a lane task that runs outside the stream.
* :func:`hook_flow_control` — wraps ``app.flow_control.suspend`` / ``resume`` on the instance
  (Faust calls them on rebalance and shutdown) so waiting tasks stop at a safe point.
* :func:`set_with_changelog` — ``table[key] = value`` returning the future of the changelog record
  that very write sent (``Table.on_key_set`` calls ``self.send_changelog`` synchronously).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar, cast, overload

import faust
import faust.streams
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.protocol.group import HeartbeatRequest, JoinGroupRequest
from aiokafka.structs import RecordMetadata
from faust.exceptions import ConsumerNotStarted, ProducerSendError
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AgentT, AppT, EventT, Message, StreamT, TableT
from faust.types.tuples import FutureMessage

from broker.metrics import COMMIT_FAILURES, agent_crashed

__all__ = [
    "BrokerApp",
    "BrokerWorker",
    "SeekingConsumer",
    "SeekingConsumerThread",
    "SeekingTransport",
    "TopicBatchingProducer",
    "acknowledge",
    "confirm_membership",
    "create_faust_app",
    "forget_unacked",
    "heartbeat_answer",
    "hook_flow_control",
    "seek_to_committed_or_beginning",
    "set_current_event",
    "set_with_changelog",
    "start_offset",
    "uncommitted_stream_partitions",
]

_AppType = TypeVar("_AppType", bound="BrokerApp")
_V = TypeVar("_V")


class _TopicPartitionLike(Protocol):
    """aiokafka's ``TopicPartition`` or Faust's ``TP``."""

    @property
    def topic(self) -> str: ...


_P = TypeVar("_P", bound=_TopicPartitionLike)


def uncommitted_stream_partitions(committed: Mapping[_P, int | None], changelog_topics: set[str]) -> list[_P]:
    """The partitions of ``committed`` (``{TopicPartition: offset or None}``) that must start at their
    beginning: no committed offset (``None`` or ``<= 0``) and not a table changelog topic."""
    return [
        tp for tp, offset in committed.items() if (offset is None or offset <= 0) and tp.topic not in changelog_topics
    ]


async def seek_to_committed_or_beginning(
    consumer: AIOKafkaConsumer, changelog_topics: set[str]
) -> tuple[Mapping[TopicPartition, int | None], dict[TopicPartition, int]]:
    """Seek ``consumer``'s assigned partitions to their committed offsets, and those without one
    (except changelog topics) to their log-start offsets.

    Every offset is read first and every partition is sought afterwards in one synchronous step (no
    await between the seeks and the return), so a caller that records the positions right after the
    call records them together with the seeks (aiokafka's own ``seek_to_committed`` awaits between
    partitions, and a fetch can land between two seeks).

    Returns ``(committed, started)``: ``{TopicPartition: committed offset or None}`` as
    ``AIOKafkaConsumer.seek_to_committed`` returns it, and ``{TopicPartition: log-start offset}`` of
    the partitions positioned at their beginning. Raises what aiokafka raises.
    """
    committed: dict[TopicPartition, int | None] = {}
    for tp in consumer.assignment():
        committed[tp] = await consumer.committed(tp)
    fresh = uncommitted_stream_partitions(committed, changelog_topics)
    started: dict[TopicPartition, int] = dict(await consumer.beginning_offsets(fresh)) if fresh else {}
    for tp, offset in committed.items():
        if offset and offset > 0:
            consumer.seek(tp, offset)
    for tp, offset in started.items():
        consumer.seek(tp, offset)
    return committed, started


class SeekingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread whose ``seek_to_committed`` also seeks partitions without a
    committed offset to their beginning (module docstring)."""

    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> AIOKafkaConsumer:
        """Faust's worker consumer, with the app's ``fetch_max_wait_ms`` (:attr:`BrokerApp.fetch_max_wait_ms`,
        milliseconds) instead of Faust's 1,500 (module docstring, "Fetch wait"); not started yet."""
        consumer: AIOKafkaConsumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = wait  # hook: read by AIOKafkaConsumer.start() to build its Fetcher
        return consumer

    async def commit(self, offsets: Mapping[TP, int]) -> bool:
        """Commit ``offsets`` as Faust does; a commit that did not happen (Faust returns False after
        logging it: a rebalance took the partitions, or Kafka refused) is counted in
        ``broker_commit_failures_total``."""
        # hooks: Consumer._commit -> ConsumerThread.commit (returns whether it committed)
        committed: bool = await super().commit(offsets)
        if not committed and offsets:
            COMMIT_FAILURES.inc()
        return committed

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, or to its log start when it has none.

        Returns ``{TopicPartition: committed offset or None}`` as aiokafka does (Faust keeps the
        ``None`` ones uncommitted). Raises what aiokafka raises (``IllegalStateError`` ...).
        """
        # hooks: Consumer.seek_to_committed -> ConsumerThread.seek_to_committed, ConsumerThread.call_thread
        result: Mapping[TP, int] = await self.call_thread(self._seek_to_committed_or_beginning)
        return result

    async def _fetch_records(
        self,
        consumer: AIOKafkaConsumer,
        active_partitions: set[TP],
        timeout: float | None = None,
        max_records: int | None = None,
    ) -> Mapping[TopicPartition, list[Any]]:
        """Faust's fetch (hook: ``AIOKafkaConsumerThread.getmany`` runs it in this thread's loop)
        without the records of stream partitions not positioned yet for the current assignment
        (not in ``SeekingConsumer.start_offsets``; module docstring, "Records before the seek").

        The check runs in the thread that also seeks, right after aiokafka hands the records over
        (no await in between), so a record passed here was fetched from the sought position."""
        records = await super()._fetch_records(consumer, active_partitions, timeout=timeout, max_records=max_records)
        positioned = self.consumer.start_offsets  # type: ignore[attr-defined]  # SeekingConsumer
        if not records:
            return records
        changelogs = set(self.consumer.app.tables.changelog_topics)  # hook: TableManager.changelog_topics
        return {tp: batch for tp, batch in records.items() if tp in positioned or tp.topic in changelogs}

    async def _seek_wait(self, consumer: AIOKafkaConsumer, partitions: Mapping[TP, int | None]) -> None:
        """Faust's seek of table changelog partitions (hook: ``Recovery._seek_offsets`` ->
        ``Consumer.seek_wait`` -> this, in the thread) without the partitions it cannot seek: an
        offset that is not an int ``>= 0`` or a partition no longer assigned (module docstring,
        "Standby seek after a rebalance"). Raises what aiokafka raises for the others."""
        assigned = consumer.assignment()
        seekable = {
            tp: offset
            for tp, offset in partitions.items()
            if isinstance(offset, int) and offset >= 0 and TopicPartition(tp.topic, tp.partition) in assigned
        }
        if len(seekable) < len(partitions):
            skipped = sorted(f"{tp.topic}[{tp.partition}]@{partitions[tp]}" for tp in partitions if tp not in seekable)
            self.log.info("Not seeking partitions of a newer assignment (recovery restarts): %s", ", ".join(skipped))
        await super()._seek_wait(consumer, seekable)

    async def confirm_membership(self) -> bool | None:
        """:func:`heartbeat_answer` for this thread's consumer, run on the thread's event loop
        (hook: ``ServiceThread.thread_loop``) beside whatever the thread is doing: not through
        ``call_thread``, whose calls wait one by one behind the thread's fetches (up to the fetch
        wait each). None when the consumer is not started."""
        try:
            consumer = self._ensure_consumer()  # hook: AIOKafkaConsumerThread._ensure_consumer
        except ConsumerNotStarted:
            return None
        loop = self.thread_loop
        if loop is asyncio.get_running_loop():
            return await heartbeat_answer(consumer)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(heartbeat_answer(consumer), loop))

    async def _seek_to_committed_or_beginning(self) -> Mapping[TopicPartition, int | None]:
        consumer = self._ensure_consumer()  # hook: AIOKafkaConsumerThread._ensure_consumer
        committed, fresh = await seek_to_committed_or_beginning(
            consumer,
            set(self.consumer.app.tables.changelog_topics),  # hook: TableManager.changelog_topics
        )
        changelogs = set(self.consumer.app.tables.changelog_topics)
        positions = {TP(tp.topic, tp.partition): offset for tp, offset in committed.items() if offset and offset > 0}
        positions.update((TP(tp.topic, tp.partition), offset) for tp, offset in fresh.items())
        # one assignment of the whole map (it is read from the event loop's thread)
        self.consumer.start_offsets = {  # type: ignore[attr-defined]  # SeekingConsumer
            tp: offset for tp, offset in positions.items() if tp.topic not in changelogs
        }
        if fresh:
            by_topic: dict[str, list[str]] = {}
            for tp, offset in sorted(fresh.items()):
                by_topic.setdefault(tp.topic, []).append(f"{tp.partition}@{offset}")
            self.log.info(
                "No committed offset, starting at the log start (partition@offset): %s",
                "; ".join(f"{topic} {' '.join(parts)}" for topic, parts in by_topic.items()),
            )
        return committed


#: Heartbeat error codes that say this member is not (or no longer) current: ILLEGAL_GENERATION,
#: UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID (Kafka protocol error codes). REBALANCE_IN_PROGRESS is not
#: among them: the member still owns its partitions until it rejoins (and revokes them) or the
#: rebalance timeout expels it, which a later answer tells; until then nothing is proven (None).
NOT_A_MEMBER = frozenset(
    {
        kafka_errors.IllegalGenerationError.errno,
        kafka_errors.UnknownMemberIdError.errno,
        82,  # FENCED_INSTANCE_ID (static membership; aiokafka has no class for it)
    }
)


async def heartbeat_answer(consumer: AIOKafkaConsumer) -> bool | None:
    """Ask ``consumer``'s group coordinator whether its generation and member id are current: one
    ``Heartbeat`` request with them. True: answered without error; False: answered with a
    :data:`NOT_A_MEMBER` error, or the consumer has no member id (not in a group); None: nothing
    proven (a rebalance in progress, no coordinator known, a network error, another error).

    Hooks: the private ``AIOKafkaConsumer._coordinator`` (``group_id``, ``generation``, ``member_id``,
    ``_send_req``), the request aiokafka's own heartbeat sends (``GroupCoordinator._do_heartbeat``)."""
    coordinator = consumer._coordinator
    member_id = getattr(coordinator, "member_id", None)
    if member_id is None:
        return None  # not a group consumer
    if member_id == JoinGroupRequest.UNKNOWN_MEMBER_ID:
        return False
    request = HeartbeatRequest(coordinator.group_id, coordinator.generation, member_id)
    try:
        response = await coordinator._send_req(request)
    except kafka_errors.KafkaError:
        return None
    if response.error_code == 0:
        return True
    return False if response.error_code in NOT_A_MEMBER else None


class SeekingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka ``Consumer`` running a :class:`SeekingConsumerThread`.

    ``start_offsets`` (``{TP: offset}``): where the last seek to the committed offsets positioned
    each assigned stream partition (its committed offset, or its log start when it has none); empty
    from the moment partitions are assigned or revoked until that seek is done. Records fetched
    before it come from a position the group never committed:
    :meth:`SeekingConsumerThread._fetch_records` does not pass them on (module docstring, "Records
    before the seek")."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.start_offsets: dict[TP, int] = {}

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Forget the start offsets (hook: ``Consumer.on_partitions_revoked``), then Faust's handling."""
        self.start_offsets = {}
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """Forget the start offsets (hook: ``Consumer.on_partitions_assigned``), then Faust's handling."""
        self.start_offsets = {}
        await super().on_partitions_assigned(assigned, generation_id)

    def _new_consumer_thread(self) -> SeekingConsumerThread:
        # hook: Consumer._new_consumer_thread
        return SeekingConsumerThread(self, loop=self.loop, beacon=self.beacon)


def _with_timestamp(sent: asyncio.Future[RecordMetadata], stamp: int) -> asyncio.Future[RecordMetadata]:
    """The record's metadata from its one-record batch's future, with the record's own timestamp
    where the broker answers -1 (CreateTime), as ``AIOKafkaProducer.send``'s future has it."""
    out: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()

    def done(fut: asyncio.Future[RecordMetadata]) -> None:
        if out.done():
            return
        if fut.cancelled():
            out.cancel()
        elif (exc := fut.exception()) is not None:  # also marks the batch's exception retrieved
            out.set_exception(exc)
        else:
            meta = fut.result()
            out.set_result(meta._replace(timestamp=stamp) if meta is not None and meta.timestamp == -1 else meta)

    sent.add_done_callback(done)
    return out


class TopicBatchingProducer(faust_aiokafka.Producer):
    """Faust's aiokafka producer that sends each record of a topic outside the app's
    :attr:`BrokerApp.batched_topics` in a producer batch of its own (module docstring, "One record
    per batch"); when that attribute is ``None`` (the default) every record goes Faust's way."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[RecordMetadata]:
        """Faust's ``Producer.send`` (hook: every ``Topic.send`` / ``send_soon`` and table changelog
        write reaches it): schedules the record, returns the future of its metadata."""
        batched = getattr(self.transport.app, "batched_topics", None)
        if batched is None or topic in batched or transactional_id is not None:
            sent: Awaitable[RecordMetadata] = await super().send(
                topic, key, value, partition, timestamp, headers, transactional_id=transactional_id
            )
            return sent
        if isinstance(headers, Mapping):
            headers = list(headers.items())
        # what Faust's send does first (hook: Producer._send_on_produce_message, the app's signal)
        self._send_on_produce_message(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)
        producer = self._ensure_producer()  # hook: Producer._ensure_producer
        stamp = int((timestamp or time.time()) * 1000)
        try:
            if partition is None:  # what AIOKafkaProducer.send does with the producer's partitioner
                partitions = sorted(await producer.partitions_for(topic))
                partitioner = cast(Callable[..., int], self.partitioner)  # hook: Producer.partitioner (__post_init__)
                partition = partitioner(key, partitions, partitions)
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=stamp, headers=headers or []) is None:
                raise ProducerSendError(f"record not added to its own batch ({topic}[{partition}])")  # cannot happen
            batch.close()  # nothing else joins this batch
            return _with_timestamp(await producer.send_batch(batch, topic, partition=partition), stamp)
        except kafka_errors.KafkaError as exc:
            raise ProducerSendError(f"Error while sending: {exc!r}") from exc


class SeekingTransport(faust_aiokafka.Transport):
    """The ``kafka://`` transport with :class:`SeekingConsumer` and :class:`TopicBatchingProducer`."""

    Consumer = SeekingConsumer  # hook: Transport.Consumer
    Producer = TopicBatchingProducer  # hook: Transport.Producer


class BrokerApp(faust.App):
    """``faust.App`` whose consumer transport is :class:`SeekingTransport` (any ``kafka://`` URL) and
    whose agent crashes are counted (``broker_agent_crashes_total``, :func:`broker.metrics.agent_crashed`)."""

    #: ``fetch_max_wait_ms`` of the worker's consumer (module docstring, "Fetch wait"); None: Faust's 1,500
    fetch_max_wait_ms: int | None = None
    #: The topics whose records may share a producer batch; the others' go one per batch (module
    #: docstring, "One record per batch"). None: every topic batches as the producer settings say.
    batched_topics: frozenset[str] | None = None

    def _new_transport(self) -> faust_aiokafka.Transport:
        # hook: App._new_transport (test_faust_compat::test_hook_app_new_transport)
        return SeekingTransport(self.conf.broker_consumer, self)

    async def _on_agent_error(self, agent: AgentT[Any], exc: BaseException) -> None:
        # hook: App._on_agent_error (test_faust_compat::test_hook_app_on_agent_error)
        await agent_crashed(agent, exc)
        await super()._on_agent_error(agent, exc)


@overload
def create_faust_app(
    app_id: str,
    *,
    app_class: type[_AppType],
    fetch_max_wait_ms: int | None = None,
    batched_topics: frozenset[str] | None = None,
    **settings: Any,
) -> _AppType: ...


@overload
def create_faust_app(
    app_id: str, *, fetch_max_wait_ms: int | None = None, batched_topics: frozenset[str] | None = None, **settings: Any
) -> BrokerApp: ...


def create_faust_app(
    app_id: str,
    *,
    app_class: type[BrokerApp] = BrokerApp,
    fetch_max_wait_ms: int | None = None,
    batched_topics: frozenset[str] | None = None,
    **settings: Any,
) -> BrokerApp:
    """``app_class(app_id, **settings)``: a Faust app with the seek fix (module docstring).

    ``app_class``: :class:`BrokerApp` or a subclass; ``fetch_max_wait_ms``: the worker consumer's
    fetch wait in milliseconds (None: Faust's 1,500; "Fetch wait"); ``batched_topics``: the only
    topics whose records share producer batches (None: all; "One record per batch"); ``settings``:
    Faust app settings."""
    app = app_class(app_id, **settings)
    app.fetch_max_wait_ms = fetch_max_wait_ms
    app.batched_topics = batched_topics
    return app


class BrokerWorker(faust.Worker):
    """``faust.Worker`` without the terminal progress spinner, whose root logger stays at ``loglevel``
    ("Root logger level" in the module docstring); arguments as ``faust.Worker``'s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None  # it also writes terminal escapes to stdout

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        # hook: Worker.on_setup_root_logger (test_logs::test_the_worker_keeps_the_root_logger_at_the_log_level)
        self.spinner = None
        if level:  # 0: no loglevel given, logging_config alone decides
            logger.setLevel(level)


# =========================================================================== the deliver stage's hooks
_CURRENT_EVENT: ContextVar[weakref.ReferenceType[EventT[Any]] | None] | None = getattr(
    faust.streams, "_current_event", None
)


def set_current_event(event: EventT[Any]) -> None:
    """Make ``event`` the current event of this task, as a stream does before yielding it, so that
    table writes go to the changelog partition of ``event``'s partition.

    Hook: the private ``faust.streams._current_event`` (a no-op on a Faust without it, which would
    rely on context copying instead)."""
    if _CURRENT_EVENT is not None:
        _CURRENT_EVENT.set(weakref.ref(event))


def acknowledge(stream: StreamT[Any], event: EventT[Any]) -> bool:
    """What ``Stream.ack(event)`` does, synchronously (so acknowledgements keep their order).

    Returns True when ``stream`` was the last to acknowledge the message. Errors of the sensor
    hooks (``Stream._on_stream_event_out`` / ``_on_message_out``, private) are ignored."""
    last = event.ack()
    msg = event.message
    try:
        stream._on_stream_event_out(msg.tp, msg.offset, stream, event)  # type: ignore[attr-defined]  # private Stream hook
        if last:
            stream._on_message_out(msg.tp, msg.offset, msg)  # type: ignore[attr-defined]  # private Stream hook
    except Exception:  # noqa: BLE001 - sensors only
        pass
    return last


async def confirm_membership(app: AppT) -> bool | None:
    """Whether the app's consumer is a current member of its group (:func:`heartbeat_answer`);
    None when its consumer does not run a :class:`SeekingConsumerThread`."""
    thread = getattr(app.consumer, "_thread", None)  # hook: Consumer._thread
    if not isinstance(thread, SeekingConsumerThread):
        return None
    return await thread.confirm_membership()


def start_offset(app: AppT, tp: TP) -> int | None:
    """Where the consumer positioned ``tp`` for its current assignment: the group's committed offset,
    or the partition's log start when the group has none (:class:`SeekingConsumer`
    ``start_offsets``). ``None`` until that seek is done (module docstring, "Records before the
    seek"); ``None`` too on an app whose consumer is not a :class:`SeekingConsumer`."""
    offsets = getattr(app.consumer, "start_offsets", None)
    return offsets.get(tp) if isinstance(offsets, dict) else None


def forget_unacked(app: AppT, message: Message) -> None:
    """Drop ``message`` from the consumer's set of unacknowledged messages (an abandoned record is
    consumed again by the partition's next owner): shortens the wait of ``Consumer.wait_empty`` on a
    rebalance. Best effort: errors are ignored.

    Hook: the private ``Consumer._unacked_messages``."""
    with contextlib.suppress(Exception):  # private Faust detail; only shortens wait_empty
        app.consumer._unacked_messages.discard(message)  # type: ignore[attr-defined]  # private Consumer set


def hook_flow_control(app: AppT, *, after_suspend: Callable[[], None], before_resume: Callable[[], None]) -> None:
    """Call ``after_suspend()`` after every ``app.flow_control.suspend()`` (Faust suspends the flow
    when partitions are revoked and when the consumer stops) and ``before_resume()`` before every
    ``app.flow_control.resume()`` (after a rebalance, before records flow again).

    Hook: ``suspend`` / ``resume`` replaced on the app's ``FlowControlEvent`` instance (Faust looks
    them up at each call)."""
    fc = app.flow_control
    original_suspend, original_resume = fc.suspend, fc.resume

    def suspend() -> None:
        original_suspend()
        after_suspend()

    def resume() -> None:
        before_resume()
        original_resume()

    fc.suspend = suspend  # type: ignore[method-assign]  # instance-level wrapper of a mode method
    fc.resume = resume  # type: ignore[method-assign]  # instance-level wrapper of a mode method


def set_with_changelog(table: TableT[str, _V], key: str, value: _V) -> FutureMessage | None:
    """``table[key] = value``; returns the future of the changelog record this write sent (``None``
    when Faust sent none), so that the caller can wait for the broker's acknowledgement of this
    record only. Must run inside a stream's event (:func:`set_current_event`) like any table write.

    Hook: ``Table.on_key_set`` calls ``self.send_changelog`` synchronously; it is captured on the
    instance for the duration of the (synchronous) write, so no other task can interleave."""
    sent: list[FutureMessage] = []
    original = table.send_changelog

    def capture(*args: Any, **kwargs: Any) -> FutureMessage:  # send_changelog's own arguments
        fut = original(*args, **kwargs)
        sent.append(fut)
        return fut

    table.send_changelog = capture  # type: ignore[method-assign]  # captured for one synchronous write
    try:
        table[key] = value
    finally:
        del table.send_changelog  # back to the class's method
    return sent[0] if sent else None
