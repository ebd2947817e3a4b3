"""The pure pricing function :func:`price_event` (rules: ``docs/pricing.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from broker.config import DEFAULT_REVERSE_CHARGE_NOTE, Client, Contract, TaxLineType, Tenant
from broker.events import Expense, PartUsage, QuoteApproved, ScheduledJobClosed, TimeEntry, WorkOrderCompleted
from broker.pricing.bands import CompiledBands
from broker.pricing.contracts import allowance_key, allowance_month, applicable_contract, consume_allowance
from broker.pricing.core import (
    ZERO,
    Event,
    LineDraft,
    PricingError,
    check_priced_size,
    document_reference,
    finish,
    fmt_hours,
    fmt_percent,
    hours_quantity,
    minutes_amount,
    money_rounder,
    seconds_amount,
    texts_of,
    trusted,
    worked_minutes,
    zone_of,
)
from broker.pricing.fingerprint import fingerprint_of
from broker.pricing.items import expense_drafts, part_drafts, quote_line_drafts
from broker.pricing.labour import (
    LabourLine,
    TravelGroup,
    call_outs,
    discount_rule,
    labour_description,
    labour_lines,
    labour_rule,
    labour_unit_price,
    travel_description,
    travel_groups,
)
from broker.pricing.numbers import invoice_number
from connectors.sdk.invoice import AllowanceUse, Invoice, InvoiceLine, NotBillable

_BANDS: dict[int, tuple[Tenant, CompiledBands]] = {}


def _compiled(tenant: Tenant) -> CompiledBands:
    """The tenant's bands compiled once per tenant object (the tenant is kept alive with its entry)."""
    hit = _BANDS.get(id(tenant))
    if hit is not None and hit[0] is tenant:
        return hit[1]
    if len(_BANDS) > 256:
        _BANDS.clear()
    compiled = CompiledBands(tenant.rate_card.time_bands, tenant.holidays)
    _BANDS[id(tenant)] = (tenant, compiled)
    return compiled


def _covered_what(rule: str) -> str:
    """``"contract:ABONO:corrective_allowance 4 h/month; ..."`` -> ``"corrective_allowance"``."""
    head = rule.split(";", 1)[0]
    return head.split(":", 2)[-1].split(" ", 1)[0]


def quote_needed(event: Event, tenant: Tenant) -> str | None:
    """The quote id whose approved lines pricing ``event`` needs, or ``None``.

    A work order executing a quote needs it when the quote is billed on completion or as
    deposit + balance (``tenant.quotes``); when quotes are invoiced in full at approval the work
    order bills only its extras and needs nothing.
    """
    if not isinstance(event, WorkOrderCompleted) or not event.data.quote_id:
        return None
    mode = tenant.quotes
    if mode.invoice_at == "completion" or mode.deposit_percent is not None:
        return event.data.quote_id
    return None


def price_event(
    event: Event,
    tenant_id: str,
    tenant: Tenant,
    *,
    allowance_used: Mapping[str, int] | None = None,
    quote: Event | None = None,
    priced_at: datetime | None = None,
) -> Invoice | NotBillable:
    """Price one parsed event for ``tenant`` (configured as ``tenant_id``). Pure: no I/O, no clock.

    Inputs:

    * ``allowance_used`` – the corrective-hours allowance already consumed this month under the
      client contract that applies to the event: ``{invoice key: minutes}`` as recorded in the
      allowance table (see :mod:`broker.pricing.contracts`). ``None`` = nothing consumed yet.
    * ``quote`` – the approved quote a work order executes, when :func:`quote_needed` says its
      lines are needed (quotes billed on completion or as deposit + balance); any other event
      given here is refused (``data.quote_id``).
    * ``priced_at`` – copied to the invoice (the caller's clock).

    Returns an :class:`~connectors.sdk.invoice.Invoice` (amounts in ``tenant.currency``, every line rounded
    half-up to its minor unit, totals = sums of the lines, ``issue_date`` = the event's local date,
    ``due_date`` = issue date + ``payment_terms_days``) or a :class:`~connectors.sdk.invoice.NotBillable`
    (``zero_total``, ``covered_by_contract`` or ``billed_on_completion``). Both carry
    ``allowance`` (:class:`~connectors.sdk.invoice.AllowanceUse`) when a contract allowance applied: the
    consumption this call made, which the caller records (:func:`~broker.pricing.contracts.apply_allowance`).

    Raises :class:`PricingError` naming the field and value: ``tenant`` (event of another tenant),
    ``data.client_id`` (unknown client), ``data.time_entries.N.skill`` (unknown skill),
    ``data.time_entries.N.distance_km`` (mileage billing without distance),
    ``data.parts.N.unit_cost`` (no price, no cost, SKU not in the catalogue), ``data.quote_id``
    (approved quote needed but not given, or of another client), ``data`` (the result would be
    more than :data:`~broker.pricing.core.MAX_PRICED_JSON_BYTES` of JSON: too many visits or items).
    """
    if event.tenant != tenant_id:
        raise PricingError("tenant", event.tenant, f"event belongs to another tenant than {tenant_id!r}")
    data = event.data
    client = tenant.clients.get(data.client_id)
    if client is None:
        configured = ", ".join(sorted(tenant.clients)) or "none"
        raise PricingError(
            "data.client_id", data.client_id, f"unknown client for tenant {tenant_id!r} (configured: {configured})"
        )

    ctx = _Pricing(event, tenant_id, tenant, client)
    if isinstance(event, QuoteApproved):
        outcome = ctx.quote_approval(event)
        if outcome is not None:
            return outcome
    else:
        ctx.work(event, allowance_used, quote)
    priced = ctx.result(priced_at)
    check_priced_size(priced)
    return priced


