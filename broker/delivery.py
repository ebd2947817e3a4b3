"""Delivery policy around a connector: ledger rules, per-tenant limits, retries, parking decisions.

This module knows nothing of Kafka. The ``deliver`` stage (:mod:`broker.deliver_stage`) calls
:meth:`Deliverer.process` for one invoice and acts on what it returns: :class:`Delivered`,
:class:`AlreadyDelivered`, :class:`Superseded` (a newer revision is already billed),
:class:`Park` (retry later from a retry topic) or :class:`Dead` (dead-letter it). The whole design
is in ``docs/delivery.md``; in short:

* **Ledger first.** :class:`InvoiceLedger` keeps one entry per invoice version (``pending``,
  ``delivered``, ``not_billable``, ``failed``, ``parked``, ``queued``, ``superseded``) and one per
  work order (revisions waiting behind a parked one, the latest delivered revision). Before each
  create the entry is written ``pending`` with ``uncertain=true`` and **flushed** to the changelog;
  an entry found ``uncertain`` (crash, timeout after sending) is first looked up in the billing
  system by our number and only created when absent.
* **Errors by class** (:mod:`connectors.errors`): ``retryable`` and ``uncertain`` are retried in
  line with tenacity (exponential backoff + jitter) for at most ``retry_budget`` seconds,
  ``rate_limited`` waits ``Retry-After`` in line when short, ``duplicate`` is success, ``permanent``,
  ``auth`` and ``config`` are dead-lettered at once (``auth``/``config`` also stop the tenant).
* **Parking.** When the in-line budget is spent or the wait is long, the invoice is parked and the
  tenant's circuit opens: its other invoices park without calling the billing system until it
  closes, while other tenants keep flowing.
* **Limits.** One :class:`RateLimiter` (sliding window + daily window, fed by the remaining-quota
  headers) and one concurrency semaphore per tenant, from the connector's declared capabilities
  (or ``rate_limit_per_minute`` / ``rate_limit_window_seconds`` / ``max_concurrency`` /
  ``daily_limit`` in the tenant's connector settings).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from broker import metrics
from broker.config import BrokerConfig, ConfigError, format_validation_error
from connectors.sdk.invoice import Invoice, NotBillable
from broker.settings import DeliverySettings
from connectors import registry
from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    DeliveryResult,
    DuplicateError,
    ExternalInvoice,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.base import ConfigError as ConnectorConfigError
from connectors.errors import Quota
from connectors.sdk.idempotency import generation, idempotency_key

log = logging.getLogger("broker.delivery")

DAY = 86400.0


def _utcnow() -> str:
    return datetime.now(UTC).isoformat()


# =========================================================================== interruption
class Abandoned(Exception):
    """The worker is rebalancing or stopping: stop at this safe point without acknowledging.

    Nothing is lost: the record's offset is not committed, so it is delivered again (to this or
    another worker) and the ledger tells what already happened.
    """


class Interrupt:
    """Raised into every wait of the stage when the worker must let go of its records."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def check(self) -> None:
        if self._event.is_set():
            raise Abandoned

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds`` unless interrupted (then :class:`Abandoned`)."""
        self.check()
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        try:
            await asyncio.wait_for(self._event.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise Abandoned

    async def wait_for(self, future: Awaitable[Any]) -> None:
        """Wait until ``future`` is done (it is not cancelled on interruption)."""
        self.check()
        fut = asyncio.ensure_future(future)
        if fut.done():
            return
        stopper = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({fut, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not fut.done():
            raise Abandoned


# =========================================================================== rate limiting
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
        return self.window / self.limit if self.limit else 0.0

    async def acquire(self, interrupt: Interrupt | None = None) -> Slot:
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
class Slot:
    """A call allowed by :class:`RateLimiter` (``at``: when; ``waited``: seconds it waited for it)."""

    at: float
    waited: float = 0.0


# =========================================================================== per-tenant state
@dataclass
class TenantState:
    """A tenant's connector, limits and health as seen by this worker."""

    tenant: str
    system: str
    connector: Connector
    limiter: RateLimiter | None
    semaphore: asyncio.Semaphore | None
    #: wall-clock time until which the tenant's invoices are parked without calling (circuit open)
    circuit_until: float = 0.0
    circuit_reason: str = ""
    #: consecutive cycles that ended parked; reset by any success (drives the circuit's length)
    failures: int = 0
    #: auth/config error: every invoice of the tenant is dead-lettered until the worker restarts
    fatal: ConnectorError | None = None
    extra: dict = field(default_factory=dict)

    def circuit_open(self, now: float | None = None) -> bool:
        return self.circuit_until > (time.time() if now is None else now)


