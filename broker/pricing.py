"""Pure pricing: one maintenance event + the tenant's configuration -> an invoice.

:func:`price_event` is the only entry point the pipeline needs. It does no I/O, reads no clock
(``priced_at`` is passed in) and is deterministic: the same event and tenant always give the same
invoice, down to the invoice number. Everything is :class:`~decimal.Decimal`; floats are never used.

Units
-----
* time: ``TimeEntry.seconds`` (worked seconds, breaks already subtracted) -> billable **minutes**
  (int) -> invoice quantity in **hours** (``Decimal``, at most 4 decimals);
* rates (``hourly_rate``, ``cost_rate``, ``travel_hourly_rate``) are currency per hour;
* money is in the tenant currency (events carry no currency of their own); every ``net``/``tax``/``total``/``cost`` is rounded half-up to
  the currency's minor unit with :func:`broker.money.round_money` (EUR 2 decimals, JPY 0, BHD 3);
* percentages are plain numbers (``Decimal("23")`` = 23 %).

Pipeline (each step is a small function so later issues can add time bands, contracts and
discounts without touching the others)::

    labour_lines + call_out_line + part_lines + expense_lines   (work orders, scheduled jobs)
    quote_lines                                                  (approved quotes)
        -> list[LineDraft]            net and cost rounded; cost-only drafts have billable=False
        -> apply_tax(draft, rate)     -> InvoiceLine (tax and total rounded per line)
        -> totals(lines)              -> sums of the rounded lines
        -> Invoice | NotBillable

Rules (issue 2)
---------------
* **Labour** (``kind == "work"`` entries): grouped per (technician, visit, rate), where visit is
  ``entry.visit_id`` or, when absent, the event's document id. Worked seconds of a group are summed,
  rounded **up** to ``billing_increment_minutes`` (an exact multiple stays as is) and raised to
  ``minimum_billable_minutes``. Rate: the technician's own ``hourly_rate``, else the skill rate of
  ``entry.skill or technician.skill or rate_card.default_skill`` (a technician missing from the rate
  card uses ``default_skill``). Entries of one technician in one visit with different skill rates
  make separate lines (each with its own increment and minimum). A group with 0 worked seconds is
  dropped.
* **Travel** (``kind == "travel"``): grouped like labour and rounded up to the increment, but no
  minimum. Billed at ``travel_hourly_rate`` when set; otherwise not billed, only its cost is kept.
* **Labour/travel cost** = billable minutes × cost rate / 60 (the technician's ``cost_rate``, else
  the cost rate of the skill used), i.e. our cost is measured on the same rounded time as the line
  is billed on; unbilled travel uses its increment-rounded minutes too.
* **Call-out fee**: one line per *corrective* work order when ``rate_card.call_out_fee`` is set;
  never for preventive work orders, scheduled jobs or quotes.
* **Parts**: client-supplied parts are neither billed nor costed. Unit price = ``unit_price`` when
  the event has one, else ``round_money(unit_cost × (1 + parts_markup_percent/100))``; net =
  ``round_money(quantity × unit price)``; cost = ``round_money(quantity × unit_cost)`` (0 when the
  cost is unknown).
* **Expenses**: billable ones -> net = ``round_money(amount × (1 + expenses_handling_percent/100))``,
  cost = amount; non-billable ones make no line but their amount counts in ``cost_total``.
* **Quotes** (``maintenance.quote.approved``): one line per quote line, net =
  ``round_money(quantity × unit_price)``, tax rate = the line's ``tax_rate`` when given (``0`` is
  honoured), else ``tenant.vat_percent``; cost 0.
* A work order with a ``quote_id`` is priced like any other work order in this version (time,
  parts, expenses, call-out); the quote id is only mentioned in the notes.
* **Tax** per line: ``tax = round_money(net × rate / 100)`` (half-up), ``total = net + tax``.
  Document totals are sums of the rounded lines, so ``net_total + tax_total == total`` exactly.
* ``net_total == 0`` -> :class:`~broker.invoice.NotBillable` with reason ``"zero total: ..."``.

Errors
------
:class:`PricingError` (a ``ValueError``) names the field path and the value, e.g.
``data.client_id: unknown client for tenant 'acme-fm' (got 'CLI-XYZ')`` or
``data.parts.1.unit_cost: part 'REF-R410A' has neither unit_price nor unit_cost (got None)``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from broker.config import RateCard, Tenant
from broker.events import QuoteApproved, ScheduledJobClosed, WorkOrderCompleted
from broker.invoice import Invoice, InvoiceLine, LineKind, NotBillable
from broker.money import round_money

Event = WorkOrderCompleted | ScheduledJobClosed | QuoteApproved

#: Longest invoice number :func:`invoice_number` produces (longer ones are shortened with a hash).
INVOICE_NUMBER_MAX = 32

_HOURS_DP = Decimal("0.0001")
_HUNDRED = Decimal(100)
_SIXTY = Decimal(60)


class PricingError(ValueError):
    """The event holds data that cannot be priced.

    ``field`` is the dotted path inside the event (``data.parts.2.unit_cost``), ``value`` the
    offending value; the message is ``"<field>: <reason> (got <value!r>)"``.
    """

    def __init__(self, field: str, value: object, reason: str):
        super().__init__(f"{field}: {reason} (got {value!r})")
        self.field = field
        self.value = value
        self.reason = reason


@dataclass(frozen=True)
class LineDraft:
    """A priced line before tax.

    ``net`` and ``cost`` are already rounded to the currency. ``tax_rate`` is ``None`` to use the
    tenant's VAT. ``billable=False`` marks a cost-only item (non-billable expense, unbilled travel):
    it never becomes an invoice line but its cost counts in ``cost_total``.
    """

    kind: LineKind
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    net: Decimal
    source: str
    rule: str
    cost: Decimal = Decimal("0")
    tax_rate: Decimal | None = None
    billable: bool = True


# --------------------------------------------------------------------------- helpers
def billable_minutes(seconds: int, increment: int, minimum: int) -> int:
    """Worked ``seconds`` -> billable minutes: rounded up to ``increment`` minutes, then at least ``minimum``.

    ``0`` seconds give ``0`` (nothing worked, nothing billed). An exact multiple is not rounded:
    ``billable_minutes(7200, 15, 60) == 120``; ``billable_minutes(7201, 15, 60) == 135``;
    ``billable_minutes(600, 15, 60) == 60``.
    """
    if seconds <= 0:
        return 0
    step = increment * 60
    blocks = -(-seconds // step)  # ceil division on ints: no float anywhere
    return max(blocks * increment, minimum)


def hours_quantity(minutes: int) -> Decimal:
    """``minutes`` as hours: exact when it fits in 4 decimals (195 -> ``3.25``), else rounded to 4 dp.

    Nets are always computed from minutes (``minutes × rate / 60``), never from this rounded quantity.
    """
    hours = Decimal(minutes) / _SIXTY
    rounded = hours.quantize(_HOURS_DP)
    return hours if hours == rounded else rounded


def minutes_amount(minutes: int, hourly_rate: Decimal, currency: str) -> Decimal:
    """``minutes × hourly_rate / 60`` rounded half-up to the currency minor unit."""
    return round_money(Decimal(minutes) * hourly_rate / _SIXTY, currency)


def _fmt_hours(minutes: int) -> str:
    return f"{hours_quantity(minutes)} h"


def _sanitise(value: str) -> str:
    cleaned = re.sub(r"[^A-Z0-9-]+", "-", value.upper())
    return re.sub(r"-{2,}", "-", cleaned).strip("-")


def invoice_number(prefix: str, document: str, document_id: str, revision: int) -> str:
    """Deterministic invoice number ``PREFIX-DOC-ID-RN``, e.g. ``invoice_number("ACME", "wo", "1001", 1) == "ACME-WO-1001-R1"``.

    Everything is upper-cased and every run of characters outside ``[A-Z0-9-]`` becomes one ``-``.
    The number is shortened when it would exceed :data:`INVOICE_NUMBER_MAX` (32) characters, or
    when sanitising replaced characters of the id (so ``"A/B"`` and ``"A_B"`` stay distinct): the
    id is cut and followed by ``-`` and the first 8 hex digits (upper case) of
    ``sha256(document_id)``, keeping prefix, document and revision readable and the result unique.
    """
    head = f"{_sanitise(prefix)}-{_sanitise(document)}-"
    tail = f"-R{int(revision)}"
    clean_id = _sanitise(document_id)
    plain = f"{head}{clean_id}{tail}"
    lossy = clean_id != document_id.upper()
    if not lossy and clean_id and len(plain) <= INVOICE_NUMBER_MAX:
        return plain
    digest = hashlib.sha256(document_id.encode("utf-8")).hexdigest()[:8].upper()
    room = INVOICE_NUMBER_MAX - len(head) - len(tail) - len(digest) - 1
    kept = clean_id[: max(room, 0)].strip("-")
    middle = f"{kept}-{digest}" if kept else digest
    return f"{head}{middle}{tail}"


def document_reference(event: Event) -> str:
    """Human reference: ``"WO 1001"``, ``"Scheduled job SJ-7"`` or ``"Quote Q-12"``."""
    if isinstance(event, WorkOrderCompleted):
        return f"WO {event.data.work_order_id}"
    if isinstance(event, ScheduledJobClosed):
        return f"Scheduled job {event.data.scheduled_job_id}"
    return f"Quote {event.data.quote_id}"


# --------------------------------------------------------------------------- rates
@dataclass(frozen=True)
class _Rate:
    rule: str          # "rate:technician:T31" or "rate:skill:hvac"
    skill: str
    hourly: Decimal
    cost: Decimal
    who: str           # technician name (or id) for descriptions


def _labour_rate(rate_card: RateCard, technician_id: str, entry_skill: str | None, field: str) -> _Rate:
    tech = rate_card.technicians.get(technician_id)
    skill = entry_skill or (tech.skill if tech else None) or rate_card.default_skill
    if skill not in rate_card.skills:
        raise PricingError(field, skill, f"skill is not in the rate card ({', '.join(rate_card.skills)})")
    skill_rate = rate_card.skills[skill]
    who = (tech.name if tech and tech.name else None) or technician_id
    cost = tech.cost_rate if tech and tech.cost_rate is not None else skill_rate.cost_rate
    if tech is not None and tech.hourly_rate is not None:
        return _Rate(f"rate:technician:{technician_id}", skill, tech.hourly_rate, cost, who)
    return _Rate(f"rate:skill:{skill}", skill, skill_rate.hourly_rate, cost, who)


# --------------------------------------------------------------------------- line builders
def labour_lines(event: WorkOrderCompleted | ScheduledJobClosed, tenant: Tenant) -> list[LineDraft]:
    """Labour and travel drafts from ``event.data.time_entries`` (rules in the module docstring).

    Labour: quantity in hours, ``unit="h"``, ``unit_price`` = hourly rate, ``net`` = billable
    minutes × rate / 60 rounded; ``source`` = ``time_entry:TE-1,TE-2``; ``rule`` like
    ``rate:skill:hvac; increment 15 min; minimum 60 min``. Travel lines have kind ``travel`` and
    rule ``rate:travel; increment 15 min``, or are cost-only (``billable=False``) when the rate card
    has no ``travel_hourly_rate``.
    Raises :class:`PricingError` for an entry skill missing from the rate card
    (``data.time_entries.N.skill``).
    """
    card = tenant.rate_card
    currency = tenant.currency
    default_visit = event.business_id
    groups: dict[tuple[str, str, str, str], tuple[_Rate, list[str], int]] = {}
    for index, entry in enumerate(event.data.time_entries):
        rate = _labour_rate(card, entry.technician_id, entry.skill, f"data.time_entries.{index}.skill")
        key = (entry.kind, entry.technician_id, entry.visit_id or default_visit, rate.rule if entry.kind == "work" else "")
        if key in groups:
            first_rate, ids, seconds = groups[key]
            groups[key] = (first_rate, ids + [entry.id], seconds + entry.seconds)
        else:
            groups[key] = (rate, [entry.id], entry.seconds)

    drafts: list[LineDraft] = []
    for (kind, tech_id, visit, _), (rate, ids, seconds) in groups.items():
        source = "time_entry:" + ",".join(ids)
        visit_note = "" if visit == default_visit else f", visit {visit}"
        if kind == "work":
            minutes = billable_minutes(seconds, card.billing_increment_minutes, card.minimum_billable_minutes)
            if minutes == 0:
                continue
            drafts.append(
                LineDraft(
                    kind="labour",
                    description=f"Labour – {rate.who} ({rate.skill}){visit_note}: {_fmt_hours(minutes)}",
                    quantity=hours_quantity(minutes),
                    unit="h",
                    unit_price=rate.hourly,
                    net=minutes_amount(minutes, rate.hourly, currency),
                    source=source,
                    rule=f"{rate.rule}; increment {card.billing_increment_minutes} min; "
                    f"minimum {card.minimum_billable_minutes} min",
                    cost=minutes_amount(minutes, rate.cost, currency),
                )
            )
        else:
            minutes = billable_minutes(seconds, card.billing_increment_minutes, 0)
            if minutes == 0:
                continue
            travel_rate = card.travel_hourly_rate
            billed = travel_rate is not None
            drafts.append(
                LineDraft(
                    kind="travel",
                    description=f"Travel – {rate.who}{visit_note}: {_fmt_hours(minutes)}",
                    quantity=hours_quantity(minutes),
                    unit="h",
                    unit_price=travel_rate if billed else Decimal("0"),
                    net=minutes_amount(minutes, travel_rate, currency) if billed else Decimal("0"),
                    source=source,
                    rule=f"rate:travel; increment {card.billing_increment_minutes} min"
                    if billed
                    else "travel not billed (no travel_hourly_rate); cost only",
                    cost=minutes_amount(minutes, rate.cost, currency),
                    billable=billed,
                )
            )
    return drafts


def call_out_line(event: Event, tenant: Tenant) -> LineDraft | None:
    """The call-out fee draft for a corrective work order, or ``None``.

    ``None`` when the rate card has no ``call_out_fee`` or the event is not a corrective
    ``maintenance.work_order.completed`` (preventive work orders, scheduled jobs, quotes).
    """
    fee = tenant.rate_card.call_out_fee
    if fee is None or not isinstance(event, WorkOrderCompleted) or event.data.kind != "corrective":
        return None
    return LineDraft(
        kind="call_out",
        description="Call-out fee",
        quantity=Decimal("1"),
        unit="un",
        unit_price=fee,
        net=round_money(fee, tenant.currency),
        source=f"work_order:{event.data.work_order_id}",
        rule="call_out_fee; corrective work order",
    )


def part_lines(event: WorkOrderCompleted | ScheduledJobClosed, tenant: Tenant) -> list[LineDraft]:
    """Part drafts from ``event.data.parts`` (client-supplied parts are skipped).

    Quantity and ``unit`` as in the event (may be fractional: ``2.5`` kg). Raises
    :class:`PricingError` naming ``data.parts.N.unit_cost`` and the SKU when a part has neither
    ``unit_price`` nor ``unit_cost``.
    """
    card = tenant.rate_card
    currency = tenant.currency
    drafts: list[LineDraft] = []
    for index, part in enumerate(event.data.parts):
        if part.client_supplied:
            continue
        if part.unit_price is not None:
            unit_price = part.unit_price
            rule = "part:catalogue_price"
        elif part.unit_cost is not None:
            unit_price = round_money(part.unit_cost * (1 + card.parts_markup_percent / _HUNDRED), currency)
            rule = f"part:cost_plus_markup {card.parts_markup_percent}%"
        else:
            raise PricingError(
                f"data.parts.{index}.unit_cost",
                part.unit_cost,
                f"part {part.sku!r} has neither unit_price nor unit_cost",
            )
        cost = round_money(part.quantity * part.unit_cost, currency) if part.unit_cost is not None else Decimal("0")
        drafts.append(
            LineDraft(
                kind="part",
                description=f"{part.description} ({part.sku})",
                quantity=part.quantity,
                unit=part.unit,
                unit_price=unit_price,
                net=round_money(part.quantity * unit_price, currency),
                source=f"part:{part.id}",
                rule=rule,
                cost=cost,
            )
        )
    return drafts


def expense_lines(event: WorkOrderCompleted | ScheduledJobClosed, tenant: Tenant) -> list[LineDraft]:
    """Expense drafts: billable ones at amount × (1 + handling %) rounded; non-billable ones cost-only.

    Every draft has quantity 1 and ``cost`` = the expense amount (rounded).
    """
    handling = tenant.rate_card.expenses_handling_percent
    currency = tenant.currency
    drafts: list[LineDraft] = []
    for expense in event.data.expenses:
        cost = round_money(expense.amount, currency)
        if expense.billable:
            net = round_money(expense.amount * (1 + handling / _HUNDRED), currency)
            rule = f"expense:handling {handling}%"
        else:
            net = Decimal("0")
            rule = "expense:not billable; cost only"
        drafts.append(
            LineDraft(
                kind="expense",
                description=expense.description,
                quantity=Decimal("1"),
                unit="un",
                unit_price=net,
                net=net,
                source=f"expense:{expense.id}",
                rule=rule,
                cost=cost,
                billable=expense.billable,
            )
        )
    return drafts


def quote_lines(event: QuoteApproved, tenant: Tenant) -> list[LineDraft]:
    """One draft per approved quote line: net = ``round_money(quantity × unit_price)``, own tax rate when given."""
    drafts: list[LineDraft] = []
    for line in event.data.lines:
        description = f"{line.description} ({line.sku})" if line.sku else line.description
        drafts.append(
            LineDraft(
                kind="quote",
                description=description,
                quantity=line.quantity,
                unit="un",
                unit_price=line.unit_price,
                net=round_money(line.quantity * line.unit_price, tenant.currency),
                source=f"quote_line:{line.id}",
                rule="quote:fixed_price" + ("; own tax rate" if line.tax_rate is not None else ""),
                tax_rate=line.tax_rate,
            )
        )
    return drafts


def apply_tax(draft: LineDraft, tax_rate: Decimal, currency: str) -> InvoiceLine:
    """Turn a draft into an :class:`InvoiceLine`: ``tax = round_money(net × tax_rate / 100)`` half-up, ``total = net + tax``.

    ``tax_rate`` is a percentage; the draft's own ``tax_rate`` wins when it is not ``None``.
    """
    rate = draft.tax_rate if draft.tax_rate is not None else tax_rate
    net = round_money(draft.net, currency)
    tax = round_money(net * rate / _HUNDRED, currency)
    return InvoiceLine(
        kind=draft.kind,
        description=draft.description,
        quantity=draft.quantity,
        unit=draft.unit,
        unit_price=draft.unit_price,
        net=net,
        tax_rate=rate,
        tax=tax,
        total=net + tax,
        source=draft.source,
        rule=draft.rule,
        cost=draft.cost,
    )


def totals(lines: list[InvoiceLine], currency: str) -> tuple[Decimal, Decimal, Decimal]:
    """``(net_total, tax_total, total)`` as sums of the rounded lines (so ``net + tax == total``)."""
    zero = round_money(Decimal("0"), currency)
    net = sum((line.net for line in lines), zero)
    tax = sum((line.tax for line in lines), zero)
    return net, tax, net + tax


# --------------------------------------------------------------------------- entry point
def price_event(
    event: Event,
    tenant_id: str,
    tenant: Tenant,
    *,
    priced_at: datetime | None = None,
) -> Invoice | NotBillable:
    """Price one parsed event for ``tenant`` (configured as ``tenant_id``).

    Returns an :class:`~broker.invoice.Invoice` (amounts in ``tenant.currency``, lines rounded to its
    minor unit, ``issue_date`` = the event time's date in ``tenant.timezone``, ``due_date`` =
    ``issue_date + payment_terms_days``), or :class:`~broker.invoice.NotBillable` with reason
    ``"zero total: ..."`` when nothing billable is left (``cost_total`` still reported).

    Raises :class:`PricingError` naming the field and value: ``tenant`` when the event belongs to
    another tenant, ``data.client_id`` for a client missing from ``tenant.clients``,
    ``data.time_entries.N.skill`` for an unknown skill, ``data.parts.N.unit_cost`` for a part with
    neither price nor cost.
    """
    if event.tenant != tenant_id:
        raise PricingError("tenant", event.tenant, f"event belongs to another tenant than {tenant_id!r}")
    currency = tenant.currency
    data = event.data
    client = tenant.clients.get(data.client_id)
    if client is None:
        configured = ", ".join(sorted(tenant.clients)) or "none"
        raise PricingError("data.client_id", data.client_id, f"unknown client for tenant {tenant_id!r} (configured: {configured})")

    drafts: list[LineDraft] = []
    notes: list[str] = [f"Site: {data.site_id}"]
    if data.summary:
        notes.insert(0, data.summary)
    if data.contract_ref:
        notes.append(f"Contract: {data.contract_ref}")
    if isinstance(event, QuoteApproved):
        drafts += quote_lines(event, tenant)
        if event.data.work_order_id:
            notes.append(f"Work order: {event.data.work_order_id}")
    else:
        fee = call_out_line(event, tenant)
        if fee is not None:
            drafts.append(fee)
        drafts += labour_lines(event, tenant)
        drafts += part_lines(event, tenant)
        drafts += expense_lines(event, tenant)
        if isinstance(event, WorkOrderCompleted) and event.data.quote_id:
            notes.append(f"Executes approved quote {event.data.quote_id} (priced on actual time and materials)")
        skipped = [d for d in drafts if not d.billable]
        if skipped:
            notes.append("Not billed (cost only): " + ", ".join(d.source for d in skipped))

    lines = [apply_tax(d, tenant.vat_percent, currency) for d in drafts if d.billable]
    net_total, tax_total, total = totals(lines, currency)
    cost_total = sum((d.cost for d in drafts), round_money(Decimal("0"), currency))

    if net_total == 0:
        what = "no billable lines" if not lines else f"{len(lines)} line(s) summing to 0"
        return NotBillable(
            invoice_key=event.invoice_key,
            order_key=event.partition_key,
            tenant=tenant_id,
            event_id=event.id,
            event_type=event.type,
            event_time=event.time,
            client_id=data.client_id,
            reason=f"zero total: {what} for {document_reference(event)} r{event.revision}",
            cost_total=cost_total,
        )

    issue_date = event.time.astimezone(tenant.zone).date()
    return Invoice(
        invoice_key=event.invoice_key,
        invoice_number=invoice_number(tenant.invoice_prefix, event.document, event.business_id, event.revision),
        order_key=event.partition_key,
        tenant=tenant_id,
        billing_system=tenant.billing.system,
        event_id=event.id,
        event_type=event.type,
        event_time=event.time,
        document=event.document,
        document_id=event.business_id,
        revision=event.revision,
        client_id=data.client_id,
        client_name=client.name,
        contact_id=client.contact_id,
        site_id=data.site_id,
        currency=currency,
        issue_date=issue_date,
        due_date=issue_date + timedelta(days=tenant.payment_terms_days),
        reference=document_reference(event),
        lines=lines,
        net_total=net_total,
        tax_total=tax_total,
        total=total,
        cost_total=cost_total,
        margin=net_total - cost_total,
        notes=notes,
        priced_at=priced_at,
    )
