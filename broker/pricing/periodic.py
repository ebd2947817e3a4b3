"""Periodic invoicing: a client's documents of a week or a month on one invoice (pure; no I/O).

A client with ``invoicing: weekly | monthly`` gets no invoice per document. Each priced document
(an :class:`Invoice`, or a :class:`NotBillable` covered by a contract) is kept in the state of its
**period** — the ISO week (Monday to Sunday) or the calendar month of its ``issue_date``, on the
tenant's wall clock — under the table key ``tenant:client:period`` (``acme:CLI-1:2026-03``,
``acme:CLI-1:2026-W10``); a later revision of a document replaces it. Once the period is over
(:func:`closes_at`: the tenant's local midnight after its last day) the worker closes it and
:func:`build_period_invoice` makes one invoice: every document's lines in time order, each line's
text prefixed with its document (``WO 1001: Labour – …``), and, for monthly invoices (weekly: the
week holding the 1st of a month), each contract's ``monthly_fee`` as a subscription line.

The periodic invoice is keyed ``tenant:per:client-period:rN`` (order key ``tenant:per:client-period``,
number ``PREFIX-PE-CLIENT-PERIOD-RN``: two letters, as ``WO``, so the shortest number keeps its
length). After the close:

* a revision or cancellation of a document of the closed period rebuilds it as revision ``N + 1``:
  the deliver stage amends (or credits) the delivered invoice, as for any revision;
* a new document dated in a closed period goes to the period holding "now" (``late:
  next_period``, default) or into the closed one as a new revision (``late: amend``).

Replays are harmless. After a crash the worker prices again the events whose offsets it had not
committed, against a table recovered with their effects: a period keeps, per document, the latest
revision it applied (kept, cancelled or reopened), so an older revision replayed after a newer one,
or a cancelled revision priced again, changes nothing, and a redelivered revision compares equal.
Closing twice is harmless too: the invoice of a closed period is rebuilt from the same state and has
the same key and content, which the deliver stage's ledger recognises (docs/pricing.md, "Periodic
invoicing"). Amounts are not re-priced: each document's lines are already rounded to the currency
(half-up, per line); the subscription line is rounded the same way; totals are the sums of lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from babel.dates import format_skeleton

from broker.config import Client, Tenant
from broker.pricing.core import ZERO, LineDraft, finish_line, texts_of, trusted, zone_of
from broker.pricing.fingerprint import fingerprint_of
from broker.pricing.numbers import invoice_number
from connectors.sdk.invoice import Invoice, InvoiceLine, NotBillable

__all__ = [
    "PERIODS_TABLE",
    "Period",
    "PeriodResult",
    "accumulate",
    "build_period_invoice",
    "close_period",
    "closes_at",
    "due_periods",
    "period_containing",
    "period_key",
    "remove_document",
]

#: Faust table of period states (``tenant:client:period`` -> state) and document index entries
#: (``index:<order key>`` -> period key), co-partitioned with the client's events.
PERIODS_TABLE = "billing-periods"
INDEX = "index:"
_STATE_VERSION = 1

Priced = Invoice | NotBillable


@dataclass(frozen=True)
class Period:
    """One invoicing period: ``id`` (``2026-03``, ``2026-W10``), local days ``start`` to ``end`` (excluded)."""

    id: str
    start: date
    end: date
    kind: Literal["weekly", "monthly"]


@dataclass
class PeriodResult:
    """Table writes ``(PERIODS_TABLE, key, value)`` to make and the documents to publish on ``billing.invoices``."""

    writes: list[tuple[str, str, Any]] = field(default_factory=list)
    publish: list[Priced] = field(default_factory=list)


def period_containing(day: date, invoicing: str) -> Period:
    """The ``weekly`` (ISO week, Monday first) or ``monthly`` period holding local date ``day``.
    Raises ``ValueError`` for another ``invoicing``."""
    if invoicing == "monthly":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        return Period(f"{start.year:04d}-{start.month:02d}", start, end, "monthly")
    if invoicing == "weekly":
        start = day - timedelta(days=day.weekday())
        iso = start.isocalendar()
        return Period(f"{iso.year:04d}-W{iso.week:02d}", start, start + timedelta(days=7), "weekly")
    raise ValueError(f"invoicing {invoicing!r} has no periods")


def _period_of_id(period_id: str) -> Period:
    if "-W" in period_id:
        year, week = period_id.split("-W")
        return period_containing(date.fromisocalendar(int(year), int(week), 1), "weekly")
    year, month = period_id.split("-")
    return period_containing(date(int(year), int(month), 1), "monthly")


def period_key(tenant_id: str, client_id: str, period_id: str) -> str:
    """``tenant:client:period``: the table key of a client's period."""
    return f"{tenant_id}:{client_id}:{period_id}"


