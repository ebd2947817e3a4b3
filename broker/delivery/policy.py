"""What a delivery cycle decides, and the retry / park / circuit rules behind the decisions.

* In line: ``retryable`` and ``uncertain`` errors are retried with exponential backoff and jitter
  (tenacity) for at most ``retry_budget`` seconds; ``rate_limited`` waits ``Retry-After`` in line
  when it is at most ``retry_after_inline`` seconds (:class:`InlineRetry`).
* Parked: when the budget is spent or the wait is long, the invoice goes to a retry topic whose
  delay covers the wait (:func:`park_decision`) and the tenant's circuit opens
  (:func:`open_circuit`): its other invoices park without calling until it closes. After
  ``park_max_seconds`` of parking the invoice is dead-lettered instead.
* Needs re-authorisation: a refused OAuth2 refresh token (``needs_reauth``) marks the tenant
  (:func:`mark_needs_reauth`); its invoices park without calling while its token store still holds
  only refused tokens (:func:`reauth_pending`) and are tried again once new ones are stored.

Seconds are wall-clock epoch seconds for due times and circuits, monotonic for the in-line budget.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential_jitter

from broker import metrics
from broker.delivery.interrupt import Interrupt
from broker.delivery.ledger import Amendment, DeliveredRef, LedgerEntry, RecordMeta
from broker.delivery.limits import TenantState
from broker.settings import DeliverySettings
from connectors.sdk.errors import ConnectorError, PermanentError, RateLimitedError, RetryableError
from connectors.sdk.interface import DeliveryResult

__all__ = [
    "AUTH_STATES",
    "AlreadyDelivered",
    "CannotReconcile",
    "Dead",
    "Delivered",
    "InlineRetry",
    "Outcome",
    "Park",
    "Superseded",
    "auth_state_counts",
    "clear_needs_reauth",
    "mark_needs_reauth",
    "open_circuit",
    "park_decision",
    "reauth_pending",
]

log = logging.getLogger("broker.delivery")


# =========================================================================== outcomes
@dataclass
class Delivered:
    """The billing system holds the invoice: ``result`` (``created`` False when it already did),
    ``attempts`` (calls made), ``reconciled`` (found by a look-up after an uncertain call),
    ``amendment`` (how it replaced the previous revision, if it did)."""

    result: DeliveryResult
    attempts: int
    reconciled: bool = False
    amendment: Amendment | None = None


@dataclass
class AlreadyDelivered:
    """The ledger marks this invoice version delivered already (``entry``: its ledger entry)."""

    entry: LedgerEntry


@dataclass
class Superseded:
    """A newer revision of the work order is already billed (``by``)."""

    by: DeliveredRef


@dataclass
class Park:
    """Retry later from retry topic ``level`` (1-based) once ``due`` (epoch seconds) has passed.

    ``meta``: the record's meta for the retry record; ``error``: the last error (``None`` when no
    call failed); ``attempted``: False when parked without calling (open circuit, backlog).
    """

    reason: str
    due: float  # epoch seconds
    level: int
    meta: RecordMeta
    error: BaseException | None = None
    attempted: bool = True


@dataclass
class Dead:
    """Dead-letter the invoice: ``error_class`` (``permanent``, ``auth``, ``config``, ...), the error,
    the calls made and the record's meta."""

    error_class: str
    error: BaseException
    attempts: int
    meta: RecordMeta

    @property
    def http_status(self) -> int | None:
        """The billing system's HTTP status behind the error, when it has one."""
        status = getattr(self.error, "http_status", None)
        return status if isinstance(status, int) else None


#: What :meth:`broker.delivery.Deliverer.process` returns.
Outcome = Delivered | AlreadyDelivered | Superseded | Park | Dead


class CannotReconcile(PermanentError):  # noqa: N818 - public name, also in DLQ headers (dlq.exception.type)
    """The outcome of an earlier request is unknown and the connector cannot look it up (nor replay it safely)."""

    error_class = "uncertain"