def _limit(connector: Connector, name: str, default: Any) -> Any:
    value = getattr(connector.settings, name, None)
    return default if value is None else value


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
            "invalid connector settings:\n"
            + format_validation_error(exc, prefix=f"tenants.{tenant_id}.billing.settings")
        ) from None
    connector = cls(settings, tenant=tenant_id)
    clients = getattr(tenant, "clients", None)
    if clients and isinstance(getattr(connector, "clients", None), dict):
        connector.clients = dict(clients)
    return connector


# =========================================================================== ledger
class LedgerStore(Protocol):
    """Where ledger entries live: the Faust table in the worker, a dict in unit tests."""

    def get(self, key: str) -> dict | None: ...

    def put(self, key: str, value: dict) -> None: ...

    async def put_durable(self, key: str, value: dict) -> None:
        """``put`` and wait until it is durable (the changelog record acknowledged by the brokers)."""


class DictLedgerStore:
    """In-memory :class:`LedgerStore` (tests, tools)."""

    def __init__(self) -> None:
        self.data: dict[str, dict] = {}
        self.flushes = 0

    def get(self, key: str) -> dict | None:
        return self.data.get(key)

    def put(self, key: str, value: dict) -> None:
        self.data[key] = value

    async def put_durable(self, key: str, value: dict) -> None:
        self.data[key] = value
        self.flushes += 1


@dataclass
class RecordMeta:
    """Where an invoice record came from and how it fared so far (carried in retry-topic headers)."""

    origin_topic: str
    origin_partition: int
    origin_offset: int
    parks: int = 0
    first_failure: float | None = None  # epoch seconds
    attempts: int = 0
    replay_count: int = 0
    last_error: str | None = None

    HEADER_PREFIX = "retry."

    def to_dict(self) -> dict:
        return {
            "origin_topic": self.origin_topic,
            "origin_partition": self.origin_partition,
            "origin_offset": self.origin_offset,
            "parks": self.parks,
            "first_failure": self.first_failure,
            "attempts": self.attempts,
            "replay_count": self.replay_count,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, d: dict) -> RecordMeta:
        return cls(
            str(d.get("origin_topic") or ""),
            int(d.get("origin_partition") or 0),
            int(d.get("origin_offset") or 0),
            int(d.get("parks") or 0),
            d.get("first_failure"),
            int(d.get("attempts") or 0),
            int(d.get("replay_count") or 0),
            d.get("last_error"),
        )

    def to_headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("retry.origin", f"{self.origin_topic}:{self.origin_partition}:{self.origin_offset}".encode()),
            ("retry.parks", str(self.parks).encode()),
            ("retry.attempts", str(self.attempts).encode()),
            ("dlq.replay.count", str(self.replay_count).encode()),
        ]
        if self.first_failure is not None:
            out.append(("retry.first.failure", repr(float(self.first_failure)).encode()))
        if self.last_error:
            out.append(("retry.last.error", self.last_error[:500].encode()))
        return out

    @classmethod
    def from_headers(cls, headers: dict[str, str], *, topic: str, partition: int, offset: int) -> RecordMeta:
        """Meta of a consumed record: a retry record carries its origin; any record may carry a replay count."""
        origin = headers.get("retry.origin")
        if origin and origin.count(":") >= 2:
            o_topic, o_part, o_off = origin.rsplit(":", 2)
            topic, partition, offset = o_topic, int(o_part), int(o_off)

        def _num(name: str, cast):
            try:
                return cast(headers[name]) if headers.get(name) not in (None, "") else None
            except ValueError:
                return None

        return cls(
            topic,
            partition,
            offset,
            parks=_num("retry.parks", int) or 0,
            first_failure=_num("retry.first.failure", float),
            attempts=_num("retry.attempts", int) or 0,
            replay_count=_num("dlq.replay.count", int) or 0,
            last_error=headers.get("retry.last.error"),
        )