def closes_at(tenant: Tenant, period: Period) -> datetime:
    """When ``period`` is over: the tenant's local midnight starting ``period.end``, in UTC."""
    return datetime.combine(period.end, time(0), tzinfo=zone_of(tenant)).astimezone(UTC)


def _local_day(priced: Priced, tenant: Tenant) -> date:
    if isinstance(priced, Invoice):
        return priced.issue_date
    return priced.event_time.astimezone(zone_of(tenant)).date()


def _new_state(tenant_id: str, client_id: str, period: Period) -> dict[str, Any]:
    return {
        "v": _STATE_VERSION,
        "tenant": tenant_id,
        "client": client_id,
        "period": period.id,
        "status": "open",
        "revision": 1,
        "documents": {},
    }


def _stored(priced: Priced) -> dict[str, Any]:
    """The JSON kept for a document, without ``priced_at`` (a redelivered event priced again later
    must compare equal)."""
    stored = priced.model_dump(mode="json")
    stored.pop("priced_at", None)
    return stored


def _loaded(stored: Mapping[str, Any]) -> Priced:
    if stored.get("status") == "invoice":
        return Invoice.model_validate(stored)
    return NotBillable.model_validate(stored)


def accumulate(
    priced: Priced, tenant_id: str, tenant: Tenant, periods: Mapping[str, Any], *, now: datetime
) -> PeriodResult:
    """Keep ``priced`` (a document of a periodic client) in its period; ``periods``: the table.

    Returns the writes and, when the document changed a closed period, that period's rebuilt
    invoice (a new revision) to publish. ``now``: aware datetime (the late-document rule).
    Raises ``ValueError`` when the client is not invoiced periodically.
    """
    client_id = priced.client_id
    invoicing = tenant.invoicing_of(client_id)
    result = PeriodResult()
    known = periods.get(INDEX + priced.order_key)
    if known is not None and periods.get(known) is not None:
        key = known  # a revision stays in the period of its document
    else:
        period = period_containing(_local_day(priced, tenant), invoicing)
        key = period_key(tenant_id, client_id, period.id)
        state = periods.get(key)
        if state is not None and state["status"] == "closed" and tenant.periodic.late == "next_period":
            period = period_containing(now.astimezone(zone_of(tenant)).date(), invoicing)
            key = period_key(tenant_id, client_id, period.id)
        if periods.get(key) is None:
            result.writes.append((PERIODS_TABLE, key, _new_state(tenant_id, client_id, period)))
    state = dict(periods.get(key) or result.writes[-1][2])
    documents = dict(state["documents"])
    stored = _stored(priced)
    revision, seen = _revision(priced), _seen(state, priced.order_key)
    if revision < seen or documents.get(priced.order_key) == stored:
        return result  # an older revision replayed after a newer one, or a redelivery: nothing changes
    if revision == seen and priced.order_key not in documents:
        return result  # this revision was cancelled or reopened (a replay of its pricing)
    documents[priced.order_key] = stored
    state["documents"] = documents
    state["revisions"] = {**state.get("revisions", {}), priced.order_key: revision}
    if state["status"] == "closed":
        state["revision"] += 1
        result.publish.append(build_period_invoice(state, tenant, now=now))
    result.writes = [w for w in result.writes if w[1] != key] + [(PERIODS_TABLE, key, state)]
    if known != key:
        result.writes.append((PERIODS_TABLE, INDEX + priced.order_key, key))
    return result


def remove_document(
    order_key: str, revision: int, tenant: Tenant, periods: Mapping[str, Any], *, now: datetime
) -> PeriodResult | None:
    """Take a document cancelled or reopened at ``revision`` out of its period; ``None`` when no
    period holds it. A change older than the document's latest revision (a replay after a newer
    revision), or one already applied, gives an empty result.

    In a closed period this rebuilds its invoice as a new revision (to publish)."""
    key = periods.get(INDEX + order_key)
    state = periods.get(key) if isinstance(key, str) else None
    if not isinstance(key, str) or state is None:
        return None
    if order_key not in state["documents"]:
        return PeriodResult() if order_key in state.get("revisions", {}) else None
    if revision < _seen(state, order_key):
        return PeriodResult()
    state = dict(state)
    state["documents"] = {k: v for k, v in state["documents"].items() if k != order_key}
    state["revisions"] = {**state.get("revisions", {}), order_key: revision}
    result = PeriodResult()
    if state["status"] == "closed":
        state["revision"] += 1
        result.publish.append(build_period_invoice(state, tenant, now=now))
    result.writes.append((PERIODS_TABLE, key, state))
    return result