# =========================================================================== parking and the circuit
def park_decision(
    policy: DeliverySettings,
    state: TenantState | None,
    meta: RecordMeta,
    reason: str,
    *,
    retry_after: float | None = None,
    error: BaseException | None = None,
    attempted: bool = True,
    min_wait: float = 0.0,
) -> Park | Dead:
    """Where and until when to park (or :class:`Dead` once ``park_max_seconds`` is exceeded).

    The wait is the next park delay, at least ``retry_after`` / ``min_wait`` seconds and the rest
    of the tenant's open circuit; the level is the first retry topic whose delay covers it.
    """
    now = time.time()
    delays = policy.park_delays
    parks = meta.parks + 1
    level = min(parks, len(delays))
    wait = max(delays[level - 1], retry_after or 0.0, min_wait)
    if state is not None and state.circuit_open(now):
        wait = max(wait, state.circuit_until - now)
    while level < len(delays) and delays[level - 1] < wait:
        level += 1
    first = meta.first_failure if meta.first_failure is not None else now
    new_meta = RecordMeta(
        meta.origin_topic,
        meta.origin_partition,
        meta.origin_offset,
        parks=parks,
        first_failure=first,
        attempts=meta.attempts,
        replay_count=meta.replay_count,
        last_error=str(error)[:500] if error is not None else meta.last_error,
    )
    if now + wait - first > policy.park_max_seconds:
        exc = error or RetryableError(f"still {reason} after {now - first:.0f} s of parking")
        return Dead(reason, exc, meta.attempts, new_meta)
    return Park(reason, now + wait, level, new_meta, error, attempted)


def open_circuit(policy: DeliverySettings, state: TenantState, reason: str, seconds: float | None = None) -> None:
    """Park the tenant's invoices without calling for ``seconds`` (default: the park delay of its
    consecutive failures); never shortens a circuit already open for longer."""
    state.failures += 1
    delays = policy.park_delays
    length = seconds if seconds is not None else delays[min(state.failures, len(delays)) - 1]
    until = time.time() + length
    if until > state.circuit_until:
        state.circuit_until = until
        state.circuit_reason = reason
        log.warning("tenant %s (%s): parking its invoices for %.0f s (%s)", state.tenant, state.system, length, reason)


# =========================================================================== needs re-authorisation
#: States of the ``broker_tenants_auth_state`` gauge.
AUTH_STATES = ("ok", "needs_reauth")


def mark_needs_reauth(state: TenantState, error: ConnectorError) -> None:
    """The billing system refused the tenant's OAuth2 refresh token (``error``, a ``ReauthRequiredError``):
    from now on its invoices park without calling while :func:`reauth_pending` says so."""
    if state.needs_reauth is None:
        log.error(
            "tenant %s (%s): the billing system refused the refresh token; its invoices are parked until "
            "`broker connectors authorize %s --tenant %s` stores new tokens: %s",
            state.tenant,
            state.system,
            state.system,
            state.tenant,
            str(error)[:300],
        )
    state.needs_reauth = error


def reauth_pending(state: TenantState) -> ConnectorError | None:
    """Whether a tenant marked ``needs_reauth`` must stay parked, asked of its connector's token store
    (``connector.reauth_required()``: no call to the billing system). The refusal to park with, or ``None``:
    not marked, new tokens stored since, or a connector that cannot tell (its next attempt decides).
    An unreadable store keeps the tenant parked."""
    if state.needs_reauth is None:
        return None
    probe = getattr(state.connector, "reauth_required", None)
    if not callable(probe):
        return None
    try:
        found = probe()
    except Exception as exc:  # noqa: BLE001 - a store we cannot read tells nothing new: stay parked
        log.warning("tenant %s: token store unreadable (%s); staying parked", state.tenant, type(exc).__name__)
        return state.needs_reauth
    return found if isinstance(found, ConnectorError) else None


