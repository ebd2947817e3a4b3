"""The :class:`Deliverer`: one invoice through its tenant's connector, following the ledger.

:meth:`Deliverer.process` decides from the ledger (already delivered, superseded, amend or create)
and runs one attempt cycle (:class:`AttemptCycle`): in-line retries of look-up / ledger write /
call under the tenant's concurrency slot and rate limiter, until the invoice is delivered, dead or
must be parked (:mod:`broker.delivery.policy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from functools import partial
from typing import TypeVar

from pydantic import ValidationError

from broker import metrics
from broker.config import BrokerConfig
from broker.delivery.interrupt import Abandoned, Interrupt
from broker.delivery.ledger import Amendment, DeliveredRef, InvoiceLedger, RecordMeta
from broker.delivery.limits import TenantState, new_tenant_state
from broker.delivery.policy import (
    AlreadyDelivered,
    CannotReconcile,
    Dead,
    Delivered,
    InlineRetry,
    Outcome,
    Park,
    Superseded,
    open_circuit,
    park_decision,
)
from broker.settings import DeliverySettings
from connectors import registry
from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    DuplicateError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.sdk.idempotency import generation, idempotency_key
from connectors.sdk.interface import Connector, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import check_ours
from connectors.sdk.settings import format_validation_error

__all__ = ["AttemptCycle", "Deliverer", "build_connector"]

log = logging.getLogger("broker.delivery")

_T = TypeVar("_T")


def build_connector(config: BrokerConfig, tenant_id: str) -> Connector:
    """Instantiate the tenant's connector with validated settings.

    Raises :class:`broker.config.ConfigError` naming the tenant, the billing system and the
    field path (bad settings), or the environment variable (missing secret); ``KeyError`` for an
    unknown tenant.
    """
    tenant = config.tenant(tenant_id)
    system = tenant.billing.system
    try:
        cls = registry.load(system)
    except LookupError as exc:
        raise ConfigError(f"tenants.{tenant_id}.billing.system: {exc}") from None
    try:
        settings = cls.Settings.model_validate(tenant.billing.settings)
    except ValidationError as exc:
        raise ConfigError(
            "invalid connector settings:\n"
            + format_validation_error(exc, prefix=f"tenants.{tenant_id}.billing.settings")
        ) from None
    connector = cls(settings, tenant=tenant_id)
    clients = getattr(tenant, "clients", None)
    if clients and isinstance(getattr(connector, "clients", None), dict):
        connector.clients = dict(clients)
    return connector


class Deliverer:
    """Delivers invoices of any configured tenant through that tenant's connector (:mod:`broker.delivery`).

    ``policy``: retry and parking settings; ``interrupt``: stops every wait at a safe point
    (rebalance, shutdown); ``max_retry_seconds``: older spelling of ``policy.retry_budget``.
    """

    def __init__(
        self,
        config: BrokerConfig,
        policy: DeliverySettings | None = None,
        *,
        interrupt: Interrupt | None = None,
        max_retry_seconds: float | None = None,
    ):
        self.config = config
        self.policy = policy or DeliverySettings()
        if max_retry_seconds is not None:  # backwards-compatible keyword
            self.policy = replace(self.policy, retry_budget=max_retry_seconds)
        self.interrupt = interrupt or Interrupt()
        self._tenants: dict[str, TenantState] = {}

    # -------------------------------------------------------------- tenants
    def state(self, tenant_id: str) -> TenantState:
        """The tenant's cached :class:`TenantState` (connector built on first use; ConfigError if it cannot be)."""
        state = self._tenants.get(tenant_id)
        if state is None:
            state = new_tenant_state(tenant_id, build_connector(self.config, tenant_id))
            self._tenants[tenant_id] = state
        return state

    def connector(self, tenant_id: str) -> Connector:
        """The (cached) connector of ``tenant_id``."""
        return self.state(tenant_id).connector

    def key_for(self, invoice: Invoice, operation: str = "create", replay_count: int = 0) -> str:
        """The idempotency key the tenant's connector uses for ``operation`` (for DLQ headers)."""
        with generation(replay_count):
            return self._key_for(invoice, operation)

    def _key_for(self, invoice: Invoice, operation: str) -> str:
        try:
            connector = self.connector(invoice.tenant)
            own = getattr(connector, "idempotency_key", None)
            if callable(own):
                return str(own(invoice, operation))
        except Exception:  # noqa: BLE001 - informative only
            pass
        return idempotency_key(invoice.tenant, invoice.billing_system, invoice.invoice_key, operation)

    def backlog_delay(self, tenant_id: str, queued: int) -> float:
        """Rough seconds until ``queued`` more calls fit the tenant's rate limit."""
        try:
            limiter = self.state(tenant_id).limiter
        except Exception:  # noqa: BLE001 - an estimate: a tenant that cannot be built gets the first delay
            return self.policy.park_delays[0]
        if limiter is None:
            return self.policy.park_delays[0]
        return limiter.delay() + queued * limiter.backlog_seconds_per_call

    # -------------------------------------------------------------- parking policy
    def park_decision(
        self,
        state: TenantState | None,
        meta: RecordMeta,
        reason: str,
        *,
        retry_after: float | None = None,
        error: BaseException | None = None,
        attempted: bool = True,
        min_wait: float = 0.0,
    ) -> Park | Dead:
        """Where and until when to park (or :class:`Dead` once ``park_max_seconds`` is exceeded);
        :func:`broker.delivery.policy.park_decision` with this deliverer's policy."""
        return park_decision(
            self.policy,
            state,
            meta,
            reason,
            retry_after=retry_after,
            error=error,
            attempted=attempted,
            min_wait=min_wait,
        )

    # -------------------------------------------------------------- one invoice
    async def process(self, invoice: Invoice, ledger: InvoiceLedger, meta: RecordMeta) -> Outcome:
        """Deliver ``invoice`` once, following the ledger (:mod:`broker.delivery`). Never raises a ConnectorError.

        Raises :class:`~broker.delivery.Abandoned` when interrupted at a safe point.
        """
        entry = ledger.entry(invoice.invoice_key)
        if entry.get("state") == "delivered":
            return AlreadyDelivered(entry)
        previous = ledger.latest_delivered(invoice)
        if previous is not None and int(previous.get("revision", 0)) > invoice.revision:
            return Superseded(previous)
        try:
            state = self.state(invoice.tenant)
        except (ConfigError, KeyError) as exc:  # broker.config.ConfigError is the SDK's
            return Dead(
                "config",
                ConfigError(f"tenant {invoice.tenant}: {exc}") if isinstance(exc, KeyError) else exc,
                meta.attempts,
                meta,
            )
        if state.fatal is not None:
            return Dead(state.fatal.error_class, state.fatal, meta.attempts, meta)
        if state.circuit_open():
            return self.park_decision(state, meta, state.circuit_reason or "retryable", attempted=False)
        amend_from = None
        if previous is not None and previous.get("external_number"):
            if not state.connector.capabilities.amendments:
                # never two invoices for one document: a connector that cannot retire the billed
                # revision must not create the new one alongside it
                return Dead(
                    "permanent",
                    PermanentError(
                        f"{invoice.invoice_number}: revision {invoice.revision} of {invoice.order_key} while revision "
                        f"{previous.get('revision')} is billed as {previous.get('external_number')}; "
                        f"the {state.system} connector cannot retire invoices (capabilities.amendments is false), "
                        "so the new revision is not created alongside it: replace it by hand, then drop this record"
                    ),
                    meta.attempts,
                    meta,
                )
            amend_from = previous
        with generation(meta.replay_count):  # a replay must not get the cached answer of the failed try
            return await AttemptCycle(self, state, invoice, ledger=ledger, meta=meta, previous=amend_from).run()

    async def aclose(self) -> None:
        """Close every connector's HTTP client (errors are ignored: shutting down)."""
        for state in self._tenants.values():
            with contextlib.suppress(Exception):  # shutting down
                await state.connector.aclose()


