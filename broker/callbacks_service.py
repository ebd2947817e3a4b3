"""``broker callbacks``: every ``billing.payments`` record of a tenant with ``callbacks`` POSTed, signed, to
its maintenance platform (:mod:`broker.callbacks` builds and signs the request; ``docs/payments.md``,
"Callbacks to the platform").

**Consuming.** One aiokafka consumer in the consumer group ``group`` (default ``broker-callbacks``) on
``billing.payments``, offsets committed by hand, a new group starting at the topic's beginning. Each record
is dispatched to its tenant's **lane**: one asyncio task per tenant sends that tenant's records one at a
time, in the order they were fetched (so one invoice's records, on one partition, reach the platform in
order), while the lanes of different tenants run side by side on one pooled HTTP client. Records of
tenants without callbacks, of states the tenant does not want and records that are not payment
CloudEvents are done at once.

**Committing.** A partition's offset is committed up to the first record not yet done (:class:`Offsets`),
every ``commit_seconds``, when partitions are revoked and at the end: an offset is committed only after its
record's callback was answered 2xx or the record was dead-lettered (Kafka acknowledged the DLQ copy). A
crash, a stop or a rebalance in between means the record is sent again: delivery to the platform is
**at least once**, and idempotent by ``Webhook-Id`` (the CloudEvent id) on the platform's side.

**Retries** (:class:`Sender`, tenacity): a network error, a timeout (``timeout_seconds`` for the whole
request), 408, 429 and 5xx are tried again after ``backoff_seconds`` doubled each time up to
``max_backoff_seconds`` (a ``Retry-After`` is waited instead, at most ``max_backoff_seconds``), at most
``max_attempts`` requests; every attempt is signed anew with its own timestamp, under the same
``Webhook-Id``. Any other answer (4xx, 3xx) is permanent. A permanent answer, or attempts used up, puts the
record on ``billing.dlq`` with :func:`broker.dlq.dlq_headers` (stage ``callback``, error class ``permanent``,
``retryable`` or ``rate_limited``, the HTTP status, the attempts, ``Webhook-Id`` as ``dlq.idempotency.key``)
and the lane moves on.

**A slow tenant** holds only its own lane: each of its records takes at most ``max_attempts`` requests of
``timeout_seconds`` and the waits between them, then is dead-lettered. The partitions it shares with other
tenants are not committed past its oldest pending record meanwhile (those records are sent again after a
restart, which ``Webhook-Id`` absorbs), and when ``max_in_flight`` records are fetched but not done, fetching
pauses until some are done.

Metrics: ``broker_callbacks_total{result}`` (``sent``, ``retried``, ``dead_lettered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka.abc import ConsumerRebalanceListener
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from broker import metrics
from broker.callbacks import CallbackTarget, answer_kind, read_record, retry_after_seconds, shown_url, signed_headers
from broker.dlq import bounded_copy, clip, dlq_headers, redact
from broker.kafka_security import client_options
from broker.settings import TOPIC_DLQ, TOPIC_PAYMENTS

__all__ = ["DEFAULT_GROUP", "CallbackFailed", "CallbackService", "Delivery", "Offsets", "Sender"]

log = logging.getLogger("broker.callbacks")

#: The consumer group of ``broker callbacks`` (``--group``).
DEFAULT_GROUP = "broker-callbacks"
#: The ``dlq.stage`` of a callback's dead letter.
STAGE = "callback"
#: Seconds between two tries to put a dead letter on ``billing.dlq`` while Kafka does not acknowledge it.
DLQ_RETRY_SECONDS = 2.0


class CallbackFailed(Exception):  # noqa: N818 - the dead letter's exception type names what happened
    """A callback the platform refused (``error_class`` ``permanent``) or did not take within the attempts
    (``retryable``, ``rate_limited``); ``status``: its last HTTP status (``None``: no answer)."""

    def __init__(self, message: str, *, error_class: str, status: int | None):
        super().__init__(message)
        self.error_class = error_class
        self.status = status


class _TryAgain(Exception):  # noqa: N818 - internal: tenacity retries on it
    def __init__(self, message: str, *, status: int | None, error_class: str, retry_after: float | None = None):
        super().__init__(message)
        self.status = status
        self.error_class = error_class
        self.retry_after = retry_after


@dataclass(frozen=True)
class Delivery:
    """How one record's callback ended: ``sent`` (``failure`` None) or failed (``failure`` says why, to be
    dead-lettered); ``attempts``: requests made; ``first_failure``: when the first attempt failed (UTC)."""

    attempts: int
    failure: CallbackFailed | None = None
    first_failure: datetime | None = None

    @property
    def sent(self) -> bool:
        """Whether the platform answered 2xx."""
        return self.failure is None


class Sender:
    """Sends one record's callback with its retries (module docstring) on ``client`` (an
    ``httpx.AsyncClient``; redirects are not followed). ``clock``: unix seconds (the ``Webhook-Timestamp``);
    ``sleep``: how the waits between attempts are slept (tests)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.client = client
        self.clock = clock
        self.sleep = sleep

    async def send(self, target: CallbackTarget, webhook_id: str, body: bytes) -> Delivery:
        """POST ``body`` (the record's value) to ``target`` as ``webhook_id``, trying again as the module
        docstring says; never raises for what the platform or the network does (the :class:`Delivery`
        says it), only ``asyncio.CancelledError`` when stopped."""
        settings = target.settings
        attempts = 0
        first_failure: datetime | None = None

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            asked = exc.retry_after if isinstance(exc, _TryAgain) else None
            backoff = settings.backoff_seconds * 2 ** (state.attempt_number - 1)
            return min(asked if asked is not None else backoff, settings.max_backoff_seconds)

        def before_sleep(state: RetryCallState) -> None:
            metrics.CALLBACKS.labels("retried").inc()
            exc = state.outcome.exception() if state.outcome is not None else None
            log.info(
                "callbacks: %s %s attempt %d failed (%s); again in %.1f s",
                target.tenant,
                webhook_id,
                state.attempt_number,
                exc,
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            stop=stop_after_attempt(settings.max_attempts),
            wait=wait,
            retry=retry_if_exception_type(_TryAgain),
            before_sleep=before_sleep,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    try:
                        await self._attempt(target, webhook_id, body)
                    except (_TryAgain, CallbackFailed):
                        first_failure = first_failure or datetime.now(UTC)
                        raise
        except _TryAgain as exc:
            failure = CallbackFailed(
                f"{exc}; gave up after {attempts} attempt(s)", error_class=exc.error_class, status=exc.status
            )
            return Delivery(attempts, failure, first_failure)
        except CallbackFailed as exc:
            return Delivery(attempts, exc, first_failure)
        return Delivery(attempts)

    async def _attempt(self, target: CallbackTarget, webhook_id: str, body: bytes) -> None:
        """One signed request; raises :class:`_TryAgain` (tried again) or :class:`CallbackFailed` (permanent)."""
        settings = target.settings
        where = shown_url(settings.url)
        headers = signed_headers(target.key, webhook_id, int(self.clock()), body)
        try:
            async with asyncio.timeout(settings.timeout_seconds):
                response = await self.client.post(
                    settings.url, content=body, headers=headers, timeout=settings.timeout_seconds
                )
        except (TimeoutError, httpx.TimeoutException):
            raise _TryAgain(
                f"POST {where}: no answer within {settings.timeout_seconds:g} s", status=None, error_class="retryable"
            ) from None
        except httpx.TransportError as exc:
            raise _TryAgain(
                f"POST {where}: {type(exc).__name__}: {exc}", status=None, error_class="retryable"
            ) from None
        kind = answer_kind(response.status_code)
        if kind == "ok":
            return
        said = clip(" ".join(response.text.split()), 200)
        message = f"POST {where} answered {response.status_code}" + (f": {said}" if said else "")
        if kind == "permanent":
            raise CallbackFailed(message, error_class="permanent", status=response.status_code)
        raise _TryAgain(
            message,
            status=response.status_code,
            error_class="rate_limited" if kind == "rate_limited" else "retryable",
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )


class Offsets:
    """The offsets fetched and not yet committed, per partition (any hashable, e.g. aiokafka's
    ``TopicPartition``), and which of them are done: a partition is committed up to its first record not
    done. Each partition has an epoch, moved on when it is dropped (revoked): a record of an older epoch
    is no longer ours (its new owner reads it again) and is neither sent nor counted."""

    def __init__(self) -> None:
        self._open: dict[Any, dict[int, bool]] = {}  # partition -> {offset: done}, in fetch order
        self._epochs: dict[Any, int] = {}
        self._commit: dict[Any, int] = {}  # partition -> the next offset to commit, not committed yet

    def add(self, tp: Any, offset: int) -> int:
        """Note a fetched record; returns the partition's epoch, to give back to :meth:`done`."""
        self._open.setdefault(tp, {})[offset] = False
        return self._epochs.setdefault(tp, 0)

    def current(self, tp: Any, epoch: int) -> bool:
        """Whether a record of ``tp`` noted in ``epoch`` is still ours."""
        return self._epochs.get(tp) == epoch and tp in self._open

    def done(self, tp: Any, offset: int, epoch: int) -> None:
        """Mark a record done (its callback answered or dead-lettered); moves the partition's committable
        offset past every leading done record. A record of another epoch is ignored."""
        pending = self._open.get(tp)
        if pending is None or self._epochs.get(tp) != epoch or offset not in pending:
            return
        pending[offset] = True
        while pending:
            first = next(iter(pending))
            if not pending[first]:
                break
            del pending[first]
            self._commit[tp] = first + 1

    def take(self, tps: set[Any] | None = None) -> dict[Any, int]:
        """``{partition: next offset}`` to commit (of ``tps`` only, when given), forgotten once taken."""
        taken = {tp: offset for tp, offset in self._commit.items() if tps is None or tp in tps}
        for tp in taken:
            del self._commit[tp]
        return taken

    def drop(self, tps: set[Any]) -> None:
        """Forget ``tps`` (revoked): their open records, their offsets to commit; a new epoch each."""
        for tp in tps:
            self._open.pop(tp, None)
            self._commit.pop(tp, None)
            self._epochs[tp] = self._epochs.get(tp, 0) + 1

    def in_flight(self) -> int:
        """Records fetched and not done, over every partition."""
        return sum(not done for pending in self._open.values() for done in pending.values())


@dataclass(frozen=True)
class _Item:
    tp: Any
    epoch: int
    offset: int
    key: bytes | None
    value: bytes
    webhook_id: str


class CallbackService:
    """The ``broker callbacks`` consumer (module docstring) on Kafka at ``bootstrap``, for ``targets``
    (:func:`broker.callbacks.callback_targets_of`).

    ``group``: the consumer group; ``topic`` / ``dlq_topic``: what is read and where dead letters go
    (tests give their own); ``max_in_flight``: records fetched and not done before fetching pauses;
    ``commit_seconds``: how often done offsets are committed; ``max_batch_size``: the DLQ producer's
    (``BROKER_PRODUCER_MAX_BATCH_SIZE``; the embedded Tansu wants 1, as :class:`broker.intake.KafkaPublisher`);
    ``session_timeout`` / ``rebalance_timeout``: the group's, in seconds (``BROKER_SESSION_TIMEOUT``,
    ``BROKER_REBALANCE_TIMEOUT``, as the worker's);
    ``on_ready``: called with the number of partitions after each assignment (``/readyz``); ``sender``: replaces the
    default :class:`Sender` (tests). After :meth:`run`: ``sent`` and ``dead_lettered`` count callbacks."""

    def __init__(
        self,
        bootstrap: str,
        targets: dict[str, CallbackTarget],
        *,
        group: str = DEFAULT_GROUP,
        topic: str = TOPIC_PAYMENTS,
        dlq_topic: str = TOPIC_DLQ,
        max_in_flight: int = 1000,
        commit_seconds: float = 1.0,
        max_batch_size: int = 16384,
        session_timeout: float = 10.0,
        rebalance_timeout: float = 5.0,
        on_ready: Callable[[int], None] | None = None,
        sender: Sender | None = None,
    ):
        self.bootstrap = bootstrap
        self.targets = targets
        self.group = group
        self.topic = topic
        self.dlq_topic = dlq_topic
        self.max_in_flight = max_in_flight
        self.commit_seconds = commit_seconds
        self.max_batch_size = max_batch_size
        self.session_timeout = session_timeout
        self.rebalance_timeout = rebalance_timeout
        self.on_ready = on_ready
        self._sender = sender
        self.offsets = Offsets()
        self.sent = 0
        self.dead_lettered = 0
        self._lanes: dict[str, tuple[asyncio.Queue[_Item], asyncio.Task[None]]] = {}
        self._progress = asyncio.Event()
        self._consumer: Any = None
        self._producer: Any = None

    def run_blocking(self, stop: threading.Event) -> None:
        """:meth:`run` in a new event loop of this thread, until ``stop`` is set."""
        asyncio.run(self.run(stop))

    async def run(self, stop: threading.Event) -> None:
        """Consume, call back and commit until ``stop`` is set (checked at least every half second); then
        cancel the callbacks under way (their records are sent again by the next run), commit what is done
        and close. Raises what aiokafka raises when Kafka cannot be reached at the start."""
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self._progress = asyncio.Event()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id="broker-callbacks",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=int(self.session_timeout * 1000),
            heartbeat_interval_ms=int(min(1.0, self.session_timeout / 3) * 1000),
            rebalance_timeout_ms=int(self.rebalance_timeout * 1000),
            **client_options(),
        )
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=False,  # a dead letter stored twice is harmless; the embedded Tansu has none
            max_batch_size=self.max_batch_size,
            **client_options(),
        )
        consumer.subscribe([self.topic], listener=_Listener(self))
        await producer.start()
        try:
            await consumer.start()
        except BaseException:
            await producer.stop()
            raise
        self._consumer, self._producer = consumer, producer
        async with httpx.AsyncClient(follow_redirects=False) as client:
            sender = self._sender or Sender(client)
            try:
                await self._consume(consumer, sender, stop)
            finally:
                await self._close_lanes()
                await self._commit()
                await consumer.stop()
                await producer.stop()
                self._consumer = self._producer = None

    async def _consume(self, consumer: Any, sender: Sender, stop: threading.Event) -> None:
        committed_at = time.monotonic()
        while not stop.is_set():
            room = self.max_in_flight - self.offsets.in_flight()
            if room <= 0:
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), 0.5)
            else:
                batches = await consumer.getmany(timeout_ms=500, max_records=room)
                for tp, records in batches.items():
                    for record in records:
                        self._dispatch(tp, record, sender)
            if time.monotonic() - committed_at >= self.commit_seconds:
                await self._commit()
                committed_at = time.monotonic()

    def _dispatch(self, tp: Any, record: Any, sender: Sender) -> None:
        epoch = self.offsets.add(tp, record.offset)
        found = read_record(record.value)
        target = self.targets.get(found.tenant) if found is not None else None
        if found is None or target is None or not target.wants(found.state):
            self.offsets.done(tp, record.offset, epoch)
            return
        lane = self._lanes.get(found.tenant)
        if lane is None:
            queue: asyncio.Queue[_Item] = asyncio.Queue()
            task = asyncio.create_task(self._lane(target, queue, sender), name=f"callbacks-{found.tenant}")
            lane = self._lanes[found.tenant] = (queue, task)
        lane[0].put_nowait(_Item(tp, epoch, record.offset, record.key, record.value, found.event_id))

    async def _lane(self, target: CallbackTarget, queue: asyncio.Queue[_Item], sender: Sender) -> None:
        """One tenant's records, one at a time; never ends but by cancellation."""
        while True:
            item = await queue.get()
            if not self.offsets.current(item.tp, item.epoch):
                continue  # revoked meanwhile: its new owner sends it
            try:
                delivery = await sender.send(target, item.webhook_id, item.value)
            except Exception as exc:  # noqa: BLE001 - a lane never dies: what escapes is dead-lettered as internal
                failure = CallbackFailed(f"{type(exc).__name__}: {exc}", error_class="internal", status=None)
                delivery = Delivery(1, failure, datetime.now(UTC))
            if delivery.sent:
                self.sent += 1
                metrics.CALLBACKS.labels("sent").inc()
                log.debug("callbacks: %s %s sent (%d attempt(s))", target.tenant, item.webhook_id, delivery.attempts)
            else:
                await self._dead_letter(target, item, delivery)
            self.offsets.done(item.tp, item.offset, item.epoch)
            self._progress.set()

    async def _dead_letter(self, target: CallbackTarget, item: _Item, delivery: Delivery) -> None:
        """Put the record on the DLQ (trying again until Kafka acknowledges it)."""
        failure = delivery.failure
        assert failure is not None
        headers = dlq_headers(
            topic=item.tp.topic,
            partition=item.tp.partition,
            offset=item.offset,
            stage=STAGE,
            error_class=failure.error_class,
            exc=failure,
            tenant=target.tenant,
            http_status=failure.status,
            attempts=delivery.attempts,
            first_failure=delivery.first_failure,
            idempotency_key=item.webhook_id,
        )
        key, value, extra = bounded_copy(item.key, item.value)
        while True:
            try:
                await self._producer.send_and_wait(self.dlq_topic, value=value, key=key, headers=headers + extra)
                break
            except Exception as exc:  # noqa: BLE001 - Kafka did not take it: not done until it does
                log.warning("callbacks: cannot dead-letter %s yet: %s", item.webhook_id, clip(redact(str(exc))))
                await asyncio.sleep(DLQ_RETRY_SECONDS)
        self.dead_lettered += 1
        metrics.CALLBACKS.labels("dead_lettered").inc()
        log.warning(
            "callbacks: dead-lettered %s:%d:%d at %s: %s: %s (tenant %s, Webhook-Id %s)",
            item.tp.topic,
            item.tp.partition,
            item.offset,
            STAGE,
            failure.error_class,
            clip(redact(str(failure))),
            target.tenant,
            item.webhook_id,
        )

    async def _close_lanes(self) -> None:
        lanes, self._lanes = list(self._lanes.values()), {}
        for _queue, task in lanes:
            task.cancel()
        for _queue, task in lanes:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _commit(self, tps: set[Any] | None = None) -> None:
        """Commit the done offsets (of ``tps``, when given); a refused commit is logged (the records are
        read and sent again)."""
        offsets = self.offsets.take(tps)
        if not offsets or self._consumer is None:
            return
        try:
            await self._consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - CommitFailedError after a rebalance, Kafka away: sent again later
            log.warning("callbacks: offsets not committed (%s); those records will be sent again", exc)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what is done of revoked partitions and forgets them; tells ``on_ready`` of assignments."""

    def __init__(self, service: CallbackService):
        self.service = service

    async def on_partitions_revoked(self, revoked: Any) -> None:
        tps = set(revoked)
        await self.service._commit(tps)
        self.service.offsets.drop(tps)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("callbacks: %d partition(s) of %s assigned", len(assigned), self.service.topic)
        if self.service.on_ready is not None:
            self.service.on_ready(len(assigned))
