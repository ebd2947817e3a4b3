"""Lifecycle changes of a document in the deliver stage: reopen (hold) and cancel (retire).

:func:`apply_change` takes one :class:`~connectors.sdk.invoice.DocumentChange` (consumed in the
document's order, like its invoices) and returns what happened:

* ``reopen`` -> :class:`Held`: the ledger records the hold (revisions up to the reopened one are
  not billed from now on, :meth:`InvoiceLedger.hold`), the queued or parked revisions up to it are
  dropped, and the billed document stays as it is; the next completed revision amends it.
* ``cancel`` -> the ledger records the cancellation and drops every queued or parked revision
  (:meth:`InvoiceLedger.withdraw`), then the billed document, if any, is retired by the tenant's
  connector (:meth:`Connector.cancel`) in a :class:`CancelCycle` — the same in-line retries,
  concurrency slots, rate limiter, parking and error classes as a delivery. The change's entry
  is written ``pending`` durably before the first call; the connector's ``cancel`` is idempotent
  (it re-reads the document; an already retired one gives ``action="none"``), so a record consumed
  again after a crash completes the cancellation exactly once. Returns :class:`Cancelled`, or
  :class:`Park` / :class:`Dead` like a delivery. A connector that cannot retire invoices
  (``capabilities.amendments`` false) is :class:`Dead` ``permanent`` with the reason: never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from broker import metrics
from broker.delivery.deliverer import CallCycle, Deliverer
from broker.delivery.ledger import Amendment, CancelRef, DeliveredRef, InvoiceLedger, LedgerEntry, RecordMeta
from broker.delivery.limits import TenantState
from broker.delivery.policy import Dead, Delivered, Park
from connectors.sdk.errors import ConnectorError, PermanentError
from connectors.sdk.interface import DeliveryResult
from connectors.sdk.invoice import DocumentChange, ExternalInvoice

__all__ = ["CancelCycle", "Cancelled", "ChangeDecision", "Held", "apply_change"]


@dataclass
class Held:
    """A reopening recorded: ``billed`` (the document the billing system keeps billing, ``None``: none)
    stays as it is; ``dropped``: the queued or parked revisions taken out (their entries as they were)."""

    change: DocumentChange
    billed: DeliveredRef | None
    dropped: list[LedgerEntry] = field(default_factory=list)


@dataclass
class Cancelled:
    """A cancellation done: ``cancel`` is the document's record (``retired``: the document retired,
    ``action``, ``credit_note_number``); ``amendment``: how the connector retired it (``None``: nothing
    was billed, or the record was consumed again after it was done); ``dropped``: the queued or parked
    revisions taken out; ``attempts``: calls made."""

    change: DocumentChange
    cancel: CancelRef
    amendment: Amendment | None = None
    dropped: list[LedgerEntry] = field(default_factory=list)
    attempts: int = 0


#: What :func:`apply_change` returns.
ChangeDecision = Held | Cancelled | Park | Dead


class CancelCycle(CallCycle):
    """Retire ``previous`` (the billed document of a cancelled one) through :meth:`Connector.cancel`,
    with :class:`~broker.delivery.deliverer.CallCycle`'s retries and limits. ``invoice`` is the change."""

    invoice: DocumentChange

    async def _step(self) -> Delivered:
        change = self.invoice
        previous: DeliveredRef = self.previous or {
            "invoice_key": "",
            "revision": 0,
            "external_id": None,
            "external_number": None,
        }
        await self.ledger.begin_attempt(change)  # pending, durably, before the first call
        self.attempts += 1
        target = ExternalInvoice(str(previous.get("external_id") or ""), str(previous.get("external_number") or ""))
        try:
            retired = await self._io(
                partial(
                    self.connector.cancel, target, key=change.change_key, reason=change.reason, issued=change.issue_date
                )
            )
        except ConnectorError as exc:
            metrics.DELIVERY_ATTEMPTS.labels(self.system, exc.error_class).inc()
            raise
        metrics.DELIVERY_ATTEMPTS.labels(self.system, "ok").inc()
        result = DeliveryResult(
            change.change_key, target.external_id, target.number, False, details=retired.as_details()
        )
        return Delivered(result, self.attempts)

    def _amendment(self, delivered: Delivered) -> Amendment | None:
        """How the document was retired (counted in ``broker_cancellations_total``)."""
        details = delivered.result.details
        previous = self.previous
        amendment: Amendment = {
            "previous_invoice_key": previous["invoice_key"] if previous else None,
            "previous_number": previous["external_number"] if previous else None,
            "action": str(details.get("amendment", "none")),
            "credit_note_number": details.get("credit_note_number"),
            "credit_note_id": details.get("credit_note_id"),
        }
        metrics.CANCELLATIONS.labels(self.system, amendment["action"]).inc()
        return amendment


async def apply_change(
    deliverer: Deliverer, change: DocumentChange, ledger: InvoiceLedger, meta: RecordMeta
) -> ChangeDecision:
    """Apply ``change`` to its document (module docstring). Never raises a ConnectorError; raises
    :class:`~broker.delivery.Abandoned` when interrupted at a safe point."""
    if change.action == "reopen":
        billed = ledger.order(change.order_key)["delivered"]
        return Held(change, billed, ledger.hold(change))
    entry = ledger.entry(change.change_key)
    if entry.get("state") == "cancelled":  # consumed again: done already
        done = ledger.order(change.order_key).get("cancelled")
        if done is not None and done["change_key"] == change.change_key:
            return Cancelled(change, done)
    cancel, dropped = ledger.withdraw(change)
    billed = cancel.get("billed")
    if billed is None or not billed.get("external_number"):
        return Cancelled(change, ledger.cancelled(change, None), None, dropped)
    ready = deliverer.ready(change.tenant, meta)
    if not isinstance(ready, TenantState):
        return ready
    if not ready.connector.capabilities.amendments:
        return Dead(
            "permanent",
            PermanentError(
                f"{change.order_key} was cancelled (revision {change.revision}) while {billed.get('external_number')} "
                f"(revision {billed.get('revision')}) is billed in {ready.system}; the {ready.system} connector cannot "
                "retire invoices (capabilities.amendments is false), so it still bills it: void or credit it by hand, "
                "then drop this record. Later revisions up to the cancelled one are not billed"
            ),
            meta.attempts,
            meta,
        )
    outcome = await CancelCycle(deliverer, ready, change, ledger=ledger, meta=meta, previous=billed).run()
    if isinstance(outcome, Park | Dead):
        return outcome
    if not isinstance(outcome, Delivered):  # pragma: no cover - a CancelCycle decides nothing else
        raise TypeError(f"unexpected cancellation outcome {outcome!r}")
    return Cancelled(change, ledger.cancelled(change, outcome.amendment), outcome.amendment, dropped, outcome.attempts)
