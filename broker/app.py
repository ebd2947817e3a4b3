"""The Faust app: topics, the ``enrich`` agent and the ``deliver`` agent.

::

    maintenance.events ─► enrich ─► <app id>-events-by-client ─► price ─► billing.invoices ─► deliver ─► connector
                            │                                      │                             │
                            └───────────────────► billing.dlq ◄────┴─────────────────────────────┴─► billing.deliveries

* ``maintenance.events``  key ``tenant:doc:id`` (a document's events stay ordered), value a CloudEvent.
* ``<app id>-events-by-client`` (internal) key ``tenant:client``, value the original event; ``enrich``
                          forwards valid events there (origin topic/partition/offset/key in headers,
                          and the validated form ``price`` loads instead of parsing the event again:
                          :func:`broker.events.parse_forwarded`)
                          so the ``price`` agent sees all of a client's events in one partition,
                          next to that client's pricing state: tables ``corrective-allowance``
                          (``tenant:client:YYYY-MM``) and ``approved-quotes`` (``tenant:qt:id``),
                          both changelog-backed (:mod:`broker.pricing.state`).
* ``billing.invoices``    key ``tenant:doc:id``, value an :class:`~connectors.sdk.invoice.Invoice`,
                          :class:`~connectors.sdk.invoice.NotBillable` or (a work order reopened or
                          cancelled, a quote cancelled) :class:`~connectors.sdk.invoice.DocumentChange` (JSON).
* ``billing.deliveries``  key invoice key, value a :class:`~connectors.sdk.invoice.DeliveryOutcome`.
* ``billing.dlq``         original key and value, failure context in headers (:mod:`broker.dlq`).
* ``billing.invoices.retry.N`` (one per ``BROKER_PARK_DELAYS`` entry) invoices parked by ``deliver``
                          (tenant unreachable or rate-limited for long), due time in headers; see
                          :mod:`broker.deliver_stage` and ``docs/delivery.md``.

The agents stay thin: decoding is :func:`broker.events.parse_event`, pricing is the pure
:func:`broker.pricing.price_event` (via :func:`broker.pricing.price_with_state`; a lifecycle change
becomes a :func:`broker.pricing.changes.document_change`), delivery policy is
:class:`broker.delivery.Deliverer`. An event whose type the tenant lists in ``ignored_event_types``
is acknowledged and counted (``broker_events_ignored_total``), never billed nor dead-lettered.
The delivery ledger (table ``delivery-ledger``, changelog-backed, keyed by invoice key) remembers
what was delivered so that a re-published event creates nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP, AgentT, EventT, StreamT, TableT

from broker import metrics
from broker.cloudevents import kafka_structured
from broker.config import BrokerConfig
from broker.deliver_stage import DeliverStage, install_deliver_stage
from broker.delivery import Deliverer, LedgerEntry
from broker.dlq import DeadLetterLog, bounded_copy, clip, dlq_headers, headers_to_dict, replay_count
from broker.events import (
    VALIDATED_HEADER,
    EventDecodeError,
    QuoteCancelled,
    WorkOrderCancelled,
    WorkOrderReopened,
    parse_event,
    parse_forwarded,
    tenant_hint,
    validated_form,
)
from broker.faust_compat import BrokerApp, create_faust_app
from broker.health import Health
from broker.kafka_security import KafkaSecurity
from broker.pricing import ALLOWANCE_TABLE, QUOTES_TABLE, PricingError, price_with_state, pricing_key
from broker.pricing.changes import document_change
from broker.pricing.periodic import PERIODS_TABLE, accumulate, close_period, due_periods, remove_document
from broker.pricing.state import AllowanceRecord
from broker.settings import TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES, Settings
from connectors.sdk.invoice import DocumentChange, Invoice, NotBillable

log = logging.getLogger("broker.app")

__all__ = ["CLOSE_PERIOD", "COMMAND_HEADER", "BillingApp", "create_app", "faust_settings"]

#: Largest event (bytes) forwarded with its validated form (:func:`broker.events.validated_form`); a larger
#: one (up to :data:`broker.events.MAX_EVENT_BYTES`, 512 KiB) is parsed again by ``price``, so that value
#: and form together never approach the 1 MiB a Kafka record may hold by default.
FORM_MAX_EVENT_BYTES = 64 * 1024

#: Header of a command record on the by-client topic, and the command that closes a period (its
#: value: the period key ``tenant:client:period``).
COMMAND_HEADER = "broker.command"
CLOSE_PERIOD = b"close-period"


def _now() -> datetime:
    return datetime.now(UTC)


class BillingApp(BrokerApp):
    """The worker's Faust app (:class:`broker.faust_compat.BrokerApp`) with handles on what
    :func:`create_app` installs, for tests and shutdown."""

    deliverer: Deliverer
    deliver_stage: DeliverStage
    enrich_agent: AgentT[bytes]
    price_agent: AgentT[bytes]
    deliver_agent: AgentT[bytes]
    #: table name -> table; values: allowance records (``corrective-allowance``) or quote JSON text
    pricing_tables: dict[str, TableT[str, Any]]
    ledger: TableT[str, LedgerEntry]


# mode names a Service's logger after its class's module: keep the app's own log records under the
# logger they have always used (``broker.faust_compat``, :class:`BrokerApp`'s).
BillingApp.logger = BrokerApp.logger


def faust_settings(
    settings: Settings, bootstrap: str, *, rebalance_timeout: float | None = None, internal_topics: Iterable[str] = ()
) -> dict[str, Any]:
    """The Faust app settings of a worker (:func:`create_app`) for ``settings`` against ``bootstrap``:
    broker, store, partitions, serializers, group timeouts, producer settings (acks, batch size,
    linger), fetch wait and commit interval, Kafka security. ``tools/bench_pipeline.py`` builds its
    bare Faust baseline with the same settings.

    ``BROKER_PRODUCER_MAX_BATCH_SIZE=1`` (the embedded Tansu's one record per producer batch) is
    confined to the topics that need it: the producer gets the default batch size and only
    ``internal_topics`` (records nothing reads up to their end offset: the by-client topic) batch;
    every other record goes in a batch of its own (:class:`broker.faust_compat.TopicBatchingProducer`)."""
    rebalance_timeout = settings.rebalance_timeout if rebalance_timeout is None else rebalance_timeout
    one_per_batch = settings.producer_max_batch_size == 1
    return dict(
        batched_topics=frozenset(internal_topics) if one_per_batch else None,
        broker=",".join(f"kafka://{b.strip()}" for b in bootstrap.split(",")),
        store=f"{settings.store}://",
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        broker_rebalance_timeout=rebalance_timeout,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(1.0, settings.session_timeout / 3),
        producer_acks=-1,
        producer_max_batch_size=Settings.producer_max_batch_size if one_per_batch else settings.producer_max_batch_size,
        # latency (docs/operations.md, "Latency"): fetch wait, producer linger, commit interval
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        producer_linger=settings.producer_linger_ms / 1000,
        broker_commit_interval=settings.commit_interval,
        **KafkaSecurity.from_env().faust(),
    )


def create_app(
    settings: Settings,
    config: BrokerConfig,
    bootstrap: str,
    *,
    rebalance_timeout: float | None = None,
    health: Health | None = None,
) -> BillingApp:
    """Build the Faust app for ``config`` against the Kafka cluster at ``bootstrap`` (``host:port``).

    Topics are declared with ``settings.topic_partitions`` partitions; create them beforehand with
    :func:`broker.kafka.ensure_topics` so the changelog and source partition counts agree.
    ``rebalance_timeout`` defaults to ``settings.rebalance_timeout``; the group session timeout
    (how soon a crashed worker's partitions move) is ``settings.session_timeout``; the consumer's fetch
    wait, the producer's linger and the commit interval are ``settings``' latency settings. ``health``: told
    once a second whether partitions are assigned, a rebalance or a table recovery is under way
    (``/readyz``, :mod:`broker.health`); the tenants it names broken (``health.broken``) have their
    invoices dead-lettered at delivery without a call.
    """
    by_client_name = f"{settings.app_id}-events-by-client"
    app: BillingApp = create_faust_app(
        settings.app_id,
        app_class=BillingApp,
        **faust_settings(settings, bootstrap, rebalance_timeout=rebalance_timeout, internal_topics=[by_client_name]),
    )
    n = settings.topic_partitions
    events_topic = app.topic(TOPIC_EVENTS, partitions=n, key_type=bytes, value_type=bytes)
    invoices_topic = app.topic(TOPIC_INVOICES, partitions=n, key_type=bytes, value_type=bytes)
    deliveries_topic = app.topic(TOPIC_DELIVERIES, partitions=n, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(TOPIC_DLQ, partitions=n, key_type=bytes, value_type=bytes)
    ledger: TableT[str, LedgerEntry] = app.Table(
        "delivery-ledger", partitions=n, schema=faust.Schema(key_serializer="json", value_serializer="json")
    )

    dead_letters = DeadLetterLog(log)

    async def send_dead_letter(
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        *,
        where: str,
        stage: str,
        error_class: str,
        exc: BaseException,
    ) -> None:
        key, value, extra = bounded_copy(key, value)
        await dlq_topic.send(key=key, value=value, headers=headers + extra)
        metrics.DEAD_LETTERS.labels(stage, error_class).inc()
        dead_letters.dead_lettered(where, stage, error_class, exc, key)

    async def dead_letter(
        event: EventT[bytes], stage: str, error_class: str, exc: BaseException, *, tenant: str | None = None
    ) -> None:
        """Dead-letter a consumed record (``tenant``: default the one the record names, if any)."""
        msg = event.message
        headers = dlq_headers(
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            stage=stage,
            error_class=error_class,
            exc=exc,
            tenant=tenant if tenant is not None else tenant_hint(event.value),
            replay_count=replay_count(event.headers),  # a replayed record failing again keeps its count
        )
        await send_dead_letter(
            event.key,
            event.value,
            headers,
            where=f"{msg.topic}:{msg.partition}:{msg.offset}",
            stage=stage,
            error_class=error_class,
            exc=exc,
        )

    # -- enrich/pricing side: events re-keyed by tenant:client so a client's pricing state
    # (monthly allowance, approved quotes) lives in the partition that sees all of its events.
    by_client_topic = app.topic(by_client_name, partitions=n, internal=True, key_type=bytes, value_type=bytes)
    table_schema: faust.Schema[str, Any] = faust.Schema(key_serializer="json", value_serializer="json")
    allowances: TableT[str, AllowanceRecord] = app.Table(ALLOWANCE_TABLE, partitions=n, schema=table_schema)
    quotes: TableT[str, str] = app.Table(QUOTES_TABLE, partitions=n, schema=table_schema)
    periods: TableT[str, Any] = app.Table(PERIODS_TABLE, partitions=n, schema=table_schema)
    pricing_tables: dict[str, TableT[str, Any]] = {
        ALLOWANCE_TABLE: allowances,
        QUOTES_TABLE: quotes,
        PERIODS_TABLE: periods,
    }

    def _origin(event: EventT[bytes]) -> list[tuple[str, bytes]]:
        msg = event.message
        headers = [
            ("origin.topic", msg.topic.encode()),
            ("origin.partition", str(msg.partition).encode()),
            ("origin.offset", str(msg.offset).encode()),
        ]
        if event.key is not None:
            headers.append(("origin.key", event.key))
        count = replay_count(event.headers)
        if count:  # keep the DLQ replay count of a replayed event (broker dlq replay's loop guard)
            headers.append(("dlq.replay.count", str(count).encode()))
        return headers

    async def dead_letter_forwarded(
        event: EventT[bytes], error_class: str, exc: BaseException, *, tenant: str | None = None
    ) -> None:
        """Dead-letter a record of the by-client topic as the original maintenance.events record."""
        origin = headers_to_dict(event.headers)
        topic = origin.get("origin.topic", event.message.topic)
        try:
            partition = int(origin.get("origin.partition", event.message.partition))
            offset = int(origin.get("origin.offset", event.message.offset))
        except ValueError:
            partition, offset = event.message.partition, event.message.offset
        key = (event.headers or {}).get("origin.key")
        headers = dlq_headers(
            topic=topic,
            partition=partition,
            offset=offset,
            stage="enrich",
            error_class=error_class,
            exc=exc,
            tenant=tenant if tenant is not None else tenant_hint(event.value),
            replay_count=replay_count(event.headers),
        )
        await send_dead_letter(
            key,
            event.value,
            headers,
            where=f"{topic}:{partition}:{offset}",
            stage="enrich",
            error_class=error_class,
            exc=exc,
        )

    def ignored(exc: EventDecodeError, raw: bytes | None) -> str | None:
        """The event type of an ``unknown_type`` record whose tenant ignores it (``None``: dead-letter it)."""
        kind = exc.event_type
        if exc.error_class != "unknown_type" or kind is None:
            return None
        tenant = config.tenants.get(tenant_hint(raw) or "")
        return kind if tenant is not None and kind in tenant.ignored_event_types else None

    async def enrich_one(event: EventT[bytes]) -> None:
        raw = event.value
        try:
            raw = kafka_structured(event.headers, event.value)  # binary mode (ce_* headers) -> structured
            ce = parse_event(raw)
        except EventDecodeError as exc:
            kind = ignored(exc, raw)
            if kind is not None:  # a platform event the tenant does not bill: acknowledged, counted
                metrics.EVENTS_CONSUMED.labels("ignored").inc()
                metrics.EVENTS_IGNORED.labels(kind).inc()
                return
            metrics.EVENTS_CONSUMED.labels("invalid").inc()
            stage = "decode" if exc.error_class in ("not_json", "not_cloudevent", "too_large") else "enrich"
            await dead_letter(event, stage, exc.error_class, exc)
            return
        metrics.EVENTS_CONSUMED.labels(ce.type).inc()
        try:
            config.tenant(ce.tenant)  # unknown tenant: KeyError, dead-lettered below
        except KeyError as exc:
            await dead_letter(
                event, "enrich", "unknown_tenant", ValueError(f"field 'tenant': {exc.args[0]}"), tenant=ce.tenant
            )
            return
        # valid event: price it in the partition of its client (order per work order is kept:
        # all of a document's events have the same client and come from one source partition)
        # (with its validated form, which price loads instead of parsing the event again, unless the
        # event is large: the form about doubles the record, which must stay under Kafka's 1 MiB)
        headers = _origin(event)
        if raw is not None and len(raw) <= FORM_MAX_EVENT_BYTES:
            headers.append((VALIDATED_HEADER, validated_form(ce)))
        await by_client_topic.send(key=pricing_key(ce).encode(), value=raw, headers=headers)

    @app.agent(events_topic)
    async def enrich(stream: StreamT[bytes]) -> None:
        """maintenance.events -> events by client (or billing.dlq)."""
        async for event in stream.events():
            try:
                await enrich_one(event)
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the stream: keep the record in the DLQ
                log.error(
                    "enrich crashed on %s:%s:%s: %s",
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                    clip(repr(exc)),
                )
                await dead_letter(event, "enrich", "internal", exc)

    async def publish(priced: Invoice | NotBillable | DocumentChange) -> None:
        metrics.INVOICES_BUILT.labels(priced.status).inc()
        await invoices_topic.send(key=priced.order_key.encode(), value=priced.model_dump_json().encode())

    async def apply(writes: list[tuple[str, str, Any]]) -> None:
        for table_name, key, value in writes:
            pricing_tables[table_name][key] = value

    async def close_one(key: str) -> None:
        """A close command (sent by :func:`_close_due_periods`): close the period, publish its invoice."""
        tenant_id = key.split(":", 1)[0]
        tenant = config.tenants.get(tenant_id)
        if tenant is None:
            return
        result = close_period(key, tenant, periods, now=_now())
        await apply(result.writes)
        for priced in result.publish:
            await publish(priced)

    async def price_one(event: EventT[bytes]) -> None:
        if (event.headers or {}).get(COMMAND_HEADER) == CLOSE_PERIOD:
            await close_one((event.value or b"").decode("utf-8", "replace"))
            return
        try:  # the validated form enrich attached; the full parse for a record without one
            ce = parse_forwarded(event.value, (event.headers or {}).get(VALIDATED_HEADER))
        except EventDecodeError as exc:  # cannot happen for what enrich forwarded, unless the rules changed
            await dead_letter_forwarded(event, exc.error_class, exc)  # the original event, as consumed
            return
        try:
            tenant = config.tenant(ce.tenant)
            if isinstance(ce, WorkOrderReopened | WorkOrderCancelled | QuoteCancelled):
                if tenant.invoicing_of(ce.data.client_id) != "per_document":
                    # a periodic client's document leaves its period (a closed one is invoiced again)
                    removed = remove_document(ce.partition_key, ce.revision, tenant, periods, now=_now())
                    if removed is not None:
                        await apply(removed.writes)
                        for priced_period in removed.publish:
                            await publish(priced_period)
                        return
                # a lifecycle change: nothing to price, the deliver stage acts on the document's invoice
                await publish(document_change(ce, ce.tenant, tenant))
                return
            result = price_with_state(
                ce,
                ce.tenant,
                tenant,
                allowances=allowances,
                quotes=quotes,
                priced_at=_now(),
            )
        except PricingError as exc:
            await dead_letter_forwarded(event, "pricing", exc, tenant=ce.tenant)
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the stream; keep the event
            log.error("pricing crashed on %s: %s", clip(event.key, 200), clip(repr(exc)))
            await dead_letter_forwarded(event, "internal", exc, tenant=ce.tenant)
            return
        await apply(result.writes)  # only real changes: a redelivery writes nothing
        priced = result.priced
        periodic = tenant.invoicing_of(priced.client_id) != "per_document"
        if periodic and (isinstance(priced, Invoice) or priced.reason_code == "covered_by_contract"):
            kept = accumulate(priced, ce.tenant, tenant, periods, now=_now())  # invoiced when its period closes
            await apply(kept.writes)
            for priced_period in kept.publish:
                await publish(priced_period)
            return
        await publish(priced)

    @app.agent(by_client_topic)
    async def price(stream: StreamT[bytes]) -> None:
        """events by client -> billing.invoices (or billing.dlq); keeps the allowance and quote tables."""
        async for event in stream.events():
            try:
                await price_one(event)
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the stream: keep the record in the DLQ
                log.error("price crashed on %s: %s", clip(event.key, 200), clip(repr(exc)))
                await dead_letter_forwarded(event, "internal", exc)

    partitioner = DefaultPartitioner()
    grace = timedelta(seconds=settings.period_grace_seconds)

    async def _close_due_periods() -> None:
        """Send a close command for each period that is over, in a by-client partition this worker
        consumes, to that partition: the price agent closes it in order with the client's events."""
        assigned = app.consumer.assignment()
        topic = by_client_topic.get_topic_name()
        partitions = list(range(n))
        for key in due_periods(periods, config.tenants, _now(), grace=grace):
            client_key = key.rsplit(":", 1)[0].encode()  # tenant:client, the pricing key of its events
            if TP(topic, partitioner(client_key, partitions, partitions)) not in assigned:
                continue  # a standby copy: its owner closes it
            await by_client_topic.send(key=client_key, value=key.encode(), headers=[(COMMAND_HEADER, CLOSE_PERIOD)])

    app.timer(settings.period_check_seconds)(_close_due_periods)

    # -- deliver side (broker/deliver_stage.py): tenant lanes, in-order acks, retry topics, amendments.
    stage = install_deliver_stage(
        app,
        settings,
        config,
        invoices_topic=invoices_topic,
        deliveries_topic=deliveries_topic,
        dlq_topic=dlq_topic,
        ledger_table=ledger,
        unavailable=health.broken if health is not None else None,
    )
    deliver = stage.deliver_agent
    app.deliverer = stage.deliverer  # for tests and shutdown
    app.deliver_stage = stage

    if health is not None:
        seen = {"rebalances": 0}

        async def _observe_health() -> None:
            count = int(app.rebalancing_count)
            if count > seen["rebalances"]:
                metrics.REBALANCES.inc(count - seen["rebalances"])
                seen["rebalances"] = count
            health.observe(
                assigned=len(app.consumer.assignment()) if app.rebalancing_count else None,
                rebalancing=bool(app.rebalancing),
                recovering=bool(app.in_recovery),
            )

        app.timer(1.0)(_observe_health)

    @app.on_before_shutdown.connect
    async def _close(*_args: Any, **_kwargs: Any) -> None:  # (sender, signal=...) from mode
        dead_letters.flush()
        await stage.aclose()

    app.enrich_agent = enrich
    app.price_agent = price
    app.pricing_tables = pricing_tables
    app.deliver_agent = deliver
    app.ledger = ledger
    return app