class AttemptCycle:
    """One invoice's attempt cycle: in-line retries until delivered, dead or to be parked.

    ``previous``: the delivered revision to amend (``None``: create). Each attempt holds one of the
    tenant's concurrency slots for its look-up, ledger write and call(s); every call waits for the
    tenant's rate limiter. ``attempts`` counts calls that may create (not look-ups); ``uncertain``
    is True while an earlier request may have created the invoice.
    """

    def __init__(
        self,
        deliverer: Deliverer,
        state: TenantState,
        invoice: Invoice,
        *,
        ledger: InvoiceLedger,
        meta: RecordMeta,
        previous: DeliveredRef | None,
    ) -> None:
        self.deliverer = deliverer
        self.interrupt = deliverer.interrupt
        self.state = state
        self.connector = state.connector
        self.system = state.system
        self.invoice = invoice
        self.ledger = ledger
        self.meta = meta
        self.previous = previous
        self.attempts = meta.attempts
        self.uncertain = ledger.is_uncertain(invoice.invoice_key)
        self.retry = InlineRetry(deliverer.policy, state, deliverer.interrupt)

    async def run(self) -> Outcome:
        """Attempt in line as the policy allows; the outcome. Raises only :class:`~broker.delivery.Abandoned`."""
        policy = self.deliverer.policy
        state = self.state
        try:
            async for attempt in self.retry.retrying():
                with attempt:
                    delivered = await self._attempt()
        except Abandoned:
            raise
        except RetryableError as exc:
            self.ledger.note_attempts(self.invoice, self.attempts, exc)
            meta = replace(self.meta, attempts=self.attempts)
            if isinstance(exc, RateLimitedError):
                open_circuit(policy, state, "rate_limited", exc.retry_after)
                return self.deliverer.park_decision(state, meta, "rate_limited", retry_after=exc.retry_after, error=exc)
            if not state.circuit_open():
                open_circuit(policy, state, exc.error_class)
            return self.deliverer.park_decision(state, meta, exc.error_class, error=exc)
        except (AuthError, ConfigError) as exc:
            state.fatal = exc
            log.error(
                "tenant %s (%s): %s; its invoices are dead-lettered until this is fixed and the worker restarted",
                state.tenant,
                self.system,
                exc.error_class,
            )
            return Dead(exc.error_class, exc, self.attempts, replace(self.meta, attempts=self.attempts))
        except ConnectorError as exc:
            return Dead(exc.error_class, exc, self.attempts, replace(self.meta, attempts=self.attempts))
        state.failures = 0
        delivered.amendment = self._amendment(delivered)
        return delivered

    def _amendment(self, delivered: Delivered) -> Amendment | None:
        """How ``delivered`` replaced the previous revision (counted in ``broker_amendments_total``)."""
        if self.previous is None:
            return None
        details = delivered.result.details or {}
        amendment: Amendment = {
            "previous_invoice_key": self.previous.get("invoice_key"),
            "previous_number": self.previous.get("external_number"),
            "action": details.get("amendment", "replaced"),
            "credit_note_number": details.get("credit_note_number"),
            "credit_note_id": details.get("credit_note_id"),
        }
        metrics.AMENDMENTS.labels(self.system, str(amendment["action"])).inc()
        return amendment

    # -------------------------------------------------------------- one attempt
    async def _attempt(self) -> Delivered:
        """One attempt under a concurrency slot; a retryable failure is noted for the policy."""
        async with self._slot():
            self.interrupt.check()
            try:
                return await self._reconcile_or_create()
            except RetryableError as exc:
                self.retry.failed(exc)
                raise

    async def _reconcile_or_create(self) -> Delivered:
        caps = self.connector.capabilities
        if self.uncertain and not caps.lookup_by_reference:
            if not caps.native_idempotency:
                raise CannotReconcile(
                    f"{self.invoice.invoice_number}: an earlier request may have created it and {self.system} "
                    "offers neither a look-up by our number nor an idempotency key: check the billing system, "
                    "then replay"
                )
            self.uncertain = False  # the same idempotency key makes the repeat a replay of the first request
        if self.uncertain and self.previous is not None:
            # an amendment is retire + create, both idempotent: repeating it completes whichever step
            # a crash or a lost answer left undone (a look-up of the new number alone could not tell)
            self.uncertain = False
        if self.uncertain:
            reconciled = await self._reconcile()
            if reconciled is not None:
                return reconciled
            self.uncertain = False
        return await self._create()

    async def _reconcile(self) -> Delivered | None:
        """An earlier request may have created the invoice: look it up by our number (``None``: absent)."""
        invoice = self.invoice
        caps = self.connector.capabilities
        found = await self._io(partial(self.connector.find, invoice.invoice_number))
        metrics.LOOKUPS.labels(self.system, "found" if found else "absent").inc()
        if found is None:
            return None
        if caps.native_idempotency:
            check_ours(invoice, found, what="found by our number after an uncertain call")
            details = {"reconciled_by_lookup": True, "Total": str(found.total), "Status": found.status}
            return Delivered(
                DeliveryResult(
                    invoice.invoice_key,
                    found.external_id,
                    found.number,
                    created=True,
                    attempts=self.attempts,
                    details=details,
                ),
                self.attempts,
                reconciled=True,
            )
        # Multi-step systems without an idempotency key (draft -> finalise/send): the lost request
        # may have left the document half done. Their deliver() looks up by our reference first and
        # only completes the missing steps, so call it once more.
        await self.ledger.begin_attempt(invoice)
        self.attempts += 1
        result = await self._io(partial(self.connector.deliver, invoice))
        metrics.DELIVERY_ATTEMPTS.labels(self.system, "ok").inc()
        return Delivered(
            DeliveryResult(
                invoice.invoice_key,
                result.external_id,
                result.external_number,
                created=True,
                attempts=self.attempts,
                details={**result.details, "reconciled_by_lookup": True},
            ),
            self.attempts,
            reconciled=True,
        )

    async def _create(self) -> Delivered:
        """``pending`` durably, then create (or amend ``previous``); errors are classified."""
        invoice = self.invoice
        await self.ledger.begin_attempt(invoice)
        self.uncertain = True
        self.attempts += 1
        try:
            result = await self._call()
        except UncertainOutcomeError:
            metrics.DELIVERY_ATTEMPTS.labels(self.system, "uncertain").inc()
            raise
        except DuplicateError as exc:
            metrics.DELIVERY_ATTEMPTS.labels(self.system, "duplicate").inc()
            return await self._duplicate(exc)
        except ConnectorError as exc:
            self.uncertain = False
            self.ledger.settle(invoice, self.attempts, exc)
            metrics.DELIVERY_ATTEMPTS.labels(self.system, exc.error_class).inc()
            raise
        metrics.DELIVERY_ATTEMPTS.labels(self.system, "ok").inc()
        return Delivered(result, self.attempts)

    async def _call(self) -> DeliveryResult:
        """The create call: ``amend`` when a previous revision is billed, else ``deliver``."""
        if self.previous is not None:
            prev = ExternalInvoice(str(self.previous.get("external_id") or ""), str(self.previous["external_number"]))
            return await self._io(partial(self.connector.amend, self.invoice, prev))
        return await self._io(partial(self.connector.deliver, self.invoice))

    async def _duplicate(self, exc: DuplicateError) -> Delivered:
        """The billing system already holds our number: success with the existing document."""
        invoice = self.invoice
        found = exc.existing or await self._io(partial(self.connector.find, invoice.invoice_number))
        if found is None:
            raise UncertainOutcomeError(f"{exc} (but looking {invoice.invoice_number} up found nothing yet)") from None
        check_ours(invoice, found, what="the billing system reported our number as taken")
        return Delivered(
            DeliveryResult(
                invoice.invoice_key,
                found.external_id,
                found.number,
                created=False,
                attempts=self.attempts,
                details={"duplicate": True},
            ),
            self.attempts,
        )

    # -------------------------------------------------------------- limits
    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the tenant's concurrent slots, for a whole attempt (look-up, ledger write, call(s))."""
        semaphore = self.state.semaphore
        if semaphore is None:
            yield
            return
        grant = asyncio.ensure_future(semaphore.acquire())
        try:
            await self.interrupt.wait_for(grant)
        except Abandoned:
            if grant.done() and not grant.cancelled() and grant.exception() is None:
                semaphore.release()
            else:
                grant.cancel()
            raise
        try:
            yield
        finally:
            semaphore.release()

    async def _io(self, make: Callable[[], Awaitable[_T]]) -> _T:
        """One billing-system call under the tenant's rate limiter (the caller holds a :meth:`_slot`)."""
        limiter = self.state.limiter
        slot = None
        try:
            if limiter is not None:
                slot = await limiter.acquire(self.interrupt)
                if slot.waited:
                    metrics.RATE_LIMIT_WAIT.labels(self.system).inc(slot.waited)
            self.interrupt.check()
            return await make()
        finally:
            if limiter is not None and slot is not None:
                limiter.release(slot)
