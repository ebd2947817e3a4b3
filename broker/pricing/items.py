"""Parts, expenses and quote lines as :class:`~broker.pricing.core.LineDraft` objects."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial

from broker.config import Client, Tenant
from broker.events import Expense, PartUsage, QuoteApproved, ScheduledJobClosed, WorkOrderCompleted
from broker.pricing.core import HUNDRED, ZERO, LineDraft, PricingError, fmt_percent, money_rounder, texts_of
from broker.pricing.labour import discount_rule

WorkEvent = WorkOrderCompleted | ScheduledJobClosed


def part_drafts(
    event: WorkEvent,
    tenant: Tenant,
    client: Client,
    *,
    billable: Callable[[PartUsage], bool] = lambda _part: True,
    covered_by: str | None = None,
) -> tuple[list[LineDraft], list[str]]:
    """Part drafts and the sources of client-supplied parts (not billed, not costed).

    Unit price, first found: the event's ``unit_price`` (platform catalogue, rule
    ``part:catalogue_price``), the tenant ``catalogue`` price (``part:tenant_catalogue_price``),
    ``round(unit_cost × (1 + markup/100))`` with the markup of the part's category (event
    ``category``, else the catalogue's) or ``parts_markup_percent``
    (``part:cost_plus_markup 20%[ (category X)]``). Cost = quantity × unit cost (event, else
    catalogue; 0 when unknown). Catalogue/event prices are list prices (gross when the tenant
    prices tax-inclusive); cost-plus prices are net. Parts not accepted by ``billable`` become
    cost-only drafts; with ``covered_by`` they become zero-priced covered lines.
    Raises :class:`PricingError` at ``data.parts.N.unit_cost`` for a part with no price, no cost
    and a SKU unknown to the catalogue.
    """
    card = tenant.rate_card
    rnd = money_rounder(tenant.currency)
    texts = texts_of(tenant, event.data.client_id)
    gross_prices = tenant.tax.prices_include_tax
    discount = client.discount.parts_percent
    drafts: list[LineDraft] = []
    supplied: list[str] = []
    for index, part in enumerate(event.data.parts):
        if part.client_supplied:
            supplied.append(f"part:{part.id}")
            continue
        item = card.catalogue.get(part.sku)
        unit_cost = part.unit_cost if part.unit_cost is not None else (item.unit_cost if item else None)
        category = part.category or (item.category if item else None)
        gross = gross_prices
        if part.unit_price is not None:
            unit_price, rule = part.unit_price, "part:catalogue_price"
        elif item is not None and item.unit_price is not None:
            unit_price, rule = item.unit_price, "part:tenant_catalogue_price"
        elif unit_cost is not None:
            markup = (
                card.parts_markup_by_category.get(category, card.parts_markup_percent)
                if category
                else card.parts_markup_percent
            )
            unit_price = rnd(unit_cost * (1 + markup / HUNDRED))
            rule = f"part:cost_plus_markup {fmt_percent(markup)}%" + (
                f" (category {category})" if category and category in card.parts_markup_by_category else ""
            )
            gross = False
        else:
            known = "unknown to the tenant catalogue" if item is None else "in the catalogue without price or cost"
            raise PricingError(
                f"data.parts.{index}.unit_cost",
                part.unit_cost,
                f"part {part.sku!r} has neither unit_price nor unit_cost and is {known}",
            )
        cost = rnd(part.quantity * unit_cost) if unit_cost is not None else ZERO
        description = texts.text("part", description=part.description, sku=part.sku)
        billed = billable(part)
        if covered_by is not None and billed:
            drafts.append(
                LineDraft(
                    kind="part",
                    description=texts.covered(description, covered_by),
                    quantity=part.quantity,
                    unit=part.unit,
                    unit_price=ZERO,
                    source=f"part:{part.id}",
                    rule=f"contract:{covered_by}:preventive_parts",
                    cost=cost,
                    tax_key="part",
                    covered_by=covered_by,
                )
            )
            continue
        drafts.append(
            LineDraft(
                kind="part",
                description=description,
                quantity=part.quantity,
                unit=part.unit,
                unit_price=unit_price,
                source=f"part:{part.id}",
                rule=rule + discount_rule(discount),
                cost=cost,
                tax_key="part",
                gross=gross,
                discount_percent=discount,
                billable=billed,
            )
        )
    return drafts, supplied


def expense_drafts(
    event: WorkEvent, tenant: Tenant, *, billable: Callable[[Expense], bool] = lambda _expense: True
) -> list[LineDraft]:
    """Expense drafts: billable ones at ``round(amount × (1 + handling/100))`` (net), others cost-only.

    Every draft has quantity 1 and ``cost`` = the expense amount (rounded). Expenses the event
    marks non-billable, or that ``billable`` rejects, are cost-only.
    """
    handling = tenant.rate_card.expenses_handling_percent
    rnd = money_rounder(tenant.currency)
    drafts: list[LineDraft] = []
    for expense in event.data.expenses:
        cost = rnd(expense.amount)
        billed = expense.billable and billable(expense)
        if billed:
            price = rnd(expense.amount * (1 + handling / HUNDRED))
            rule = f"expense:handling {fmt_percent(handling)}%"
        else:
            price = ZERO
            rule = "expense:not billable; cost only" if not expense.billable else "expense:inside quote; cost only"
        drafts.append(
            LineDraft(
                kind="expense",
                description=expense.description,
                quantity=Decimal(1),
                unit="un",
                unit_price=price,
                source=f"expense:{expense.id}",
                rule=rule,
                cost=cost,
                tax_key="expense",
                billable=billed,
            )
        )
    return drafts


def _quote_amount(quantity: Decimal, unit_price: Decimal, currency: str) -> Decimal:
    return money_rounder(currency)(quantity * unit_price)


def quote_line_drafts(
    quote: QuoteApproved, tenant: Tenant, *, part: str = "full", deposit_percent: Decimal | None = None
) -> list[LineDraft]:
    """Drafts for an approved quote's lines.

    ``part``: ``full`` (fixed price: quantity × unit price, rule ``quote:fixed_price``),
    ``deposit`` (quantity 1 × ``round(line amount × deposit_percent / 100)``, rule
    ``quote:deposit N%``) or ``balance`` (quantity 1 × line amount − that deposit, rule
    ``quote:balance``), so deposit + balance is exactly the quote line. Tax: the line's own
    ``tax_rate`` when given (``0`` honoured), else the tenant's ``quote`` rate. Quote prices are
    list prices (gross when the tenant prices tax-inclusive).
    """
    currency = tenant.currency
    gross = tenant.tax.prices_include_tax
    qid = quote.data.quote_id
    texts = texts_of(tenant, quote.data.client_id)
    drafts: list[LineDraft] = []
    for line in quote.data.lines:
        description = texts.text("part", description=line.description, sku=line.sku) if line.sku else line.description
        own = "; own tax rate" if line.tax_rate is not None else ""
        draft = partial(
            LineDraft,
            kind="quote",
            source=f"quote_line:{line.id}",
            tax_key="quote",
            tax_rate=line.tax_rate,
            gross=gross,
        )
        if part == "full":
            drafts.append(
                draft(
                    description=description,
                    quantity=line.quantity,
                    unit="un",
                    unit_price=line.unit_price,
                    rule="quote:fixed_price" + own,
                )
            )
            continue
        amount = _quote_amount(line.quantity, line.unit_price, currency)
        deposit = money_rounder(currency)(amount * (deposit_percent or ZERO) / HUNDRED)
        pct = fmt_percent(deposit_percent or ZERO)
        shown_pct = texts.number((deposit_percent or ZERO).normalize())
        if part == "deposit":
            drafts.append(
                draft(
                    description=texts.text("deposit", percent=shown_pct, description=description, quote=qid),
                    quantity=Decimal(1),
                    unit="un",
                    unit_price=deposit,
                    rule=f"quote:deposit {pct}%{own}",
                )
            )
        else:
            drafts.append(
                draft(
                    description=texts.text("balance", percent=shown_pct, description=description, quote=qid),
                    quantity=Decimal(1),
                    unit="un",
                    unit_price=amount - deposit,
                    rule=f"quote:balance after {pct}% deposit{own}",
                )
            )
    return drafts
