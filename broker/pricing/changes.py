"""Lifecycle change events -> :class:`~connectors.sdk.invoice.DocumentChange` records (pure, no I/O).

``maintenance.work_order.reopened`` becomes ``action="reopen"``, ``maintenance.work_order.cancelled``
and ``maintenance.quote.cancelled`` ``action="cancel"``. The record is published on
``billing.invoices`` under the document's key (``tenant:doc:id``), like its invoices, so the deliver
stage handles it in the document's order; what it does there is in ``docs/delivery.md``.
"""

from __future__ import annotations

from broker.config import Tenant
from broker.events import ChangeEvent
from broker.pricing.core import PricingError, zone_of
from connectors.sdk.invoice import DocumentChange

__all__ = ["document_change"]


def document_change(event: ChangeEvent, tenant_id: str, tenant: Tenant) -> DocumentChange:
    """The change record of ``event`` for ``tenant`` (configured as ``tenant_id``).

    ``reason``: the event's, else ``"<WO id|Quote id> r<revision> reopened|cancelled"`` (``"WO 1001 r2
    cancelled"``); ``issue_date``: the event time's date in the tenant's time zone; ``billing_system``:
    the tenant's. The client need not be configured: nothing is priced. Raises :class:`PricingError`
    (field ``tenant``) for an event of another tenant.
    """
    if event.tenant != tenant_id:
        raise PricingError("tenant", event.tenant, f"event belongs to another tenant than {tenant_id!r}")
    data = event.data
    done = "reopened" if event.action == "reopen" else "cancelled"
    reference = f"WO {event.business_id}" if event.document == "wo" else f"Quote {event.business_id}"
    return DocumentChange(
        action=event.action,
        change_key=event.change_key,
        order_key=event.partition_key,
        tenant=tenant_id,
        billing_system=tenant.billing.system,
        event_id=event.id,
        event_type=event.type,
        event_time=event.time,
        document="wo" if event.document == "wo" else "qt",
        document_id=event.business_id,
        revision=event.revision,
        client_id=data.client_id,
        reason=data.reason or f"{reference} r{event.revision} {done}",
        issue_date=event.time.astimezone(zone_of(tenant)).date(),
    )