ORDER_PREFIX = "order:"


class InvoiceLedger:
    """The delivery ledger's rules over a :class:`LedgerStore`.

    Invoice entry (key = invoice key ``tenant:doc:id:rN``)::

        {"state": "pending|delivered|not_billable|failed|parked|queued|superseded",
         "order_key", "revision", "number", "uncertain": bool, "attempts", "external_id",
         "external_number", "last_error", "error_class", "amendment", "created_at", "updated_at",
         "payload" (parked/queued: the invoice JSON), "meta" (parked/queued: RecordMeta), "due"}

    Work-order entry (key = ``order:tenant:doc:id``)::

        {"parked": [invoice keys, head first], "delivered": {"invoice_key", "revision", "external_id",
         "external_number"} | null}
    """

    STATES = ("pending", "delivered", "not_billable", "failed", "parked", "queued", "superseded")

    def __init__(self, store: LedgerStore):
        self.store = store

    # -------------------------------------------------------------- reading
    def entry(self, key: str) -> dict:
        return dict(self.store.get(key) or {})

    def order(self, order_key: str) -> dict:
        raw = self.store.get(ORDER_PREFIX + order_key) or {}
        return {"parked": list(raw.get("parked") or []), "delivered": raw.get("delivered")}

    def parked(self, order_key: str) -> list[str]:
        return self.order(order_key)["parked"]

    def is_uncertain(self, key: str) -> bool:
        """True when a create may have landed: a crash after ``pending``, a timeout after sending."""
        entry = self.entry(key)
        if not entry:
            return False
        return bool(entry.get("uncertain", entry.get("state") == "pending"))

    def latest_delivered(self, invoice: Invoice) -> dict | None:
        """The newest delivered revision of ``invoice``'s work order other than itself (or None)."""
        delivered = self.order(invoice.order_key)["delivered"]
        if delivered and delivered.get("invoice_key") != invoice.invoice_key:
            return delivered
        if delivered:
            return None
        for rev in range(invoice.revision - 1, 0, -1):  # entries written before work-order entries existed
            key = f"{invoice.order_key}:r{rev}"
            entry = self.entry(key)
            if entry.get("state") == "delivered":
                return {
                    "invoice_key": key,
                    "revision": rev,
                    "external_id": entry.get("external_id"),
                    "external_number": entry.get("external_number"),
                }
        return None

    # -------------------------------------------------------------- writing
    def _put(self, key: str, entry: dict) -> None:
        now = _utcnow()
        entry.setdefault("created_at", now)
        entry["updated_at"] = now
        before = (self.store.get(key) or {}).get("state")
        self.store.put(key, entry)
        if entry.get("state") != before:
            metrics.LEDGER_TRANSITIONS.labels(entry.get("state", "unknown")).inc()

    def _put_order(self, order_key: str, order: dict) -> None:
        self.store.put(ORDER_PREFIX + order_key, order)

    def _base(self, invoice: Invoice | NotBillable) -> dict:
        entry = self.entry(invoice.invoice_key)
        entry.update({"invoice_key": invoice.invoice_key, "order_key": invoice.order_key})
        if isinstance(invoice, Invoice):
            entry.update(
                {
                    "revision": invoice.revision,
                    "number": invoice.invoice_number,
                    "billing_system": invoice.billing_system,
                }
            )
        return entry

    async def begin_attempt(self, invoice: Invoice) -> None:
        """``pending`` + ``uncertain`` written **durably** before the billing system is called."""
        entry = self.entry(invoice.invoice_key)
        if entry.get("state") == "pending" and entry.get("uncertain"):
            return  # already durable (written by an earlier attempt or recovered from the changelog)
        entry = self._base(invoice)
        entry.update({"state": "pending", "uncertain": True})
        now = _utcnow()
        entry.setdefault("created_at", now)
        entry["updated_at"] = now
        if self.entry(invoice.invoice_key).get("state") != "pending":
            metrics.LEDGER_TRANSITIONS.labels("pending").inc()
        await self.store.put_durable(invoice.invoice_key, entry)

    def settle(self, invoice: Invoice, attempts: int, error: ConnectorError) -> None:
        """The last call answered definitively (nothing stored): no lookup needed next time."""
        entry = self._base(invoice)
        entry.update(
            {"uncertain": False, "attempts": attempts, "last_error": str(error)[:500], "error_class": error.error_class}
        )
        self._put(invoice.invoice_key, entry)

    def note_attempts(self, invoice: Invoice, attempts: int, error: BaseException | None = None) -> None:
        entry = self._base(invoice)
        entry["attempts"] = attempts
        if error is not None:
            entry["last_error"] = str(error)[:500]
        self._put(invoice.invoice_key, entry)

    def _drop_from_order(self, invoice: Invoice, *, delivered: dict | None = None) -> None:
        order = self.order(invoice.order_key)
        if invoice.invoice_key in order["parked"]:
            order["parked"].remove(invoice.invoice_key)
        if delivered is not None:
            current = order["delivered"]
            if current is None or int(current.get("revision", 0)) <= int(delivered["revision"]):
                order["delivered"] = delivered
        self._put_order(invoice.order_key, order)

    def _delivered_entry(
        self,
        invoice: Invoice,
        result: DeliveryResult,
        attempts: int,
        *,
        reconciled: bool,
        amendment: dict | None,
        outcome: dict | None,
    ) -> dict:
        """The ``delivered`` entry of ``invoice``; writes the work-order and replaced-revision entries."""
        entry = self._base(invoice)
        for k in ("payload", "meta", "due"):
            entry.pop(k, None)
        entry.update(
            {
                "state": "delivered",
                "uncertain": False,
                "external_id": result.external_id,
                "external_number": result.external_number,
                "attempts": attempts,
                "reconciled": reconciled,
                "delivered_at": _utcnow(),
            }
        )
        if amendment:
            entry["amendment"] = amendment
        if outcome is not None:
            entry["outcome"] = outcome
        self._drop_from_order(
            invoice,
            delivered={
                "invoice_key": invoice.invoice_key,
                "revision": invoice.revision,
                "external_id": result.external_id,
                "external_number": result.external_number,
            },
        )
        if amendment and amendment.get("previous_invoice_key"):
            prev_key = amendment["previous_invoice_key"]
            prev = self.entry(prev_key)
            if prev:
                prev.update({"superseded_by": invoice.invoice_key, "amended": amendment.get("action")})
                self._put(prev_key, prev)
        return entry

    def delivered(
        self,
        invoice: Invoice,
        result: DeliveryResult,
        attempts: int,
        *,
        reconciled: bool = False,
        amendment: dict | None = None,
        outcome: dict | None = None,
    ) -> dict:
        """Mark ``invoice`` delivered (not waiting for the changelog); returns the entry."""
        entry = self._delivered_entry(
            invoice, result, attempts, reconciled=reconciled, amendment=amendment, outcome=outcome
        )
        self._put(invoice.invoice_key, entry)
        return entry

    async def delivered_durably(
        self,
        invoice: Invoice,
        result: DeliveryResult,
        attempts: int,
        *,
        reconciled: bool = False,
        amendment: dict | None = None,
        outcome: dict | None = None,
    ) -> dict:
        """Like :meth:`delivered`, and wait until the broker acknowledged the entry's changelog record.

        ``outcome`` (the outcome record still to publish, see ``docs/delivery.md``) is kept in the
        entry, so that after a crash the outcome is published exactly once."""
        entry = self._delivered_entry(
            invoice, result, attempts, reconciled=reconciled, amendment=amendment, outcome=outcome
        )
        entry.setdefault("created_at", _utcnow())
        entry["updated_at"] = _utcnow()
        if self.entry(invoice.invoice_key).get("state") != "delivered":
            metrics.LEDGER_TRANSITIONS.labels("delivered").inc()
        await self.store.put_durable(invoice.invoice_key, entry)
        return entry

    def outcome_published(self, key: str) -> None:
        """The outcome kept in ``key``'s entry is on ``billing.deliveries``: forget its copy."""
        entry = self.entry(key)
        pending = entry.get("outcome")
        if isinstance(pending, dict) and not pending.get("published"):
            entry["outcome"] = {"published": True, "source": pending.get("source")}
            self._put(key, entry)

    def failed(self, invoice: Invoice, error_class: str, error: BaseException, attempts: int) -> None:
        entry = self._base(invoice)
        for k in ("payload", "due"):
            entry.pop(k, None)
        entry.update(
            {"state": "failed", "error_class": error_class, "last_error": str(error)[:500], "attempts": attempts}
        )
        self._put(invoice.invoice_key, entry)
        self._drop_from_order(invoice)

    def superseded(self, invoice: Invoice, by: dict) -> None:
        entry = self._base(invoice)
        for k in ("payload", "meta", "due"):
            entry.pop(k, None)
        entry.update({"state": "superseded", "superseded_by": by.get("invoice_key")})
        self._put(invoice.invoice_key, entry)
        self._drop_from_order(invoice)

    def parked_at(
        self, invoice: Invoice, payload: bytes, meta: RecordMeta, *, due: float, reason: str, level: int
    ) -> None:
        """Parked on a retry topic; it heads its work order's queue (later revisions wait behind it)."""
        entry = self._base(invoice)
        entry.update(
            {
                "state": "parked",
                "payload": payload.decode("utf-8"),
                "meta": meta.to_dict(),
                "due": due,
                "park_reason": reason,
                "park_level": level,
                "attempts": meta.attempts,
            }
        )
        self._put(invoice.invoice_key, entry)
        order = self.order(invoice.order_key)
        if invoice.invoice_key not in order["parked"]:
            order["parked"].append(invoice.invoice_key)
        self._put_order(invoice.order_key, order)

    def queue_behind(self, invoice: Invoice, payload: bytes, meta: RecordMeta) -> None:
        """An earlier revision of the work order is parked: wait behind it (kept here, with the payload)."""
        entry = self._base(invoice)
        entry.update({"state": "queued", "payload": payload.decode("utf-8"), "meta": meta.to_dict()})
        self._put(invoice.invoice_key, entry)
        order = self.order(invoice.order_key)
        if invoice.invoice_key not in order["parked"]:
            order["parked"].append(invoice.invoice_key)
        self._put_order(invoice.order_key, order)

    def not_billable(self, record: NotBillable) -> None:
        entry = self._base(record)
        entry.update({"state": "not_billable", "reason": record.reason})
        self._put(record.invoice_key, entry)


