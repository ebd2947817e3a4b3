"""``broker payments``: the billing systems' payment webhooks and polls, into ``billing.payments``.

``POST /webhooks/payments/{system}/{tenant}`` takes a billing system's own webhook for one tenant
(``billing.payments.webhook_secret_env`` in its configuration, :func:`payment_routes_of`):

1. the body is read raw (at most ``max_body_bytes``, else 413) and verified exactly as the system signs
   it (:meth:`~connectors.sdk.payments.PaymentSource.verify`): a missing, forged or stale signature is
   answered 401 (an RFC 9457 problem document, as ``broker ingest`` answers) and nothing else happens —
   no read, no record;
2. the invoices it names are read back from the billing system through the tenant's connector, at most
   the connector's declared requests per minute (:meth:`~connectors.sdk.payments.PaymentSource.paced`);
3. each state that differs from the last one published becomes one record (:class:`Recorder`);
4. the answer is 200 (Xero: an empty body, as Xero asks) once Kafka acknowledged every record; 503 with
   ``Retry-After`` when the billing system could not be read or Kafka did not acknowledge, so the system
   delivers the webhook again; 422 for a verified body that is not what the system sends; 404 for a
   system or tenant without payment webhooks.

Systems without webhooks (Moloni, InvoiceXpress, Zoho) are polled every ``billing.payments.poll_seconds`` from
the start of the service (:meth:`~connectors.sdk.payments.PaymentSource.poll`), resuming after the latest
change already recorded. ``GET /healthz`` answers 200 while the process runs, ``GET /readyz`` 200 once the
producer is started and ``billing.payments`` was read back (503 before), ``GET /metrics`` the Prometheus
exposition (``broker_payment_records_total``, ``broker_payment_webhooks_refused_total``,
``broker_payment_polls_total``). Details: ``docs/payments.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from broker import metrics
from broker.config import BrokerConfig, connector_class, resolve_secret
from broker.intake import Problem, PublishUnavailable, read_body, service_app
from broker.payments.recorder import Recorder
from connectors.registry import payment_source_class
from connectors.sdk.errors import ConfigError, ConnectorError, RateLimitedError
from connectors.sdk.payments import PaymentSource, Webhook, WebhookRefused

__all__ = ["PaymentRoute", "create_payments_app", "payment_routes_of"]

log = logging.getLogger(__name__)

#: Seconds a webhook's sender is told to wait before delivering it again after a 503.
RETRY_AFTER_SECONDS = 30


@dataclass
class PaymentRoute:
    """One tenant's payment source with its ``poll_seconds`` (systems without webhooks); its API reads
    keep to the source's pace (:meth:`~connectors.sdk.payments.PaymentSource.paced`)."""

    source: PaymentSource
    poll_seconds: float = 60.0


def payment_routes_of(config: BrokerConfig, *, token_store: Any = None) -> dict[tuple[str, str], PaymentRoute]:
    """``{(billing system, tenant): route}`` of every tenant with ``billing.payments``: its connector
    (``token_store``: where OAuth2 tokens are kept, the default store when ``None``) and, for systems with
    webhooks, the signing secret read from ``webhook_secret_env``. Raises :class:`ConfigError` naming the
    field: a system ``broker payments`` does not read yet, a missing ``webhook_secret_env``, a variable
    that is not set."""
    routes = {}
    for tenant_id, tenant in config.tenants.items():
        feed, system = tenant.billing.payments, tenant.billing.system
        if feed is None:
            continue
        where = f"tenants.{tenant_id}.billing.payments"
        system_class = connector_class(system, field=f"tenants.{tenant_id}.billing.system")
        source_class = payment_source_class(system_class)
        if source_class is None:
            raise ConfigError(f"{where}: the {system} connector ships no payment source (<its package>/payments.py)")
        secret = None
        if source_class.webhooks:
            if feed.webhook_secret_env is None:
                raise ConfigError(f"{where}.webhook_secret_env: {system} signs its webhooks; name the variable")
            value = resolve_secret(feed.webhook_secret_env, field=f"{where}.webhook_secret_env")
            secret = value.get_secret_value().encode()
        connector = system_class(tenant.billing.settings, tenant=tenant_id, token_store=token_store)
        source = source_class(connector, secret=secret, tolerance=feed.tolerance_seconds)
        routes[(system, tenant_id)] = PaymentRoute(source, poll_seconds=feed.poll_seconds)
    return routes


def _unavailable(what: str, detail: str, retry_after: float | None = None) -> Problem:
    wait = str(max(1, round(retry_after))) if retry_after else str(RETRY_AFTER_SECONDS)
    return Problem(
        503, "unavailable", f"{what} unavailable", detail, result="unavailable", headers={"Retry-After": wait}
    )


def _unreachable(system: str, what: str, exc: ConnectorError) -> Problem:
    """503 for ``system`` not answering while ``what`` (its own ``Retry-After`` when it throttled us)."""
    retry = exc.retry_after if isinstance(exc, RateLimitedError) else None
    return _unavailable(system, f"{what}: {exc}", retry)


