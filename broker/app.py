"""The Faust app: topics, the ``enrich`` agent and the ``deliver`` agent.

::

    maintenance.events ──► enrich ──► billing.invoices ──► deliver ──► billing system (connector)
                             │                               │
                             └──────────► billing.dlq ◄──────┴──► billing.deliveries

* ``maintenance.events``  key ``tenant:doc:id`` (a document's events stay ordered), value a CloudEvent.
* ``billing.invoices``    key ``tenant:doc:id``, value an :class:`~broker.invoice.Invoice` or
                          :class:`~broker.invoice.NotBillable` (JSON).
* ``billing.deliveries``  key invoice key, value a :class:`~broker.invoice.DeliveryOutcome`.
* ``billing.dlq``         original key and value, failure context in headers (:mod:`broker.dlq`).

The agents stay thin: decoding is :func:`broker.events.parse_event`, pricing is the pure
:func:`broker.pricing.price_event`, delivery policy is :class:`broker.delivery.Deliverer`.
The delivery ledger (table ``delivery-ledger``, changelog-backed, keyed by invoice key) remembers
what was delivered so that a re-published event creates nothing new.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import faust
from pydantic import TypeAdapter, ValidationError

from broker import metrics
from broker.config import BrokerConfig
from broker.delivery import Deliverer
from broker.dlq import dlq_headers
from broker.events import EventDecodeError, parse_event
from broker.invoice import DeliveryOutcome, Invoice, NotBillable
from broker.pricing import PricingError, price_event
from broker.settings import TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES, Settings
from connectors.base import ConnectorError

log = logging.getLogger("broker.app")

_PRICED: TypeAdapter[Invoice | NotBillable] = TypeAdapter(Invoice | NotBillable)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create_app(settings: Settings, config: BrokerConfig, bootstrap: str, *, rebalance_timeout: float = 5.0) -> faust.App:
    """Build the Faust app for ``config`` against the Kafka cluster at ``bootstrap`` (``host:port``).

    Topics are declared with ``settings.topic_partitions`` partitions; create them beforehand with
    :func:`broker.kafka.ensure_topics` so the changelog and source partition counts agree.
    """
    app = faust.App(
        settings.app_id,
        broker=",".join(f"kafka://{b.strip()}" for b in bootstrap.split(",")),
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=settings.topic_partitions,
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        broker_rebalance_timeout=rebalance_timeout,
        broker_session_timeout=max(10.0, rebalance_timeout * 2),
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
    )
    n = settings.topic_partitions
    events_topic = app.topic(TOPIC_EVENTS, partitions=n, key_type=bytes, value_type=bytes)
    invoices_topic = app.topic(TOPIC_INVOICES, partitions=n, key_type=bytes, value_type=bytes)
    deliveries_topic = app.topic(TOPIC_DELIVERIES, partitions=n, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(TOPIC_DLQ, partitions=n, key_type=bytes, value_type=bytes)
    ledger = app.Table("delivery-ledger", partitions=n,
                       schema=faust.Schema(key_serializer="json", value_serializer="json"))
    deliverer = Deliverer(config)
    app.deliverer = deliverer  # for tests and shutdown

    async def dead_letter(event: faust.types.EventT, stage: str, error_class: str, exc: BaseException, **extra) -> None:
        msg = event.message
        headers = dlq_headers(topic=msg.topic, partition=msg.partition, offset=msg.offset, stage=stage,
                              error_class=error_class, exc=exc, **extra)
        await dlq_topic.send(key=event.key, value=event.value, headers=headers)
        metrics.DEAD_LETTERS.labels(stage, error_class).inc()
        log.warning("dead-lettered %s:%s:%s at %s: %s", msg.topic, msg.partition, msg.offset, stage, exc)

    async def record(outcome: DeliveryOutcome) -> None:
        await deliveries_topic.send(key=outcome.invoice_key.encode(), value=outcome.model_dump_json().encode())
        metrics.INVOICES_DELIVERED.labels(outcome.billing_system or "none", outcome.outcome).inc()

    @app.agent(events_topic)
    async def enrich(stream):
        """maintenance.events -> billing.invoices (or billing.dlq)."""
        async for event in stream.events():
            try:
                ce = parse_event(event.value)
            except EventDecodeError as exc:
                metrics.EVENTS_CONSUMED.labels("invalid").inc()
                stage = "decode" if exc.error_class in ("not_json", "not_cloudevent") else "enrich"
                await dead_letter(event, stage, exc.error_class, exc)
                continue
            metrics.EVENTS_CONSUMED.labels(ce.type).inc()
            try:
                tenant = config.tenant(ce.tenant)
            except KeyError as exc:
                await dead_letter(event, "enrich", "unknown_tenant", ValueError(f"field 'tenant': {exc.args[0]}"),
                                  tenant=ce.tenant)
                continue
            try:
                priced = price_event(ce, ce.tenant, tenant, priced_at=_now())
            except PricingError as exc:
                await dead_letter(event, "enrich", "pricing", exc, tenant=ce.tenant)
                continue
            except Exception as exc:  # a bug must not stop the stream; keep the event
                log.exception("pricing crashed on %s", ce.id)
                await dead_letter(event, "enrich", "internal", exc, tenant=ce.tenant)
                continue
            metrics.INVOICES_BUILT.labels(priced.status).inc()
            await invoices_topic.send(key=ce.partition_key.encode(), value=priced.model_dump_json().encode())

    @app.agent(invoices_topic)
    async def deliver(stream):
        """billing.invoices -> billing system; outcome on billing.deliveries (or billing.dlq)."""
        async for event in stream.events():
            try:
                priced = _PRICED.validate_json(event.value)
            except ValidationError as exc:
                await dead_letter(event, "deliver", "invalid", exc)
                continue
            if isinstance(priced, NotBillable):
                ledger[priced.invoice_key] = {"state": "not_billable", "reason": priced.reason, "at": _now().isoformat()}
                await record(DeliveryOutcome(invoice_key=priced.invoice_key, event_id=priced.event_id,
                                             tenant=priced.tenant, billing_system=None, outcome="not_billable",
                                             error=priced.reason, at=_now()))
                continue
            await deliver_one(event, priced)

    async def deliver_one(event, invoice: Invoice) -> None:
        system = invoice.billing_system
        entry = ledger.get(invoice.invoice_key)
        if entry and entry.get("state") == "delivered":
            await record(DeliveryOutcome(
                invoice_key=invoice.invoice_key, event_id=invoice.event_id, tenant=invoice.tenant,
                billing_system=system, outcome="already_delivered", external_id=entry.get("external_id"),
                external_number=entry.get("external_number"), total=invoice.total, currency=invoice.currency,
                attempts=0, at=_now()))
            return
        first_failure = None
        try:
            result = await deliverer.deliver(
                invoice, on_attempt=lambda r: metrics.DELIVERY_ATTEMPTS.labels(system, r).inc())
        except (ConnectorError, Exception) as exc:  # noqa: B014 - keep the stream alive on any failure
            first_failure = first_failure or _now()
            error_class = exc.error_class if isinstance(exc, ConnectorError) else (
                "config" if type(exc).__name__ == "ConfigError" else "internal")
            attempts = (entry or {}).get("attempts", 0) + 1
            ledger[invoice.invoice_key] = {"state": "failed", "attempts": attempts, "last_error": str(exc)[:500],
                                           "at": _now().isoformat()}
            await dead_letter(event, "deliver", error_class, exc, tenant=invoice.tenant, connector=system,
                              http_status=getattr(exc, "http_status", None), attempts=attempts,
                              first_failure=first_failure)
            await record(DeliveryOutcome(
                invoice_key=invoice.invoice_key, event_id=invoice.event_id, tenant=invoice.tenant,
                billing_system=system, outcome="dead_lettered", error=f"{error_class}: {exc}"[:500],
                attempts=attempts, at=_now()))
            return
        now = _now()
        ledger[invoice.invoice_key] = {
            "state": "delivered", "external_id": result.external_id, "external_number": result.external_number,
            "attempts": result.attempts, "at": now.isoformat(),
        }
        latency = (now - invoice.event_time).total_seconds()
        if result.created:
            metrics.DELIVERY_LATENCY.labels(system).observe(max(0.0, latency))
        await record(DeliveryOutcome(
            invoice_key=invoice.invoice_key, event_id=invoice.event_id, tenant=invoice.tenant, billing_system=system,
            outcome="created" if result.created else "already_delivered", external_id=result.external_id,
            external_number=result.external_number, total=invoice.total, currency=invoice.currency,
            attempts=result.attempts, latency_seconds=latency, at=now))

    @app.on_before_shutdown.connect
    async def _close(app_, **kwargs):  # noqa: ANN001
        await deliverer.aclose()

    app.enrich_agent = enrich
    app.deliver_agent = deliver
    app.ledger = ledger
    return app


def decode_outcome(raw: bytes) -> DeliveryOutcome:
    """Parse a ``billing.deliveries`` record value."""
    return DeliveryOutcome.model_validate_json(raw)


def encode_json(obj) -> bytes:
    """Compact JSON bytes (Decimals as strings)."""
    return json.dumps(obj, separators=(",", ":"), default=str).encode()