def _revision(priced: Priced) -> int:
    """The document revision ``priced`` prices (its invoice key ends ``:rN``)."""
    return int(priced.invoice_key.rsplit(":r", 1)[1])


def _seen(state: Mapping[str, Any], order_key: str) -> int:
    """The latest revision of ``order_key`` the period applied (kept, cancelled or reopened); 0 if none."""
    seen = state.get("revisions", {}).get(order_key)
    if seen is not None:
        return int(seen)
    stored = state["documents"].get(order_key)
    return int(stored["invoice_key"].rsplit(":r", 1)[1]) if stored is not None else 0


def due_periods(
    periods: Mapping[str, Any], tenants: Mapping[str, Tenant], now: datetime, *, grace: timedelta = timedelta(0)
) -> list[str]:
    """Keys of the open periods over at ``now`` by at least ``grace`` (time left for the last day's
    events still on their way, e.g. a platform retrying a webhook); tenants no longer configured are
    skipped."""
    due = []
    for key, state in periods.items():
        if key.startswith(INDEX) or not isinstance(state, Mapping) or state.get("status") != "open":
            continue
        tenant = tenants.get(state["tenant"])
        if tenant is not None and closes_at(tenant, _period_of_id(state["period"])) + grace <= now:
            due.append(key)
    return due


def close_period(key: str, tenant: Tenant, periods: Mapping[str, Any], *, now: datetime) -> PeriodResult:
    """Close the period ``key`` (open: mark it closed) and return its invoice to publish; an already
    closed period's current invoice is returned again (the same key and content); an unknown key
    gives nothing."""
    state = periods.get(key)
    result = PeriodResult()
    if state is None:
        return result
    if state["status"] == "open":
        state = {**state, "status": "closed"}
        result.writes.append((PERIODS_TABLE, key, state))
    result.publish.append(build_period_invoice(state, tenant, now=now))
    return result


def _reference(priced: Priced, tenant: Tenant) -> str:
    texts = texts_of(tenant, priced.client_id)
    document, document_id = priced.order_key.split(":", 2)[1:]
    return texts.text(f"ref_{document}", id=document_id)


