"""Pricing with state, without Kafka: the allowance and approved-quote tables as plain mappings.

The pricing agent (:mod:`broker.app`) calls :func:`price_with_state` with its Faust tables
(``Mapping`` interface) and then performs the returned writes; tests call it with dicts. The
function itself never writes: it returns what to write, so the caller decides (and a write that
would not change anything is not returned, so a redelivered event leaves the tables — and their
changelogs — untouched).

Tables (values are JSON):

* ``corrective-allowance`` – key ``tenant:client:YYYY-MM`` (month in the tenant's zone), value
  ``{contract id: {invoice key: minutes}}`` (see :mod:`broker.pricing.contracts`).
* ``approved-quotes`` – key ``tenant:qt:quote id``, value the latest approved revision of the
  quote event as JSON text.

Both are keyed by data of one client, and the pricing agent's input topic is keyed
``tenant:client``, so each client's state lives in the partition that sees all of its events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from broker.config import Tenant
from broker.events import ChangeEvent, EventDecodeError, QuoteApproved, parse_event
from broker.pricing.contracts import allowance_key, allowance_month, applicable_contract, apply_allowance
from broker.pricing.core import Event, PricingError
from broker.pricing.engine import price_event, quote_needed
from connectors.sdk.invoice import Invoice, NotBillable

ALLOWANCE_TABLE = "corrective-allowance"
QUOTES_TABLE = "approved-quotes"

#: A value of the allowance table: ``{contract id: {invoice key: minutes}}``.
AllowanceRecord = Mapping[str, Mapping[str, int]]
#: A table write ``(table name, key, new value)``: an allowance record, or a quote event as JSON text.
TableWrite = tuple[str, str, dict[str, dict[str, int]] | str]


def quote_key(tenant_id: str, quote_id: str) -> str:
    """``approved-quotes`` table key ``tenant:qt:quote id``."""
    return f"{tenant_id}:qt:{quote_id}"


def pricing_key(event: Event | ChangeEvent) -> str:
    """Key of the pricing agent's input topic: ``tenant:client id`` (co-partitions a client's state; a
    document's change events name its client, so they follow its completions in order)."""
    return f"{event.tenant}:{event.data.client_id}"


@dataclass
class StatefulResult:
    """The priced outcome and the table writes ``(table name, key, new value)`` the caller must perform."""

    priced: Invoice | NotBillable
    writes: list[TableWrite] = field(default_factory=list)


def price_with_state(
    event: Event,
    tenant_id: str,
    tenant: Tenant,
    *,
    allowances: Mapping[str, AllowanceRecord],
    quotes: Mapping[str, str],
    priced_at: datetime | None = None,
) -> StatefulResult:
    """Price ``event`` reading the allowance and quote tables; return the outcome and the writes to make.

    * Corrective work order under a contract with an allowance: reads
      ``allowances[tenant:client:YYYY-MM][contract id]``, prices, and returns the updated record
      when the consumption changed it (never for a redelivered event).
    * Approved quote: returns a write storing it in ``quotes`` unless a same-or-newer revision is
      already stored (identical JSON is not rewritten).
    * Work order executing a quote billed on completion / as deposit + balance: reads the quote.

    Raises :class:`~broker.pricing.PricingError` like :func:`~broker.pricing.price_event`.
    """
    writes: list[TableWrite] = []
    used = None
    akey = None
    record = None
    if event.tenant == tenant_id and not isinstance(event, QuoteApproved):
        client = tenant.clients.get(event.data.client_id)
        contract = applicable_contract(event, tenant, client) if client is not None else None
        if contract is not None and contract.covers.corrective_minutes > 0:
            akey = allowance_key(tenant_id, event.data.client_id, allowance_month(event, tenant))
            record = allowances.get(akey)
            used = (record or {}).get(contract.id)

    quote = None
    wanted = quote_needed(event, tenant) if event.tenant == tenant_id else None
    if wanted:
        stored = quotes.get(quote_key(tenant_id, wanted))
        if stored is not None:
            try:
                parsed = parse_event(stored)
            except EventDecodeError as exc:  # pragma: no cover - we only store validated events
                raise PricingError("data.quote_id", wanted, f"stored quote is unreadable: {exc}") from None
            quote = parsed if isinstance(parsed, QuoteApproved) else None

    priced = price_event(event, tenant_id, tenant, allowance_used=used, quote=quote, priced_at=priced_at)

    if priced.allowance is not None and akey is not None:
        new = apply_allowance(record, priced.allowance)
        if new != (record or {}):
            writes.append((ALLOWANCE_TABLE, akey, new))
    if isinstance(event, QuoteApproved):
        qkey = quote_key(tenant_id, event.data.quote_id)
        stored = quotes.get(qkey)
        text = event.model_dump_json()
        if stored != text:
            newer = True
            if stored is not None:
                try:
                    newer = parse_event(stored).revision <= event.revision
                except EventDecodeError:  # pragma: no cover
                    newer = True
            if newer:
                writes.append((QUOTES_TABLE, qkey, text))
    return StatefulResult(priced, writes)
