"""Delivery policy around a connector: ledger rules, per-tenant limits, retries, parking decisions.

This package knows nothing of Kafka and does not import :mod:`broker.deliver_stage`, which uses it:
the ``deliver`` stage calls :meth:`Deliverer.process` for one invoice and acts on what it returns:
:class:`Delivered`, :class:`AlreadyDelivered`, :class:`Superseded` (a newer revision is already
billed), :class:`Withheld` (its document is cancelled or reopened), :class:`Corrected` (other content
for a delivered invoice: amended), :class:`Park` (retry later from a retry topic) or :class:`Dead`
(dead-letter it); for a document change :func:`apply_change` returns :class:`Held`,
:class:`Cancelled`, :class:`Park` or :class:`Dead`; :class:`Unapproved` when an operator must
approve the invoice first (``docs/approval.md``). The whole design
is in ``docs/delivery.md``; in short:

* **Ledger first.** :class:`InvoiceLedger` keeps one entry per invoice version (``pending``,
  ``delivered``, ``not_billable``, ``failed``, ``parked``, ``queued``, ``superseded``) and one per
  work order (revisions waiting behind a parked one, the latest delivered revision). Before each
  create the entry is written ``pending`` with ``uncertain=true`` and **flushed** to the changelog;
  an entry found ``uncertain`` (crash, timeout after sending) is first looked up in the billing
  system by our number and only created when absent.
* **Errors by class** (:mod:`connectors.sdk.errors`): ``retryable`` and ``uncertain`` are retried in
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

Modules: :mod:`~broker.delivery.ledger` (ledger rules, :class:`RecordMeta`),
:mod:`~broker.delivery.limits` (rate limiter, concurrency, tenant state),
:mod:`~broker.delivery.policy` (outcomes, retry / park / circuit rules),
:mod:`~broker.delivery.deliverer` (:class:`Deliverer`), :mod:`~broker.delivery.interrupt`,
:mod:`~broker.delivery.fence` (ownership proof before writes).
Everything public is importable from ``broker.delivery``.
"""

from broker.delivery.changes import CancelCycle, Cancelled, ChangeDecision, Held, apply_change
from broker.delivery.deliverer import (
    AttemptCycle,
    CallCycle,
    Corrected,
    Decision,
    Deliverer,
    Unapproved,
    Withheld,
    build_connector,
    correction_of,
)
from broker.delivery.fence import Fence, Fenced
from broker.delivery.interrupt import Abandoned, Interrupt
from broker.delivery.ledger import (
    ORDER_PREFIX,
    Amendment,
    CancelRef,
    DeliveredRef,
    DictLedgerStore,
    HoldRef,
    InvoiceLedger,
    LedgerEntry,
    LedgerRecord,
    LedgerStore,
    PendingOutcome,
    RecordMeta,
    StoredEntry,
    WorkOrder,
    entry_state,
    pack_entry,
    unpack_entry,
)
from broker.delivery.limits import DAY, RateLimiter, Slot, TenantState, new_tenant_state
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

__all__ = [
    "DAY",
    "ORDER_PREFIX",
    "Abandoned",
    "AlreadyDelivered",
    "Amendment",
    "AttemptCycle",
    "CallCycle",
    "CancelCycle",
    "CancelRef",
    "Cancelled",
    "CannotReconcile",
    "ChangeDecision",
    "Corrected",
    "Dead",
    "Decision",
    "Delivered",
    "DeliveredRef",
    "Deliverer",
    "DictLedgerStore",
    "Fence",
    "Fenced",
    "Held",
    "HoldRef",
    "InlineRetry",
    "Interrupt",
    "InvoiceLedger",
    "LedgerEntry",
    "LedgerRecord",
    "LedgerStore",
    "Outcome",
    "Park",
    "PendingOutcome",
    "RateLimiter",
    "RecordMeta",
    "Slot",
    "StoredEntry",
    "Superseded",
    "TenantState",
    "Unapproved",
    "Withheld",
    "WorkOrder",
    "apply_change",
    "build_connector",
    "correction_of",
    "entry_state",
    "new_tenant_state",
    "open_circuit",
    "pack_entry",
    "park_decision",
    "unpack_entry",
]