def _fee_lines(state: Mapping[str, Any], tenant: Tenant, client: Client, period: Period) -> list[InvoiceLine]:
    """One subscription line per contract with a ``monthly_fee`` valid in the billed month."""
    months = [period.start] if period.kind == "monthly" else [d for d in _days(period) if d.day == 1]
    if not months:
        return []
    month = months[0]
    month_end = (month + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    texts = texts_of(tenant, state["client"])
    inclusive = tenant.tax.prices_include_tax and not (client.tax_exempt or client.reverse_charge)
    zero_rated = client.tax_exempt or client.reverse_charge
    standard = tenant.tax_rate("subscription")
    lines = []
    for contract in client.contracts:
        if contract.monthly_fee is None:
            continue
        if contract.valid_from > month_end or (contract.valid_to is not None and contract.valid_to < month):
            continue
        label = format_skeleton("yMMMM", month, locale=texts.language)
        draft = LineDraft(
            kind="subscription",
            description=texts.text("subscription", contract=contract.id, month=label),
            quantity=Decimal(1),
            unit="un",
            unit_price=contract.monthly_fee,
            source=f"contract:{contract.id}:{month:%Y-%m}",
            rule=f"contract:{contract.id}:monthly_fee",
            tax_key="subscription",
            gross=tenant.tax.prices_include_tax,
        )
        tax_type = (
            tenant.tax.reverse_charge_tax_type
            if client.reverse_charge
            else tenant.tax.exempt_tax_type
            if client.tax_exempt
            else None
        )
        lines.append(
            finish_line(
                draft,
                standard_rate=standard,
                line_rate=ZERO if zero_rated else standard,
                inclusive=inclusive,
                currency=tenant.currency,
                tax_type=tax_type,
            )
        )
    return lines


def _days(period: Period) -> list[date]:
    return [period.start + timedelta(days=i) for i in range((period.end - period.start).days)]


def build_period_invoice(state: Mapping[str, Any], tenant: Tenant, *, now: datetime) -> Priced:
    """The invoice of a period state: its documents' lines (time order, prefixed with the
    document), the subscription lines, totals as sums of lines; :class:`NotBillable` when it
    totals 0. ``now`` is its ``priced_at``. Raises ``KeyError`` for a client no longer configured."""
    tenant_id, client_id, period_id = state["tenant"], state["client"], state["period"]
    client = tenant.clients[client_id]
    period = _period_of_id(period_id)
    texts = texts_of(tenant, client_id)
    documents = sorted(
        (_loaded(stored) for stored in state["documents"].values()), key=lambda d: (d.event_time, d.order_key)
    )
    lines: list[InvoiceLine] = []
    for document in documents:
        reference = _reference(document, tenant)
        for line in document.lines:
            text = texts.text("section", reference=reference, description=line.description)
            lines.append(line.model_copy(update={"description": text}))
    lines += _fee_lines(state, tenant, client, period)
    zero = Decimal(0).quantize(Decimal(1).scaleb(-_places(tenant.currency)))
    net_total = sum((line.net for line in lines), zero)
    tax_total = sum((line.tax for line in lines), zero)
    total = net_total + tax_total
    cost_total = sum((d.cost_total for d in documents), zero)
    document_id = f"{client_id}-{period_id}"
    order_key = f"{tenant_id}:per:{document_id}"
    revision = int(state["revision"])
    invoice_key = f"{order_key}:r{revision}"
    closed = closes_at(tenant, period)
    fee_contract = next((line.source.split(":")[1] for line in lines if line.kind == "subscription"), None)
    assets = list(dict.fromkeys(a for d in documents for a in d.asset_ids))
    if total == 0:
        return NotBillable(
            reason_code="covered_by_contract" if any(line.covered_by for line in lines) else "zero_total",
            reason=f"zero total for {len(documents)} document(s) of period {period_id}",
            invoice_key=invoice_key,
            order_key=order_key,
            tenant=tenant_id,
            event_id=f"period:{period_key(tenant_id, client_id, period_id)}:r{revision}",
            event_type="billing.period.closed",
            event_time=closed,
            client_id=client_id,
            cost_total=cost_total,
            lines=[line for line in lines if line.covered_by],
            contract_id=fee_contract,
            asset_ids=assets,
        )
    issue_date = period.end - timedelta(days=1)
    legal = list(dict.fromkeys(note for d in documents if isinstance(d, Invoice) for note in d.legal_notes))
    values: dict[str, object] = {
        "status": "invoice",
        "invoice_key": invoice_key,
        "invoice_number": invoice_number(tenant.invoice_prefix, "pe", document_id, revision, tenant.invoice_number_max),
        "order_key": order_key,
        "tenant": tenant_id,
        "billing_system": tenant.billing.system,
        "event_id": f"period:{period_key(tenant_id, client_id, period_id)}:r{revision}",
        "event_type": "billing.period.closed",
        "event_time": closed,
        "document": "per",
        "document_id": document_id,
        "revision": revision,
        "client_id": client_id,
        "client_name": client.name,
        "contact_id": client.contact_id,
        "site_id": documents[0].site_id if documents and isinstance(documents[0], Invoice) else "",
        "currency": tenant.currency,
        "issue_date": issue_date,
        "due_date": issue_date + timedelta(days=tenant.payment_terms_days),
        "reference": texts.text("period_reference", period=_period_label(period, texts.language)),
        "tax_inclusive": tenant.tax.prices_include_tax and not (client.tax_exempt or client.reverse_charge),
        "lines": lines,
        "net_total": net_total,
        "tax_total": tax_total,
        "total": total,
        "cost_total": cost_total,
        "margin": net_total - cost_total,
        "notes": [f"Period {period_id}: {len(documents)} document(s)", *legal],
        "legal_notes": legal,
        "contract_id": fee_contract,
        "allowance": None,
        "asset_ids": assets,
        "priced_at": now,
        "corrects": None,
        "draft": tenant.approval_of(client_id) == "draft",
    }
    values["fingerprint"] = fingerprint_of(values, lines)
    return trusted(Invoice, values)


def _period_label(period: Period, language: str) -> str:
    if period.kind == "monthly":
        return format_skeleton("yMMMM", period.start, locale=language)
    return f"{period.start.isoformat()} – {(period.end - timedelta(days=1)).isoformat()}"


def _places(currency: str) -> int:
    from connectors.sdk.money import quantum

    return -quantum(currency).as_tuple().exponent  # type: ignore[operator]
