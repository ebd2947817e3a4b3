"""Per-tenant limits: the rate limiter, the concurrency cap and the tenant's circuit state.

Limits come from the connector's declared :class:`~connectors.sdk.interface.Capabilities`
(``rate_limit_per_minute``, ``daily_limit``, ``max_concurrency``) unless the tenant's connector
settings name them (``rate_limit_per_minute``, ``rate_limit_window_seconds``, ``max_concurrency``,
``daily_limit``); see ``docs/delivery.md`` section 5.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.delivery.interrupt import Interrupt
from connectors.sdk.errors import ConnectorError, Quota
from connectors.sdk.interface import Connector

__all__ = ["DAY", "RateLimiter", "Slot", "TenantState", "new_tenant_state"]

#: seconds in the daily window
DAY = 86400.0


@dataclass
class Slot:
    """A call allowed by :class:`RateLimiter` (``at``: when, on its clock; ``waited``: seconds it waited for it)."""

    at: float
    waited: float = 0.0


class RateLimiter:
    """At most ``limit`` calls in any ``window`` seconds and ``daily`` in any 24 h (per tenant).

    Counts the way Xero does (sliding windows) but conservatively: a call holds a slot from the
    moment it is allowed and, once it has finished, is re-stamped with its *finish* time, which is
    never earlier than the moment the server counted it (a token refresh or a queue may delay the
    request). Stamps are kept ``margin`` seconds longer than the window on top of that. So the
    server never sees more calls in its window than we allow, whatever the latency.
    :meth:`observe` adds calls the server counted that we did not make (remaining-quota headers),
    :meth:`pause` blocks everyone for a server's ``Retry-After``. ``await acquire()`` returns a
    :class:`Slot` (FIFO among callers); pass it to :meth:`release` when the call is over.

    ``limit`` / ``daily``: calls (``None`` or 0 = unlimited); ``window`` and ``margin``: seconds
    (``margin`` defaults to 1 % of the window, at most 0.5 s); ``clock``: monotonic seconds.
    """

    def __init__(
        self,
        limit: int | None,
        window: float = 60.0,
        *,
        daily: int | None = None,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limit = limit
        self.window = window
        self.daily = daily
        self.margin = min(0.5, window * 0.01) if margin is None else margin
        self.clock = clock
        self._stamps: list[float] = []  # sorted
        self._day: list[float] = []  # sorted
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    def _prune(self, now: float) -> None:
        span = self.window + self.margin
        cut = bisect.bisect_right(self._stamps, now - span)
        if cut:
            del self._stamps[:cut]
        cut = bisect.bisect_right(self._day, now - DAY - self.margin)
        if cut:
            del self._day[:cut]

    def pause(self, seconds: float) -> None:
        """Nobody calls for ``seconds`` (a server's ``Retry-After``)."""
        self._paused_until = max(self._paused_until, self.clock() + max(0.0, seconds))

    def observe(self, quota: Quota) -> None:
        """Align with the server's count: add stamps (now) for calls it counted that we did not make."""
        now = self.clock()
        self._prune(now)
        if quota.minute_remaining is not None and self.limit:
            missing = (self.limit - quota.minute_remaining) - len(self._stamps)
            for _ in range(min(max(0, missing), self.limit)):
                bisect.insort(self._stamps, now)
        if quota.day_remaining is not None and self.daily:
            missing = (self.daily - quota.day_remaining) - len(self._day)
            for _ in range(min(max(0, missing), self.daily)):
                bisect.insort(self._day, now)

    def delay(self) -> float:
        """Seconds until the next call would be allowed (0 = now)."""
        now = self.clock()
        self._prune(now)
        wait = max(0.0, self._paused_until - now)
        if self.limit and len(self._stamps) >= self.limit:
            wait = max(wait, self._stamps[-self.limit] + self.window + self.margin - now, 0.01)
        if self.daily and len(self._day) >= self.daily:
            wait = max(wait, self._day[-self.daily] + DAY + self.margin - now, 0.01)
        return wait

    @property
    def backlog_seconds_per_call(self) -> float:
        """Seconds of window one call takes at the sustained rate (0 without a per-window limit)."""
        return self.window / self.limit if self.limit else 0.0

    async def acquire(self, interrupt: Interrupt | None = None) -> Slot:
        """Wait (FIFO) until a call is allowed and take its slot; :class:`~broker.delivery.Abandoned`
        when ``interrupt`` is set while waiting."""
        waited = 0.0
        async with self._lock:
            while True:
                wait = self.delay()
                if wait <= 0:
                    now = self.clock()
                    if self.limit:
                        bisect.insort(self._stamps, now)
                    if self.daily:
                        bisect.insort(self._day, now)
                    return Slot(now, waited)
                if interrupt is not None:
                    await interrupt.sleep(wait)
                else:
                    await asyncio.sleep(wait)
                waited += wait

    def release(self, slot: Slot) -> None:
        """The call of ``slot`` is over: re-stamp it with the current (finish) time."""
        now = self.clock()
        for stamps, on in ((self._stamps, self.limit), (self._day, self.daily)):
            if not on:
                continue
            i = bisect.bisect_left(stamps, slot.at)
            if i < len(stamps) and stamps[i] == slot.at:
                del stamps[i]
                bisect.insort(stamps, max(now, slot.at))


@dataclass
class TenantState:
    """A tenant's connector, limits and health as seen by this worker."""

    tenant: str
    system: str
    connector: Connector
    limiter: RateLimiter | None
    semaphore: asyncio.Semaphore | None
    #: wall-clock time (epoch seconds) until which the tenant's invoices are parked without calling (circuit open)
    circuit_until: float = 0.0
    circuit_reason: str = ""
    #: consecutive cycles that ended parked; reset by any success (drives the circuit's length)
    failures: int = 0
    #: auth/config error: every invoice of the tenant is dead-lettered until the worker restarts
    fatal: ConnectorError | None = None
    #: the billing system refused the OAuth2 refresh token (``ReauthRequiredError``): the tenant's invoices
    #: are parked without calling while the token store says so (``broker.delivery.policy.reauth_pending``);
    #: cleared by the next attempt that gets past the token
    needs_reauth: ConnectorError | None = None
    #: free-form notes about the tenant (not used by the broker itself)
    extra: dict[str, object] = field(default_factory=dict)

    def circuit_open(self, now: float | None = None) -> bool:
        """True while the tenant's invoices are parked without calling (``now``: epoch seconds)."""
        return self.circuit_until > (time.time() if now is None else now)


def _count(connector: Connector, name: str, default: int | None) -> int | None:
    """The connector setting ``name`` (a pydantic-validated ``int | None``), else ``default``."""
    value = getattr(connector.settings, name, None)
    return default if value is None else int(value)


def _seconds(connector: Connector, name: str, default: float) -> float:
    """The connector setting ``name`` (a pydantic-validated number of seconds or ``None``), else ``default``."""
    value = getattr(connector.settings, name, None)
    return default if value is None else float(value)


def new_tenant_state(tenant_id: str, connector: Connector) -> TenantState:
    """The :class:`TenantState` of ``tenant_id`` with its limits (module docstring).

    The rate limiter (``None`` without a per-window or daily limit) is fed by the connector's
    remaining-quota reports: its ``on_quota`` attribute is set to :meth:`RateLimiter.observe`.
    """
    caps = connector.capabilities
    per_minute = _count(connector, "rate_limit_per_minute", caps.rate_limit_per_minute)
    window = _seconds(connector, "rate_limit_window_seconds", 60.0)
    daily = _count(connector, "daily_limit", caps.daily_limit)
    concurrency = _count(connector, "max_concurrency", caps.max_concurrency)
    limiter = RateLimiter(per_minute, window, daily=daily) if (per_minute or daily) else None
    state = TenantState(
        tenant=tenant_id,
        system=connector.name,
        connector=connector,
        limiter=limiter,
        semaphore=asyncio.Semaphore(concurrency) if concurrency else None,
    )
    if limiter is not None:
        # optional hook of connectors that report remaining quota (connectors.sdk.errors.Quota)
        with contextlib.suppress(AttributeError):
            setattr(connector, "on_quota", limiter.observe)  # noqa: B010 - not part of the Connector interface
    return state
