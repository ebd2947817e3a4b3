"""From an invoice's state to exactly one ``billing.payments`` record per change.

**The record** is a CloudEvent 1.0 in structured JSON, keyed by the invoice key (``tenant:doc:id:rN``,
so one invoice's records stay on one partition, in order), in the shape ``broker/statusdb/mapping.py``
reads: ``type`` ``billing.invoice.paid`` / ``.partially_paid`` / ``.voided``, ``time`` (when the billing
system says it changed, else when it was read), ``tenant``, ``subject`` (the invoice key) and ``data``:
``invoice_key``, ``invoice_number``, ``billing_system``, ``external_id``, ``currency``, ``status``, and
the amounts as decimal strings: ``amount`` (this change: paid now less paid before), ``amount_paid``,
``amount_due``, ``total``.

**Exactly one per change.** A state is published only when it differs from the last one published for
the same invoice, where "state" is ``(status, amount_paid)``. The last state per ``(tenant, billing
system, external id)`` is kept in memory and rebuilt at start from ``billing.payments`` itself
(:meth:`Recorder.load`): the topic is the store, so a restart, a redelivered webhook, two webhooks about
one change (Stripe's ``invoice.paid`` and ``invoice.payment_succeeded``) or a poll that re-reads a row
all end as "no change". Webhooks of one invoice are handled one at a time (a lock per invoice), and
the state is remembered only after Kafka acknowledged the record: a record not acknowledged is tried
again by the system's redelivery (the webhook got 503) or the next poll.

The CloudEvent ``id`` is deterministic — the SHA-256 of ``tenant, system, external id, status,
amount_paid`` — so should two processes ever publish the same change (two replicas: run one), a
consumer sees the same id twice and can drop the second.

A state ``open`` (nothing paid) is not published, nor is a document without our marker (not ours).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from broker import metrics
from broker.intake import KafkaPublisher
from broker.kafka_security import client_options
from broker.settings import TOPIC_PAYMENTS
from connectors.sdk.payments import InvoiceState

__all__ = ["EVENT_TYPES", "Recorded", "Recorder", "cloud_event", "event_id"]

log = logging.getLogger(__name__)

#: CloudEvent ``type`` by state (``broker/statusdb/mapping.py`` ``PAYMENT_STATES``, reversed).
EVENT_TYPES = {
    "paid": "billing.invoice.paid",
    "partially_paid": "billing.invoice.partially_paid",
    "voided": "billing.invoice.voided",
}
_STATUS_OF_TYPE = {kind: status for status, kind in EVENT_TYPES.items()}
SOURCE_PREFIX = "/maintenance-billing-broker/payments/"

Identity = tuple[str, str, str]  # (tenant, billing system, external id)


@dataclass(frozen=True)
class Recorded:
    """What :meth:`Recorder.record` did: ``result`` ``published`` (with the CloudEvent ``id`` and ``type``),
    ``duplicate`` (that state was already published), ``ignored`` (not ours, or nothing paid)."""

    result: Literal["published", "duplicate", "ignored"]
    event_id: str | None = None
    type: str | None = None


def event_id(tenant: str, system: str, external_id: str, status: str, amount_paid: Decimal) -> str:
    """The deterministic CloudEvent id of a state: 32 hex digits of SHA-256 over its identity and
    ``(status, amount_paid)`` (``amount_paid`` normalised, so ``10.0`` and ``10.00`` are one state)."""
    text = "\n".join((tenant, system, external_id, status, format(amount_paid.normalize(), "f")))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cloud_event(tenant: str, system: str, state: InvoiceState, paid_before: Decimal, now: datetime) -> dict[str, Any]:
    """The ``billing.payments`` CloudEvent of ``state`` (module docstring); ``paid_before``: ``amount_paid``
    of the last record of this invoice (0 when none); ``now``: the ``time`` when the system gives none."""
    if state.invoice_key is None or state.status not in EVENT_TYPES:
        raise ValueError(f"no record for a {state.status} invoice without our marker: {state.external_id}")
    when = (state.changed_at or now).astimezone(UTC)
    return {
        "specversion": "1.0",
        "id": event_id(tenant, system, state.external_id, state.status, state.amount_paid),
        "source": f"{SOURCE_PREFIX}{system}",
        "type": EVENT_TYPES[state.status],
        "time": when.isoformat().replace("+00:00", "Z"),
        "tenant": tenant,
        "subject": state.invoice_key,
        "datacontenttype": "application/json",
        "data": {
            "invoice_key": state.invoice_key,
            "invoice_number": state.invoice_number,
            "billing_system": system,
            "external_id": state.external_id,
            "currency": state.currency,
            "status": state.status,
            "amount": str(max(state.amount_paid - paid_before, Decimal(0)).quantize(state.amount_paid)),
            "amount_paid": str(state.amount_paid),
            "amount_due": str(state.amount_due),
            "total": str(state.total),
        },
    }


class Recorder:
    """Publishes states that changed (module docstring) through ``publisher`` (a started
    :class:`~broker.intake.KafkaPublisher` on ``billing.payments``); ``clock``: unix seconds."""

    def __init__(self, publisher: KafkaPublisher, clock: Callable[[], float] = time.time):
        self.publisher = publisher
        self.clock = clock
        #: identity -> ``(status, amount_paid)`` of its last record
        self.last: dict[Identity, tuple[str, Decimal]] = {}
        #: ``(tenant, system)`` -> the latest ``time`` of its records (where a poll may resume)
        self.latest: dict[tuple[str, str], datetime] = {}
        self._locks: dict[Identity, asyncio.Lock] = {}

    def remember(self, value: bytes | None) -> None:
        """Take one ``billing.payments`` record's value into :attr:`last` and :attr:`latest` (anything
        unreadable is skipped: the topic may hold records of other writers)."""
        try:
            doc = json.loads(value or b"")
            data = doc["data"]
            identity = (str(doc["tenant"]), str(data["billing_system"]), str(data["external_id"]))
            status = _STATUS_OF_TYPE[doc["type"]]
            self.last[identity] = (status, Decimal(str(data["amount_paid"])))
            when = datetime.fromisoformat(str(doc["time"]).replace("Z", "+00:00"))
        except (ValueError, KeyError, TypeError, InvalidOperation):
            return
        where = identity[:2]
        if when.tzinfo is not None and (where not in self.latest or when > self.latest[where]):
            self.latest[where] = when

    async def load(self, timeout: float = 60.0) -> int:
        """Read ``billing.payments`` from its beginning to its end into :attr:`last`; the records read.
        Raises what aiokafka raises when Kafka cannot be reached; stops reading after ``timeout`` seconds."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.publisher.bootstrap, enable_auto_commit=False, **client_options()
        )
        await consumer.start()
        count = 0
        try:
            partitions = sorted(consumer.partitions_for_topic(TOPIC_PAYMENTS) or ())
            tps = [TopicPartition(TOPIC_PAYMENTS, p) for p in partitions]
            if not tps:
                return 0
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            deadline = time.monotonic() + timeout
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending and time.monotonic() < deadline:
                for tp, records in (await consumer.getmany(*pending, timeout_ms=500)).items():
                    for record in records:
                        self.remember(record.value)
                        count += 1
                    if records and records[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
            return count
        finally:
            await consumer.stop()

    async def record(self, tenant: str, system: str, state: InvoiceState) -> Recorded:
        """Publish ``state`` unless it is not ours, nothing is paid or it is the last state published.
        Raises :class:`~broker.intake.PublishUnavailable` when Kafka did not acknowledge (nothing remembered)."""
        if state.invoice_key is None or state.status not in EVENT_TYPES:
            return Recorded("ignored")
        identity = (tenant, system, state.external_id)
        lock = self._locks.setdefault(identity, asyncio.Lock())
        async with lock:
            before = self.last.get(identity)
            if before is not None and before == (state.status, state.amount_paid):
                return Recorded("duplicate")
            event = cloud_event(
                tenant, system, state, before[1] if before else Decimal(0), datetime.fromtimestamp(self.clock(), UTC)
            )
            value = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
            await self.publisher.publish([(state.invoice_key.encode(), value)])
            self.remember(value)
            metrics.PAYMENT_RECORDS.labels(system, event["type"]).inc()
            log.info(
                "payments: %s %s %s %s (paid %s, due %s)",
                tenant,
                system,
                state.invoice_key,
                event["type"],
                state.amount_paid,
                state.amount_due,
            )
            return Recorded("published", event["id"], event["type"])
