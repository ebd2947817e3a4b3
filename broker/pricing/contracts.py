"""Client contracts and the monthly corrective-hours allowance (pure helpers; the state lives in a Faust table).

Allowance record (the value of table ``corrective-allowance`` under key ``tenant:client:YYYY-MM``)::

    {"<contract id>": {"<invoice key>": <minutes consumed>, ...}, ...}

Every priced invoice version of a corrective work order under a contract with an allowance is
recorded, even with 0 minutes. The allowance used *by others* is the sum, over the other work
orders, of the minutes of their **latest** recorded revision, so a new revision replaces its
order's earlier consumption, and an invoice key already recorded re-uses its recorded minutes
(redelivery, duplicate publish): pricing the same event twice never consumes twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from broker.config import Client, Contract, Tenant
from broker.events import QuoteApproved, ScheduledJobClosed, WorkOrderCompleted
from broker.pricing.core import zone_of
from connectors.sdk.invoice import AllowanceUse

Event = WorkOrderCompleted | ScheduledJobClosed | QuoteApproved


def local_date(event: Event, tenant: Tenant) -> date:
    """The event time's date in the tenant's time zone (decides contract validity and the allowance month)."""
    return event.time.astimezone(zone_of(tenant)).date()


def applicable_contract(event: Event, tenant: Tenant, client: Client) -> Contract | None:
    """The client's contract valid on the event's local date at the event's site, or ``None``."""
    return client.contract_for(event.data.site_id, local_date(event, tenant))


def allowance_month(event: Event, tenant: Tenant) -> str:
    """``"YYYY-MM"`` of the event time in the tenant's zone (``2026-03-31T23:30Z`` is April in Lisbon)."""
    day = local_date(event, tenant)
    return f"{day.year:04d}-{day.month:02d}"


def allowance_key(tenant_id: str, client_id: str, month: str) -> str:
    """Allowance table key ``tenant:client:YYYY-MM``."""
    return f"{tenant_id}:{client_id}:{month}"


def split_invoice_key(invoice_key: str) -> tuple[str, int]:
    """``"acme:wo:1001:r2"`` -> ``("acme:wo:1001", 2)``."""
    order, _, rev = invoice_key.rpartition(":")
    try:
        return order, int(rev.lstrip("r"))
    except ValueError:
        return invoice_key, 0


def used_by_others(used: Mapping[str, int], order_key: str) -> int:
    """Minutes consumed this month by work orders other than ``order_key`` (latest revision of each)."""
    latest: dict[str, tuple[int, int]] = {}
    for key, minutes in used.items():
        order, revision = split_invoice_key(key)
        if order == order_key:
            continue
        if order not in latest or revision > latest[order][0]:
            latest[order] = (revision, int(minutes))
    return sum(minutes for _, minutes in latest.values())


def consume_allowance(
    *,
    key: str,
    contract: Contract,
    month: str,
    invoice_key: str,
    order_key: str,
    needed: int,
    used: Mapping[str, int] | None,
) -> AllowanceUse:
    """How many of ``needed`` corrective minutes the allowance covers for ``invoice_key``.

    ``used`` is the contract's record for the month (invoice key -> minutes). When
    ``invoice_key`` is already there its recorded minutes are re-used (a redelivery gives the same
    result); otherwise ``min(needed, allowance − used_by_others)`` (never negative).
    """
    used = used or {}
    allowance = contract.covers.corrective_minutes
    before = used_by_others(used, order_key)
    consumed = min(int(used[invoice_key]), needed) if invoice_key in used else max(0, min(needed, allowance - before))
    return AllowanceUse(
        key=key,
        contract_id=contract.id,
        month=month,
        invoice_key=invoice_key,
        allowance_minutes=allowance,
        used_before_minutes=before,
        needed_minutes=needed,
        consumed_minutes=consumed,
    )


def apply_allowance(record: Mapping[str, Mapping[str, int]] | None, use: AllowanceUse) -> dict[str, dict[str, int]]:
    """New allowance record after ``use`` (the input is not modified). Equal to the input when nothing changed."""
    new = {contract: dict(entries) for contract, entries in (record or {}).items()}
    new.setdefault(use.contract_id, {})[use.invoice_key] = use.consumed_minutes
    return new