def clear_needs_reauth(state: TenantState) -> bool:
    """An attempt got past the token: the tenant no longer needs re-authorisation. True when it was marked."""
    if state.needs_reauth is None:
        return False
    state.needs_reauth = None
    log.warning("tenant %s (%s): re-authorised, delivering again", state.tenant, state.system)
    return True


def auth_state_counts(systems: Mapping[str, str], states: Mapping[str, TenantState]) -> dict[tuple[str, str], int]:
    """Tenants per ``(billing_system, state)`` for the ``broker_tenants_auth_state`` gauge.

    ``systems``: tenant id -> billing system, as configured (the label values); ``states``: the
    tenants this worker has met (a tenant not met yet counts ``ok``). Every pair of a configured
    system and :data:`AUTH_STATES` is present (0 included), e.g. ``{("xero", "ok"): 1, ("xero",
    "needs_reauth"): 1}``.
    """
    counts = {(system, auth): 0 for system in set(systems.values()) for auth in AUTH_STATES}
    for tenant, system in systems.items():
        state = states.get(tenant)
        counts[(system, "needs_reauth" if state is not None and state.needs_reauth is not None else "ok")] += 1
    return counts


# =========================================================================== in-line retries
class InlineRetry:
    """The in-line retry rules of one invoice's attempt cycle (the tenacity predicates and waits).

    ``first_failure`` (monotonic seconds) starts the ``retry_budget`` at the first failed attempt.
    """

    def __init__(self, policy: DeliverySettings, state: TenantState, interrupt: Interrupt) -> None:
        self.policy = policy
        self.state = state
        self.interrupt = interrupt
        self.first_failure: float | None = None
        self._backoff = wait_exponential_jitter(
            multiplier=policy.retry_initial, max=policy.retry_max, jitter=policy.retry_initial
        )

    def retrying(self) -> AsyncRetrying:
        """A tenacity loop with these rules; waits stop at the interrupt (:class:`~broker.delivery.Abandoned`)."""
        return AsyncRetrying(
            retry=retry_if_exception(self.should_retry), wait=self.wait, sleep=self.sleep, reraise=True
        )

    def long_wait(self, exc: BaseException) -> bool:
        """A ``Retry-After`` too long to wait in line."""
        return isinstance(exc, RateLimitedError) and exc.retry_after > self.policy.retry_after_inline

    def should_retry(self, exc: BaseException) -> bool:
        """Retry in line: a retryable error, not a long wait, the tenant's circuit closed, budget left."""
        if not isinstance(exc, RetryableError) or self.long_wait(exc):
            return False
        if self.state.circuit_open():  # another invoice of this tenant gave up: park now
            return False
        return self.first_failure is None or time.monotonic() - self.first_failure < self.policy.retry_budget

    def wait(self, retry_state: RetryCallState) -> float:
        """Seconds before the next attempt: ``Retry-After`` (plus up to 0.1 s), else the backoff."""
        exc = retry_state.outcome.exception() if retry_state.outcome is not None else None
        if isinstance(exc, RateLimitedError):
            return exc.retry_after + random.uniform(0, 0.1)
        return self._backoff(retry_state)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` unless interrupted (:class:`~broker.delivery.Abandoned`)."""
        await self.interrupt.sleep(seconds)

    def failed(self, exc: RetryableError) -> None:
        """An attempt failed with ``exc``: start the budget, pause the tenant on a 429, count the retry."""
        if self.first_failure is None:
            self.first_failure = time.monotonic()
        if isinstance(exc, RateLimitedError) and self.state.limiter is not None:
            self.state.limiter.pause(exc.retry_after)
        if self.should_retry(exc):
            metrics.DELIVERY_RETRIES.labels(self.state.system, exc.error_class).inc()
            if isinstance(exc, RateLimitedError):
                metrics.RATE_LIMIT_WAIT.labels(self.state.system).inc(exc.retry_after)