class _Pricing:
    """One pricing run: collects drafts and notes, then finishes lines and totals."""

    def __init__(self, event: Event, tenant_id: str, tenant: Tenant, client: Client):
        self.event = event
        self.tenant_id = tenant_id
        self.tenant = tenant
        self.client = client
        self.currency = tenant.currency
        self.texts = texts_of(tenant, event.data.client_id)
        self.drafts: list[LineDraft] = []
        self.notes: list[str] = []
        self.allowance: AllowanceUse | None = None
        data = event.data
        if data.summary:
            self.notes.append(data.summary)
        self.notes.append(f"Site: {data.site_id}")
        if data.contract_ref:
            self.notes.append(f"Contract: {data.contract_ref}")
        self.contract: Contract | None = (
            None if isinstance(event, QuoteApproved) else applicable_contract(event, tenant, client)
        )

    # ------------------------------------------------------------------ quotes
    def quote_approval(self, event: QuoteApproved) -> NotBillable | None:
        mode = self.tenant.quotes
        if event.data.work_order_id:
            self.notes.append(f"Work order: {event.data.work_order_id}")
        if mode.invoice_at == "completion":
            return NotBillable(
                invoice_key=event.invoice_key,
                order_key=event.partition_key,
                tenant=self.tenant_id,
                event_id=event.id,
                event_type=event.type,
                event_time=event.time,
                client_id=event.data.client_id,
                site_id=event.data.site_id,
                reason=f"quote {event.data.quote_id} r{event.revision} approved; invoiced with the work order that "
                f"executes it (quotes.invoice_at: completion)",
                reason_code="billed_on_completion",
            )
        if mode.deposit_percent is not None:
            self.drafts += quote_line_drafts(event, self.tenant, part="deposit", deposit_percent=mode.deposit_percent)
            self.notes.append(
                f"Deposit of {fmt_percent(mode.deposit_percent)} % on approval of quote "
                f"{event.data.quote_id}; the balance is invoiced when the work is completed"
            )
        else:
            self.drafts += quote_line_drafts(event, self.tenant, part="full")
        return None

    # ------------------------------------------------------------------ work orders and scheduled jobs
    def work(
        self,
        event: WorkOrderCompleted | ScheduledJobClosed,
        allowance_used: Mapping[str, int] | None,
        quote: Event | None,
    ) -> None:
        tenant = self.tenant
        data = event.data
        contract = self.contract
        bands = _compiled(tenant)
        quote_id = event.data.quote_id if isinstance(event, WorkOrderCompleted) else None
        quoted = bool(quote_id)
        corrective = isinstance(event, WorkOrderCompleted) and data.kind == "corrective"
        preventive = not corrective
        # the contract, when it covers this work's labour (and travel), its parts, or its corrective hours
        labour_contract = (
            contract if contract is not None and preventive and contract.covers.preventive_labour else None
        )
        parts_contract = contract if contract is not None and preventive and contract.covers.preventive_parts else None
        allowance_contract = (
            contract if contract is not None and corrective and contract.covers.corrective_minutes > 0 else None
        )
        if contract is not None:
            self.notes.append(f"Client contract {contract.id} applies")

        def inside(item: TimeEntry | PartUsage | Expense) -> bool:  # billed on this invoice (not inside a quote)
            return not quoted or item.outside_quote

        # quote lines this work order bills
        if quoted:
            if quote_needed(event, tenant):
                if quote is None:
                    raise PricingError(
                        "data.quote_id",
                        quote_id,
                        "the approved quote this work order executes has not been "
                        "received (its approval must be priced before the work order)",
                    )
                if not isinstance(quote, QuoteApproved):
                    raise PricingError("data.quote_id", quote_id, f"the quote given is a {quote.type} event")
                if quote.tenant != event.tenant or quote.data.quote_id != quote_id:
                    raise PricingError(
                        "data.quote_id", quote_id, f"the quote given is {quote.tenant}:{quote.data.quote_id}"
                    )
                if quote.data.client_id != data.client_id:
                    raise PricingError(
                        "data.quote_id",
                        quote_id,
                        f"quote belongs to client {quote.data.client_id!r}, the work order to {data.client_id!r}",
                    )
                if tenant.quotes.deposit_percent is not None:
                    self.drafts += quote_line_drafts(
                        quote, tenant, part="balance", deposit_percent=tenant.quotes.deposit_percent
                    )
                    self.notes.append(
                        f"Balance of quote {quote_id} r{quote.revision} "
                        f"(deposit of {fmt_percent(tenant.quotes.deposit_percent)} % invoiced on approval)"
                    )
                else:
                    self.drafts += quote_line_drafts(quote, tenant, part="full")
                    self.notes.append(f"Quote {quote_id} r{quote.revision} at its approved prices")
            else:
                self.notes.append(
                    f"Executes quote {quote_id}, invoiced on approval: only extras outside the quote are billed"
                )

        # call-out fees (corrective visits; a quoted job is priced by its quote)
        if isinstance(event, WorkOrderCompleted) and corrective and not quoted:
            for fee in call_outs(event, tenant, bands):
                if contract is not None and contract.covers.call_out_fee:
                    self.drafts.append(
                        LineDraft(
                            kind="call_out",
                            description=self.texts.covered(self.texts.text("call_out"), contract.id),
                            quantity=Decimal(1),
                            unit="un",
                            unit_price=ZERO,
                            source=fee.source,
                            rule=f"contract:{contract.id}:call_out_fee",
                            tax_key="call_out",
                            covered_by=contract.id,
                            visit_id=fee.visit,
                        )
                    )
                else:
                    self.drafts.append(
                        LineDraft(
                            kind="call_out",
                            description=self.texts.text("call_out_band", band=fee.band.name)
                            if fee.band is not None
                            else self.texts.text("call_out"),
                            quantity=Decimal(1),
                            unit="un",
                            unit_price=fee.fee,
                            source=fee.source,
                            rule=fee.rule,
                            tax_key="call_out",
                            gross=tenant.tax.prices_include_tax,
                            visit_id=fee.visit,
                        )
                    )

        # labour (corrective labour first consumes the contract's monthly allowance, in time order)
        billed_lines = labour_lines(event, tenant, self.client, bands, include=inside)
        covered_minutes: dict[int, int] = {}
        allowance_cover: tuple[str, str] | None = None  # (contract id, rule) of the allowance's covered lines
        if allowance_contract is not None:
            needed = sum(line.minutes for line in billed_lines)
            month = allowance_month(event, tenant)
            self.allowance = consume_allowance(
                key=allowance_key(self.tenant_id, data.client_id, month),
                contract=allowance_contract,
                month=month,
                invoice_key=event.invoice_key,
                order_key=event.partition_key,
                needed=needed,
                used=allowance_used,
            )
            left = self.allowance.consumed_minutes
            for i, line in sorted(enumerate(billed_lines), key=lambda p: (p[1].order, p[1].technician_id)):
                take = min(left, line.minutes)
                if take:
                    covered_minutes[i] = take
                    left -= take
            a = self.allowance
            self.notes.append(
                f"Corrective allowance of contract {allowance_contract.id} for {a.month}: "
                f"{fmt_hours(a.allowance_minutes)} a month; "
                f"used before this invoice {fmt_hours(a.used_before_minutes)}; "
                f"covered here {fmt_hours(a.consumed_minutes)}; "
                f"left {fmt_hours(a.remaining_minutes)}"
            )
            allowance_rule = (
                f"contract:{allowance_contract.id}:corrective_allowance "
                f"{fmt_percent(allowance_contract.covers.corrective_hours_per_month)} h/month"
            )
            allowance_cover = (allowance_contract.id, allowance_rule)
        for i, line in enumerate(billed_lines):
            if labour_contract is not None:
                self._labour(
                    line,
                    line.minutes,
                    line.worked_seconds,
                    covered=(labour_contract.id, f"contract:{labour_contract.id}:preventive_labour"),
                )
                continue
            covered = covered_minutes.get(i, 0)
            # a line split by the allowance: its worked time in the proportion of the billed minutes
            covered_worked = line.worked_seconds * covered // line.minutes
            if covered:  # only when the allowance applies
                self._labour(line, covered, covered_worked, covered=allowance_cover)
            if line.minutes - covered:
                self._labour(line, line.minutes - covered, line.worked_seconds - covered_worked)
        if quoted:  # time inside the quote: our cost only
            for line in labour_lines(event, tenant, self.client, bands, include=lambda e: not e.outside_quote):
                self._labour(line, line.minutes, line.worked_seconds, billable=False)

        # travel
        for group in travel_groups(event, tenant, self.client, include=inside):
            self._travel(group, covered_by=labour_contract.id if labour_contract is not None else None)
        if quoted:
            for group in travel_groups(event, tenant, self.client, include=lambda e: not e.outside_quote):
                self._travel(group, billable=False)

        # parts and expenses
        parts, supplied = part_drafts(
            event,
            tenant,
            self.client,
            billable=inside,
            covered_by=parts_contract.id if parts_contract is not None else None,
        )
        self.drafts += parts
        if supplied:
            self.notes.append("Supplied by the client (not billed): " + ", ".join(supplied))
        self.drafts += expense_drafts(event, tenant, billable=inside)
        skipped = [d.source for d in self.drafts if not d.billable]
        if skipped:
            self.notes.append("Not billed (cost only): " + ", ".join(dict.fromkeys(skipped)))

    def _cost(self, rate: Decimal, worked_seconds: int, billed_minutes: int) -> Decimal:
        """Our cost of time at ``rate`` per hour: on the worked seconds (``cost_basis: worked``) or the
        billed minutes (``billed``), rounded half-up to the currency."""
        if self.tenant.rate_card.cost_basis == "billed":
            return minutes_amount(billed_minutes, rate, self.currency)
        return seconds_amount(worked_seconds, rate, self.currency)

    def _labour(
        self,
        line: LabourLine,
        minutes: int,
        worked_seconds: int,
        *,
        covered: tuple[str, str] | None = None,
        billable: bool = True,
    ) -> None:
        card = self.tenant.rate_card
        default_visit = self.event.business_id
        source = "time_entry:" + ",".join(line.entry_ids)
        cost = self._cost(line.rate.cost, worked_seconds, minutes)
        times: dict[str, Any] = {
            "worked_minutes": worked_minutes(worked_seconds),
            "billed_minutes": minutes,
            "technician_id": line.technician_id,
            "visit_id": line.visit,
        }
        if covered is not None:
            contract_id, rule = covered
            self.drafts.append(
                LineDraft(
                    kind="labour",
                    description=self.texts.covered(
                        labour_description(line, default_visit, minutes, self.texts), contract_id
                    ),
                    quantity=hours_quantity(minutes),
                    unit="h",
                    unit_price=ZERO,
                    source=source,
                    rule=f"{rule}; {labour_rule(line, card)}",
                    cost=cost,
                    tax_key="labour",
                    covered_by=contract_id,
                    **times,
                )
            )
            return
        discount = self.client.discount.labour_percent if billable else ZERO
        self.drafts.append(
            LineDraft(
                kind="labour",
                description=labour_description(line, default_visit, minutes, self.texts),
                quantity=hours_quantity(minutes),
                unit="h",
                unit_price=labour_unit_price(line, self.currency) if billable else ZERO,
                source=source,
                rule=(labour_rule(line, card) + discount_rule(discount))
                if billable
                else "labour inside quote; cost only",
                cost=cost,
                tax_key="labour",
                gross=self.tenant.tax.prices_include_tax,
                discount_percent=discount,
                billable=billable,
                **times,
            )
        )

    def _travel(self, group: TravelGroup, *, covered_by: str | None = None, billable: bool = True) -> None:
        """The lines of one travel group as the client's ``travel_billing`` says: ``time`` (a time line),
        ``mileage`` (a km line; the time is cost only) or ``both`` (a time line and a km line)."""
        mode = self.tenant.travel_billing(self.event.data.client_id)
        if group.minutes:
            self._travel_time(group, covered_by=covered_by, billable=billable, by_mileage=mode == "mileage")
        if mode != "time" and group.km:
            self._mileage(group, group.km, covered_by=covered_by, billable=billable)

    def _travel_time(self, group: TravelGroup, *, covered_by: str | None, billable: bool, by_mileage: bool) -> None:
        card = self.tenant.rate_card
        default_visit = self.event.business_id
        price = card.travel_hourly_rate if billable and not by_mileage else None  # None: not billed
        billed = price is not None
        what = self.texts.hours(hours_quantity(group.minutes))
        common: dict[str, Any] = {
            "kind": "travel",
            "description": travel_description(group, default_visit, what, self.texts),
            "quantity": hours_quantity(group.minutes),
            "unit": "h",
            "source": "time_entry:" + ",".join(group.entry_ids),
            "cost": self._cost(group.rate.cost, group.seconds, group.minutes),
            "tax_key": "travel",
            "worked_minutes": worked_minutes(group.seconds),
            "billed_minutes": group.minutes,
            "technician_id": group.technician_id,
            "visit_id": group.visit,
        }
        increment = f"increment {card.billing_increment_minutes} min"
        if covered_by is not None and billed:
            self._covered(common, covered_by, f"rate:travel; {increment}")
            return
        if billed:
            rule = f"rate:travel; {increment}"
        elif by_mileage:
            rule = "travel time not billed (mileage billing); cost only"
        elif not billable:
            rule = "travel inside quote; cost only"
        else:
            rule = "travel not billed (no travel_hourly_rate); cost only"
        self.drafts.append(
            LineDraft(
                **common,
                unit_price=price if price is not None else ZERO,
                rule=rule,
                gross=self.tenant.tax.prices_include_tax,
                billable=billed,
            )
        )

    def _covered(self, common: dict[str, Any], contract_id: str, rule: str) -> None:
        """A zero-priced travel line (``common``: its fields) covered by the preventive-labour contract."""
        self.drafts.append(
            LineDraft(
                **{**common, "description": self.texts.covered(common["description"], contract_id)},
                unit_price=ZERO,
                rule=f"contract:{contract_id}:preventive_labour; {rule}",
                covered_by=contract_id,
            )
        )

    def _mileage(self, group: TravelGroup, km: Decimal, *, covered_by: str | None, billable: bool) -> None:
        card = self.tenant.rate_card
        km_cost = (
            money_rounder(self.currency)(km * card.mileage_cost_per_km)
            if card.mileage_cost_per_km is not None
            else ZERO
        )
        common: dict[str, Any] = {
            "kind": "travel",
            "description": travel_description(group, self.event.business_id, self.texts.km(km), self.texts),
            "quantity": km,
            "unit": "km",
            "source": "time_entry:" + ",".join(group.entry_ids),
            "cost": km_cost,
            "tax_key": "mileage",
            "technician_id": group.technician_id,
            "visit_id": group.visit,
        }
        if covered_by is not None and billable:
            self._covered(common, covered_by, "mileage")
            return
        km_price = card.mileage_rate_per_km if billable else ZERO
        if km_price is None:  # pragma: no cover - the configuration refuses mileage billing without the rate
            raise PricingError(
                "rate_card.mileage_rate_per_km", None, "travel is billed by mileage but has no rate per km"
            )
        self.drafts.append(
            LineDraft(
                **common,
                unit_price=km_price,
                rule="rate:mileage per km" if billable else "mileage inside quote; cost only",
                gross=self.tenant.tax.prices_include_tax,
                billable=billable,
            )
        )

    # ------------------------------------------------------------------ finishing
    def result(self, priced_at: datetime | None) -> Invoice | NotBillable:
        event, tenant, client, currency = self.event, self.tenant, self.client, self.currency
        inclusive = tenant.tax.prices_include_tax and not (client.tax_exempt or client.reverse_charge)
        legal: list[str] = []
        if client.reverse_charge:
            note = tenant.tax.reverse_charge_note
            if note == DEFAULT_REVERSE_CHARGE_NOTE:  # the tenant wrote none: the wording in the client's language
                note = self.texts.text("reverse_charge")
            legal = [note, self.texts.text("customer_vat_number", number=client.tax_number)]
            tax_type = tenant.tax.reverse_charge_tax_type
        elif client.tax_exempt:
            legal = [client.tax_exemption_note or self.texts.text("exempt")]
            tax_type = tenant.tax.exempt_tax_type
        else:
            tax_type = None
        zero_rated = client.reverse_charge or client.tax_exempt
        rnd = money_rounder(currency)
        lines: list[InvoiceLine] = []
        rates: dict[TaxLineType, Decimal] = {}
        for draft in self.drafts:
            if not draft.billable:
                continue
            standard = draft.tax_rate
            if standard is None:
                standard = rates.get(draft.tax_key)
                if standard is None:
                    standard = rates[draft.tax_key] = tenant.tax_rate(draft.tax_key)
            lines.append(finish(draft, standard, ZERO if zero_rated else standard, inclusive, rnd, tax_type))
        net_total = tax_total = rnd(ZERO)
        for line in lines:  # totals are sums of the rounded lines
            net_total += line.net
            tax_total += line.tax
        total = net_total + tax_total
        cost_total = rnd(ZERO)
        for draft in self.drafts:  # every draft cost is already rounded to the currency
            cost_total += draft.cost
        cost_total = rnd(cost_total)
        data = event.data
        contract_id = self.contract.id if self.contract is not None else None

        if total == 0:
            covered = [line for line in lines if line.covered_by]
            not_billable = partial(
                NotBillable,
                invoice_key=event.invoice_key,
                order_key=event.partition_key,
                tenant=self.tenant_id,
                event_id=event.id,
                event_type=event.type,
                event_time=event.time,
                client_id=data.client_id,
                site_id=data.site_id,
                cost_total=cost_total,
                allowance=self.allowance,
                contract_id=contract_id,
                asset_ids=list(getattr(data, "asset_ids", ())),
            )
            if covered:
                what = ", ".join(dict.fromkeys(_covered_what(line.rule) for line in covered))
                return not_billable(
                    reason_code="covered_by_contract",
                    lines=covered,
                    reason=f"covered by contract {covered[0].covered_by}: {what} "
                    f"({len(covered)} line(s)) for {document_reference(event)} r{event.revision}",
                )
            what = "no billable lines" if not lines else f"{len(lines)} line(s) summing to 0"
            return not_billable(reason=f"zero total: {what} for {document_reference(event)} r{event.revision}")

        issue_date = event.time.astimezone(zone_of(tenant)).date()
        values: dict[str, object] = {
            "status": "invoice",
            "invoice_key": event.invoice_key,
            "invoice_number": invoice_number(
                tenant.invoice_prefix, event.document, event.business_id, event.revision, tenant.invoice_number_max
            ),
            "order_key": event.partition_key,
            "tenant": self.tenant_id,
            "billing_system": tenant.billing.system,
            "event_id": event.id,
            "event_type": event.type,
            "event_time": event.time,
            "document": event.document,
            "document_id": event.business_id,
            "revision": event.revision,
            "client_id": data.client_id,
            "client_name": client.name,
            "contact_id": client.contact_id,
            "site_id": data.site_id,
            "currency": currency,
            "issue_date": issue_date,
            "due_date": issue_date + timedelta(days=tenant.payment_terms_days),
            "reference": document_reference(event),
            "tax_inclusive": inclusive,
            "lines": lines,
            "net_total": net_total,
            "tax_total": tax_total,
            "total": total,
            "cost_total": cost_total,
            "margin": net_total - cost_total,
            "notes": self.notes + legal,
            "legal_notes": legal,
            "contract_id": contract_id,
            "allowance": self.allowance,
            "asset_ids": list(getattr(data, "asset_ids", ())),
            "priced_at": priced_at,
            "corrects": None,
            "draft": tenant.approval_of(data.client_id) == "draft",
        }
        values["fingerprint"] = fingerprint_of(values, lines)
        return trusted(Invoice, values)  # every field is given, typed by this module