def create_payments_app(
    routes: dict[tuple[str, str], PaymentRoute],
    recorder: Recorder,
    *,
    max_body_bytes: int = 1024 * 1024,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The payments service as an ASGI app (module docstring). ``recorder``'s publisher is started and
    stopped with the app and ``billing.payments`` read back before it is ready; pollers run while it
    serves; the sources' connectors are closed at the end. ``clock``: unix seconds (signed timestamps)."""
    state = {"ready": False}
    pollers: list[asyncio.Task[None]] = []
    systems = {system for system, _tenant in routes}

    async def poll_forever(system: str, tenant: str, route: PaymentRoute) -> None:
        cursor = route.source.resume_cursor(recorder.latest.get((tenant, system)))
        while True:
            started = time.monotonic()
            try:
                await route.source.paced()
                states, following = await route.source.poll(cursor)
                for found in states:
                    await recorder.record(tenant, system, found)
                cursor = following  # moved on only once every change of the poll is recorded
                route.source.confirm()
                metrics.PAYMENT_POLLS.labels(system, "ok").inc()
            except (ConnectorError, PublishUnavailable) as exc:
                metrics.PAYMENT_POLLS.labels(system, "failed").inc()
                log.warning("payments: polling %s for %s failed: %s", system, tenant, exc)
            except Exception as exc:  # noqa: BLE001 - a poller never dies; the next poll tries again
                metrics.PAYMENT_POLLS.labels(system, "failed").inc()
                log.error("payments: polling %s for %s failed: %r", system, tenant, exc)
            await asyncio.sleep(max(0.0, route.poll_seconds - (time.monotonic() - started)))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await recorder.publisher.start()
        try:
            known = await recorder.load()
            log.info("payments: %d record(s) read back from billing.payments", known)
            for (system, tenant), route in routes.items():
                if not route.source.webhooks:
                    pollers.append(asyncio.create_task(poll_forever(system, tenant, route)))
            state["ready"] = True
            yield
        finally:
            state["ready"] = False
            for task in pollers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await recorder.publisher.stop()
            for route in routes.values():
                await route.source.aclose()

    app = service_app(
        "payments",
        "Billing systems' payment webhooks and polls into billing.payments (docs/payments.md).",
        lifespan,
        ready=lambda: state["ready"],
        ready_summary="Ready: the producer is started and billing.payments read back",
    )

    async def handle(route: PaymentRoute, system: str, tenant: str, request: Request) -> list[dict[str, Any]]:
        body = await read_body(request, max_body_bytes)
        hook = Webhook({name.lower(): value for name, value in request.headers.items()}, body)
        try:
            await route.source.authenticate(hook, clock())
        except WebhookRefused as exc:
            raise Problem(401, "unauthorized", "Missing or bad signature", exc.detail, result=exc.reason) from None
        except ConnectorError as exc:
            raise _unreachable(system, "verifying the webhook", exc) from None
        try:
            ids = await route.source.invoices_of(route.source.parse(body))
        except ValueError as exc:
            raise Problem(422, "invalid-payload", "Invalid payload", str(exc), result="invalid") from None
        except ConnectorError as exc:
            raise _unreachable(system, "reading what the webhook names", exc) from None
        done: list[dict[str, Any]] = []
        for ident in ids:
            await route.source.paced()
            try:
                found = await route.source.fetch(ident)
            except ConnectorError as exc:
                raise _unreachable(system, f"reading invoice {ident}", exc) from None
            if found is None:
                done.append({"external_id": ident, "result": "ignored"})
                continue
            try:
                recorded = await recorder.record(tenant, system, found)
            except PublishUnavailable as exc:
                log.warning("payments: Kafka did not acknowledge the record of %s: %s", ident, exc)
                raise _unavailable("Kafka", "the record was not stored; send the webhook again", 5) from None
            done.append({"external_id": ident, "result": recorded.result, "id": recorded.event_id})
        return done

    @app.post(
        "/webhooks/payments/{system}/{tenant}",
        summary="A billing system's webhook (Xero, Stripe, QuickBooks, PayPal, FreshBooks) about a tenant's invoices",
        responses={
            401: {"description": "Missing, bad or stale signature: nothing read, nothing published"},
            404: {"description": "A system or tenant without payment webhooks"},
            413: {"description": "Body over the limit"},
            422: {"description": "A verified body that is not the system's webhook"},
            503: {"description": "Billing system or Kafka unavailable; deliver again after Retry-After seconds"},
        },
    )
    async def post_webhook(system: str, tenant: str, request: Request) -> Response:
        label = system if system in systems else "unknown"  # bounded: the configured systems only
        route = routes.get((system, tenant))
        try:
            if route is None or not route.source.webhooks:
                raise Problem(
                    404,
                    "not-found",
                    "Unknown billing system or tenant",
                    f"no payment webhooks from {system!r} are configured for tenant {tenant!r}",
                    result="not_found",
                )
            done = await handle(route, system, tenant, request)
        except Problem as problem:
            metrics.PAYMENT_WEBHOOKS_REFUSED.labels(label, problem.result).inc()
            return problem.response()
        if route.source.empty_ack:
            return Response(status_code=200)
        return JSONResponse({"tenant": tenant, "invoices": done}, status_code=200)

    return app