class CannotReconcile(PermanentError):
    """The outcome of an earlier request is unknown and the connector cannot look it up (nor replay it safely)."""

    error_class = "uncertain"


# =========================================================================== outcomes
@dataclass
class Delivered:
    result: DeliveryResult
    attempts: int
    reconciled: bool = False
    amendment: dict | None = None


@dataclass
class AlreadyDelivered:
    entry: dict


@dataclass
class Superseded:
    by: dict


@dataclass
class Park:
    reason: str
    due: float  # epoch seconds
    level: int
    meta: RecordMeta
    error: BaseException | None = None
    attempted: bool = True


@dataclass
class Dead:
    error_class: str
    error: BaseException
    attempts: int
    meta: RecordMeta

    @property
    def http_status(self) -> int | None:
        return getattr(self.error, "http_status", None)


Outcome = Delivered | AlreadyDelivered | Superseded | Park | Dead


# =========================================================================== the deliverer
class Deliverer:
    """Delivers invoices of any configured tenant through that tenant's connector (module docstring)."""

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
            connector = build_connector(self.config, tenant_id)
            caps = connector.capabilities
            per_minute = _limit(connector, "rate_limit_per_minute", caps.rate_limit_per_minute)
            window = float(_limit(connector, "rate_limit_window_seconds", 60.0))
            daily = _limit(connector, "daily_limit", caps.daily_limit)
            concurrency = _limit(connector, "max_concurrency", caps.max_concurrency)
            limiter = RateLimiter(per_minute, window, daily=daily) if (per_minute or daily) else None
            state = TenantState(
                tenant=tenant_id,
                system=connector.name,
                connector=connector,
                limiter=limiter,
                semaphore=asyncio.Semaphore(concurrency) if concurrency else None,
            )
            if limiter is not None:
                try:
                    connector.on_quota = limiter.observe  # type: ignore[attr-defined]  # see connectors.errors.Quota
                except AttributeError:
                    pass
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
                return own(invoice, operation)
        except Exception:  # noqa: BLE001 - informative only
            pass
        return idempotency_key(invoice.tenant, invoice.billing_system, invoice.invoice_key, operation)

    def backlog_delay(self, tenant_id: str, queued: int) -> float:
        """Rough seconds until ``queued`` more calls fit the tenant's rate limit."""
        try:
            limiter = self.state(tenant_id).limiter
        except Exception:  # noqa: BLE001
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
        """Where and until when to park (or :class:`Dead` once ``park_max_seconds`` is exceeded)."""
        now = time.time()
        delays = self.policy.park_delays
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
        if now + wait - first > self.policy.park_max_seconds:
            exc = error or RetryableError(f"still {reason} after {now - first:.0f} s of parking")
            return Dead(reason, exc, meta.attempts, new_meta)
        return Park(reason, now + wait, level, new_meta, error, attempted)

    def _open_circuit(self, state: TenantState, reason: str, seconds: float | None = None) -> None:
        state.failures += 1
        delays = self.policy.park_delays
        length = seconds if seconds is not None else delays[min(state.failures, len(delays)) - 1]
        until = time.time() + length
        if until > state.circuit_until:
            state.circuit_until = until
            state.circuit_reason = reason
            log.warning(
                "tenant %s (%s): parking its invoices for %.0f s (%s)", state.tenant, state.system, length, reason
            )

    # -------------------------------------------------------------- calls
    @contextlib.asynccontextmanager
    async def _slot(self, state: TenantState):
        """One of the tenant's concurrent slots, for a whole attempt (look-up, ledger write, call(s))."""
        if state.semaphore is None:
            yield
            return
        grant = asyncio.ensure_future(state.semaphore.acquire())
        try:
            await self.interrupt.wait_for(grant)
        except Abandoned:
            if grant.done() and not grant.cancelled() and grant.exception() is None:
                state.semaphore.release()
            else:
                grant.cancel()
            raise
        try:
            yield
        finally:
            state.semaphore.release()

    async def _io(self, state: TenantState, make: Callable[[], Awaitable[Any]]) -> Any:
        """One billing-system call under the tenant's rate limiter (the caller holds a :meth:`_slot`)."""
        slot = None
        try:
            if state.limiter is not None:
                slot = await state.limiter.acquire(self.interrupt)
                if slot.waited:
                    metrics.RATE_LIMIT_WAIT.labels(state.system).inc(slot.waited)
            self.interrupt.check()
            return await make()
        finally:
            if slot is not None:
                state.limiter.release(slot)

    # -------------------------------------------------------------- one invoice
    async def process(self, invoice: Invoice, ledger: InvoiceLedger, meta: RecordMeta) -> Outcome:
        """Deliver ``invoice`` once, following the ledger (module docstring). Never raises a ConnectorError."""
        entry = ledger.entry(invoice.invoice_key)
        if entry.get("state") == "delivered":
            return AlreadyDelivered(entry)
        previous = ledger.latest_delivered(invoice)
        if previous is not None and int(previous.get("revision", 0)) > invoice.revision:
            return Superseded(previous)
        try:
            state = self.state(invoice.tenant)
        except (ConfigError, ConnectorConfigError, KeyError) as exc:
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
            if state.connector.capabilities.amendments:
                amend_from = previous
            else:
                log.warning(
                    "%s: revision %s of %s while revision %s is billed; %s cannot amend, creating alongside",
                    invoice.tenant,
                    invoice.revision,
                    invoice.order_key,
                    previous.get("revision"),
                    state.system,
                )
        with generation(meta.replay_count):  # a replay must not get the cached answer of the failed try
            return await self._cycle(state, invoice, ledger, meta, amend_from)

    async def _cycle(
        self, state: TenantState, invoice: Invoice, ledger: InvoiceLedger, meta: RecordMeta, previous: dict | None
    ) -> Outcome:
        policy = self.policy
        connector = state.connector
        system = state.system
        key = invoice.invoice_key
        attempts = meta.attempts
        uncertain = ledger.is_uncertain(key)
        first_failure: float | None = None
        backoff = wait_exponential_jitter(
            multiplier=policy.retry_initial, max=policy.retry_max, jitter=policy.retry_initial
        )

        def long_wait(exc: BaseException) -> bool:
            return isinstance(exc, RateLimitedError) and exc.retry_after > policy.retry_after_inline

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, RetryableError) or long_wait(exc):
                return False
            if state.circuit_open():  # another invoice of this tenant gave up: park now
                return False
            return first_failure is None or time.monotonic() - first_failure < policy.retry_budget

        def wait(retry_state) -> float:
            exc = retry_state.outcome.exception()
            if isinstance(exc, RateLimitedError):
                return exc.retry_after + random.uniform(0, 0.1)
            return backoff(retry_state)

        async def sleep(seconds: float) -> None:
            await self.interrupt.sleep(seconds)

        async def one() -> Delivered:
            async with self._slot(state):
                return await attempt_once()

        async def attempt_once() -> Delivered:
            nonlocal attempts, uncertain, first_failure
            self.interrupt.check()
            try:
                caps = connector.capabilities
                if uncertain and not caps.lookup_by_reference:
                    if not caps.native_idempotency:
                        raise CannotReconcile(
                            f"{invoice.invoice_number}: an earlier request may have created it and {system} offers "
                            "neither a look-up by our number nor an idempotency key: check the billing system, then replay"
                        )
                    uncertain = False  # the same idempotency key makes the repeat a replay of the first request
                if uncertain:
                    found = await self._io(state, lambda: connector.find(invoice.invoice_number))
                    metrics.LOOKUPS.labels(system, "found" if found else "absent").inc()
                    if found is not None and (caps.native_idempotency or previous is not None):
                        details = {"reconciled_by_lookup": True, "Total": str(found.total), "Status": found.status}
                        return Delivered(
                            DeliveryResult(
                                key, found.external_id, found.number, created=True, attempts=attempts, details=details
                            ),
                            attempts,
                            reconciled=True,
                        )
                    if found is not None:
                        # Multi-step systems without an idempotency key (draft -> finalise/send): the lost
                        # request may have left the document half done. Their deliver() looks up by our
                        # reference first and only completes the missing steps, so call it once more.
                        await ledger.begin_attempt(invoice)
                        attempts += 1
                        result = await self._io(state, lambda: connector.deliver(invoice))
                        metrics.DELIVERY_ATTEMPTS.labels(system, "ok").inc()
                        details = {**result.details, "reconciled_by_lookup": True}
                        return Delivered(
                            DeliveryResult(
                                key,
                                result.external_id,
                                result.external_number,
                                created=True,
                                attempts=attempts,
                                details=details,
                            ),
                            attempts,
                            reconciled=True,
                        )
                    uncertain = False
                await ledger.begin_attempt(invoice)
                uncertain = True
                attempts += 1
                try:
                    if previous is not None:
                        prev = ExternalInvoice(str(previous.get("external_id") or ""), str(previous["external_number"]))
                        result = await self._io(state, lambda: connector.amend(invoice, prev))
                    else:
                        result = await self._io(state, lambda: connector.deliver(invoice))
                except UncertainOutcomeError:
                    metrics.DELIVERY_ATTEMPTS.labels(system, "uncertain").inc()
                    raise
                except DuplicateError as exc:
                    metrics.DELIVERY_ATTEMPTS.labels(system, "duplicate").inc()
                    found = exc.existing or await self._io(state, lambda: connector.find(invoice.invoice_number))
                    if found is None:
                        raise UncertainOutcomeError(
                            f"{exc} (but looking {invoice.invoice_number} up found nothing yet)"
                        ) from None
                    return Delivered(
                        DeliveryResult(
                            key,
                            found.external_id,
                            found.number,
                            created=False,
                            attempts=attempts,
                            details={"duplicate": True},
                        ),
                        attempts,
                    )
                except ConnectorError as exc:
                    uncertain = False
                    ledger.settle(invoice, attempts, exc)
                    metrics.DELIVERY_ATTEMPTS.labels(system, exc.error_class).inc()
                    raise
                metrics.DELIVERY_ATTEMPTS.labels(system, "ok").inc()
                return Delivered(result, attempts)
            except RetryableError as exc:
                if first_failure is None:
                    first_failure = time.monotonic()
                if isinstance(exc, RateLimitedError) and state.limiter is not None:
                    state.limiter.pause(exc.retry_after)
                if should_retry(exc):
                    metrics.DELIVERY_RETRIES.labels(system, exc.error_class).inc()
                    if isinstance(exc, RateLimitedError):
                        metrics.RATE_LIMIT_WAIT.labels(system).inc(exc.retry_after)
                raise

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(should_retry), wait=wait, sleep=sleep, reraise=True
            ):
                with attempt:
                    delivered = await one()
        except Abandoned:
            raise
        except RetryableError as exc:
            ledger.note_attempts(invoice, attempts, exc)
            meta = replace(meta, attempts=attempts)
            if isinstance(exc, RateLimitedError):
                self._open_circuit(state, "rate_limited", exc.retry_after)
                return self.park_decision(state, meta, "rate_limited", retry_after=exc.retry_after, error=exc)
            if not state.circuit_open():
                self._open_circuit(state, exc.error_class)
            return self.park_decision(state, meta, exc.error_class, error=exc)
        except (AuthError, ConnectorConfigError) as exc:
            state.fatal = exc
            log.error(
                "tenant %s (%s): %s; its invoices are dead-lettered until this is fixed and the worker restarted",
                state.tenant,
                system,
                exc.error_class,
            )
            return Dead(exc.error_class, exc, attempts, replace(meta, attempts=attempts))
        except ConnectorError as exc:
            return Dead(exc.error_class, exc, attempts, replace(meta, attempts=attempts))
        state.failures = 0
        amendment = None
        details = delivered.result.details or {}
        if previous is not None:
            amendment = {
                "previous_invoice_key": previous.get("invoice_key"),
                "previous_number": previous.get("external_number"),
                "action": details.get("amendment", "replaced"),
                "credit_note_number": details.get("credit_note_number"),
                "credit_note_id": details.get("credit_note_id"),
            }
            metrics.AMENDMENTS.labels(system, str(amendment["action"])).inc()
        delivered.amendment = amendment
        return delivered

    async def aclose(self) -> None:
        """Close every connector's HTTP client."""
        for state in self._tenants.values():
            try:
                await state.connector.aclose()
            except Exception:  # noqa: BLE001 - shutting down
                pass


__all__ = [
    "Abandoned",
    "AlreadyDelivered",
    "Dead",
    "Delivered",
    "Deliverer",
    "DictLedgerStore",
    "Interrupt",
    "InvoiceLedger",
    "LedgerStore",
    "Park",
    "RateLimiter",
    "RecordMeta",
    "Slot",
    "Superseded",
    "TenantState",
    "build_connector",
]
