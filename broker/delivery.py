"""Delivery policy around a connector: one connector per tenant, a per-tenant rate limiter, retries.

This module knows nothing of Kafka; the ``deliver`` agent in :mod:`broker.app` calls
:meth:`Deliverer.deliver` and records what it returns or raises.

Retry policy (tenacity): :class:`~connectors.base.RetryableError` is retried with exponential
backoff and jitter (0.5 s doubling, at most 10 s between tries), a
:class:`~connectors.base.RateLimitedError` waits the server's ``Retry-After`` instead, and an
:class:`~connectors.base.UncertainOutcomeError` (the request may have landed) is reconciled by
:meth:`Connector.find` before any retry. Retrying stops after ``max_retry_seconds`` (default 60 s)
per invoice; the last error is then raised. Permanent, auth and config errors are not retried.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from broker.config import BrokerConfig, ConfigError, format_validation_error
from broker.invoice import Invoice
from connectors import registry
from connectors.base import (
    Connector,
    ConnectorError,
    DeliveryResult,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)


class SlidingWindowLimiter:
    """At most ``limit`` acquisitions in any ``window`` seconds (the way Xero counts its 60/min).

    ``await acquire()`` returns the seconds it waited. ``pause(seconds)`` blocks everyone (used
    when the server answered 429 with ``Retry-After``).
    """

    def __init__(self, limit: int, window: float = 60.0):
        self.limit = limit
        self.window = window
        self._stamps: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> float:
        waited = 0.0
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._stamps and now - self._stamps[0] >= self.window:
                    self._stamps.popleft()
                delay = max(0.0, self._paused_until - now)
                if not delay and len(self._stamps) >= self.limit:
                    delay = self.window - (now - self._stamps[0]) + 0.01
                if delay <= 0:
                    self._stamps.append(now)
                    return waited
                await asyncio.sleep(delay)
                waited += delay


@dataclass
class _TenantState:
    connector: Connector
    limiter: SlidingWindowLimiter | None
    semaphore: asyncio.Semaphore | None
    waited_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def build_connector(config: BrokerConfig, tenant_id: str) -> Connector:
    """Instantiate the tenant's connector with validated settings.

    Raises :class:`broker.config.ConfigError` naming the tenant, the billing system and the
    field path (bad settings), or the environment variable (missing secret).
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
            "invalid connector settings:\n" + format_validation_error(exc, prefix=f"tenants.{tenant_id}.billing.settings")
        ) from None
    connector = cls(settings, tenant=tenant_id)
    return connector


class Deliverer:
    """Delivers invoices of any configured tenant through that tenant's connector."""

    def __init__(self, config: BrokerConfig, *, max_retry_seconds: float = 60.0):
        self.config = config
        self.max_retry_seconds = max_retry_seconds
        self._tenants: dict[str, _TenantState] = {}

    def _state(self, tenant_id: str) -> _TenantState:
        state = self._tenants.get(tenant_id)
        if state is None:
            connector = build_connector(self.config, tenant_id)
            caps = connector.capabilities
            state = _TenantState(
                connector=connector,
                limiter=SlidingWindowLimiter(caps.rate_limit_per_minute) if caps.rate_limit_per_minute else None,
                semaphore=asyncio.Semaphore(caps.max_concurrency) if caps.max_concurrency else None,
            )
            self._tenants[tenant_id] = state
        return state

    def connector(self, tenant_id: str) -> Connector:
        """The (cached) connector of ``tenant_id``."""
        return self._state(tenant_id).connector

    async def deliver(self, invoice: Invoice, on_attempt=None) -> DeliveryResult:
        """Deliver ``invoice`` with the retry policy of the module docstring.

        ``on_attempt(result: str)`` is called after each try (``"ok"`` or the error class).
        Returns the connector's :class:`DeliveryResult` (``attempts`` set to the tries made).
        Raises the last :class:`ConnectorError` when retries are exhausted or the error is final.
        """
        state = self._state(invoice.tenant)
        connector = state.connector
        attempts = 0
        uncertain = False

        async def one_try() -> DeliveryResult:
            nonlocal attempts, uncertain
            attempts += 1
            if uncertain:
                # The previous request may have created the invoice: look before creating again.
                found = await self._limited(state, connector.find(invoice.invoice_number))
                if found is not None:
                    return DeliveryResult(invoice.invoice_key, found.external_id, found.number, created=True,
                                          details={"reconciled_by_lookup": True})
                uncertain = False
            try:
                result = await self._limited(state, connector.deliver(invoice))
            except UncertainOutcomeError:
                uncertain = True
                if on_attempt:
                    on_attempt("uncertain")
                raise
            except RateLimitedError as exc:
                if state.limiter:
                    state.limiter.pause(exc.retry_after)
                if on_attempt:
                    on_attempt(exc.error_class)
                raise
            except ConnectorError as exc:
                if on_attempt:
                    on_attempt(exc.error_class)
                raise
            if on_attempt:
                on_attempt("ok")
            return result

        def _wait(retry_state) -> float:
            exc = retry_state.outcome.exception()
            if isinstance(exc, RateLimitedError):
                return 0.0  # the limiter is paused for Retry-After; acquire() waits
            return _backoff(retry_state)

        _backoff = wait_exponential_jitter(initial=0.5, max=10.0)
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_delay(self.max_retry_seconds),
            wait=_wait,
            reraise=True,
        ):
            with attempt:
                result = await one_try()
        return DeliveryResult(result.invoice_key, result.external_id, result.external_number, result.created,
                              attempts=attempts, details=result.details)

    async def _limited(self, state: _TenantState, coro):
        if state.limiter:
            state.waited_seconds += await state.limiter.acquire()
        if state.semaphore:
            async with state.semaphore:
                return await coro
        return await coro

    async def aclose(self) -> None:
        """Close every connector's HTTP client."""
        for state in self._tenants.values():
            await state.connector.aclose()
