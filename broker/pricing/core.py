"""Shared pricing building blocks: the error type, line drafts, time and money helpers, tax and totals.

Everything here is pure and works on :class:`~decimal.Decimal`; money is rounded half-up to the
currency's ISO 4217 minor unit with :func:`connectors.sdk.money.round_money`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from broker.events import QuoteApproved, ScheduledJobClosed, WorkOrderCompleted, trusted_model
from broker.texts import InvoiceTexts, invoice_texts
from connectors.sdk.invoice import Invoice, InvoiceLine, LineKind, NotBillable
from connectors.sdk.money import quantum

if TYPE_CHECKING:
    from broker.config import TaxLineType, Tenant

Event = WorkOrderCompleted | ScheduledJobClosed | QuoteApproved
#: ``amount -> amount rounded half-up to the currency's minor unit`` (:func:`money_rounder`).
Rounder = Callable[[Decimal], Decimal]
_ModelT = TypeVar("_ModelT", bound=BaseModel)

#: Largest JSON (bytes) of a priced result (:func:`check_priced_size`): it is published as one Kafka
#: record, which holds 1 MiB with its key and headers.
MAX_PRICED_JSON_BYTES = 900 * 1024

HOURS_DP = Decimal("0.0001")
HUNDRED = Decimal(100)
SIXTY = Decimal(60)
SECONDS_PER_HOUR = Decimal(3600)
MINUTES_DP = Decimal("0.01")
ZERO = Decimal(0)


class PricingError(ValueError):
    """The event holds data that cannot be priced (the pipeline dead-letters it).

    ``field`` is the dotted path inside the event (``data.parts.2.unit_cost``), ``value`` the
    offending value; the message is ``"<field>: <reason> (got <value!r>)"``.
    """

    def __init__(self, field: str, value: object, reason: str):
        super().__init__(f"{field}: {reason} (got {value!r})")
        self.field = field
        self.value = value
        self.reason = reason


_QUANTA: dict[str, Decimal] = {}


def money_rounder(currency: str) -> Rounder:
    """A fast ``round_money`` for one currency: ``amount -> amount rounded half-up to the minor unit``.

    Same result as :func:`connectors.sdk.money.round_money` (the quantum is looked up once).
    """
    q = _QUANTA.get(currency)
    if q is None:
        q = _QUANTA[currency] = quantum(currency)

    def rnd(amount: Decimal, _q: Decimal = q, _mode: str = ROUND_HALF_UP) -> Decimal:
        return amount.quantize(_q, rounding=_mode)

    return rnd


@dataclass(slots=True)
class LineDraft:
    """A priced line before tax.

    ``unit_price`` is per ``unit`` in the *price basis* given by ``gross``: ``gross=True`` means
    the price includes tax at the line type's standard rate (tenant prices configured
    tax-inclusive), ``False`` that it is net. The final line amount is
    ``round(quantity × unit_price × (100 − discount_percent) / 100)`` (see :func:`finish_line`),
    exactly how billing systems such as Xero recompute it. ``tax_key`` selects the VAT rate
    (``labour``, ``part`` ...; see ``TaxSettings.rates``) unless ``tax_rate`` is given.
    ``billable=False`` marks a cost-only item (never an invoice line, its cost counts in
    ``cost_total``). ``covered_by`` names the contract of a zero-priced covered line.
    ``worked_minutes`` / ``billed_minutes``: a labour or travel line's time worked and billed.
    """

    kind: LineKind
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    source: str
    rule: str
    cost: Decimal = ZERO
    tax_key: TaxLineType = "labour"
    tax_rate: Decimal | None = None
    gross: bool = False
    discount_percent: Decimal = ZERO
    billable: bool = True
    covered_by: str | None = None
    worked_minutes: Decimal | None = None
    billed_minutes: int | None = None
    technician_id: str | None = None
    visit_id: str | None = None


# --------------------------------------------------------------------------- time helpers
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


@lru_cache(maxsize=8192)
def hours_quantity(minutes: int) -> Decimal:
    """``minutes`` as hours: exact when it fits in 4 decimals (195 -> ``3.25``), else rounded half-up to 4 dp
    (10 -> ``0.1667``).

    The line amount is computed from this quantity (``quantity × rate``), as the client and the
    billing system read it.
    """
    hours = Decimal(minutes) / SIXTY
    rounded = hours.quantize(HOURS_DP)
    return hours if hours == rounded else rounded


def minutes_amount(minutes: int, hourly_rate: Decimal, currency: str) -> Decimal:
    """``minutes × hourly_rate / 60`` rounded half-up to the currency minor unit (costs on billed time)."""
    return money_rounder(currency)(Decimal(minutes) * hourly_rate / SIXTY)


def seconds_amount(seconds: int, hourly_rate: Decimal, currency: str) -> Decimal:
    """``seconds × hourly_rate / 3600`` rounded half-up to the currency minor unit (costs on worked
    time): 420 s at 30.00/h -> ``3.50``; 10 s at 30.00/h -> ``0.08``."""
    return money_rounder(currency)(Decimal(seconds) * hourly_rate / SECONDS_PER_HOUR)


def worked_minutes(seconds: int) -> Decimal:
    """``seconds`` as minutes rounded half-up to 2 decimals (what a line shows as time worked):
    420 -> ``7``, 10 -> ``0.17``."""
    minutes = Decimal(seconds) / SIXTY
    rounded = minutes.quantize(MINUTES_DP, rounding=ROUND_HALF_UP)
    return minutes if minutes == rounded else rounded


def texts_of(tenant: Tenant, client_id: str) -> InvoiceTexts:
    """The invoice texts for ``client_id``: its language (else the tenant's) with the tenant's templates."""
    return invoice_texts(tenant.language_of(client_id), tenant.texts)


def fmt_hours(minutes: int) -> str:
    """``"2.25 h"`` for 135 minutes."""
    return f"{hours_quantity(minutes)} h"


def fmt_percent(value: Decimal) -> str:
    """``Decimal("20.00")`` -> ``"20"``, ``Decimal("12.5")`` -> ``"12.5"`` (for rule texts)."""
    return format(value.normalize(), "f")


_ZONES: dict[str, ZoneInfo] = {}


def zone_of(tenant: Tenant) -> ZoneInfo:
    """The tenant's :class:`~zoneinfo.ZoneInfo` (looked up once per zone name)."""
    zone = _ZONES.get(tenant.timezone)
    if zone is None:
        zone = _ZONES[tenant.timezone] = tenant.zone
    return zone


# --------------------------------------------------------------------------- identity
def document_reference(event: Event) -> str:
    """Human reference: ``"WO 1001"``, ``"Scheduled job SJ-7"`` or ``"Quote Q-12"``."""
    if isinstance(event, WorkOrderCompleted):
        return f"WO {event.data.work_order_id}"
    if isinstance(event, ScheduledJobClosed):
        return f"Scheduled job {event.data.scheduled_job_id}"
    return f"Quote {event.data.quote_id}"


# --------------------------------------------------------------------------- tax and totals
def trusted(model: type[_ModelT], values: dict[str, object]) -> _ModelT:
    """A pydantic model instance from values the engine computed and typed itself (every field given).

    Equivalent to ``model.model_construct(**values)`` (pydantic's documented way to build a model
    from trusted data) without its per-field Python loop: the engine builds several lines per
    event. The property tests check that every priced document equals its re-validated copy.
    """
    return trusted_model(model, values)


def finish_line(
    draft: LineDraft,
    *,
    standard_rate: Decimal,
    line_rate: Decimal,
    inclusive: bool,
    currency: str,
    tax_type: str | None = None,
) -> InvoiceLine:
    """Turn a draft into an :class:`InvoiceLine` with its tax, every amount rounded half-up to ``currency``.

    ``standard_rate`` is the VAT percentage the draft's price basis refers to (the line type's
    rate, or the quote line's own); ``line_rate`` the percentage actually charged (0 for an
    exempt or reverse-charge client). ``inclusive`` says whether the invoice is tax-inclusive.

    * Exclusive invoice: unit price net (a gross price becomes ``round(price × 100 / (100 +
      standard_rate))``); ``net = round(qty × unit × (100 − discount) / 100)``;
      ``tax = round(net × line_rate / 100)``; ``total = net + tax``.
    * Inclusive invoice: unit price gross (a net price becomes ``round(price × (100 +
      standard_rate) / 100)``); ``total = round(qty × unit × (100 − discount) / 100)``;
      ``tax = round(total × line_rate / (100 + line_rate))``; ``net = total − tax``.

    So ``net + tax == total`` on every line and the amount equals quantity × unit price (less the
    discount) as the billing system recomputes it.
    """
    return finish(draft, standard_rate, line_rate, inclusive, money_rounder(currency), tax_type)


def finish(
    draft: LineDraft, standard_rate: Decimal, line_rate: Decimal, inclusive: bool, rnd: Rounder, tax_type: str | None
) -> InvoiceLine:
    """:func:`finish_line` with positional arguments and a :func:`money_rounder` (the engine's hot path)."""
    unit = draft.unit_price
    if inclusive:
        if not draft.gross:
            unit = rnd(unit * (HUNDRED + standard_rate) / HUNDRED)
    elif draft.gross:
        unit = rnd(unit * HUNDRED / (HUNDRED + standard_rate))
    discount = draft.discount_percent
    amount = rnd(draft.quantity * unit * (HUNDRED - discount) / HUNDRED if discount else draft.quantity * unit)
    if inclusive:
        total = amount
        tax = rnd(total * line_rate / (HUNDRED + line_rate))
        net = total - tax
    else:
        net = amount
        tax = rnd(net * line_rate / HUNDRED)
        total = net + tax
    return trusted(
        InvoiceLine,
        {
            "kind": draft.kind,
            "description": draft.description,
            "quantity": draft.quantity,
            "unit": draft.unit,
            "unit_price": unit,
            "discount_percent": discount,
            "net": net,
            "tax_rate": line_rate,
            "tax": tax,
            "total": total,
            "source": draft.source,
            "rule": draft.rule,
            "cost": rnd(draft.cost),
            "account_code": None,
            "tax_type": tax_type,
            "covered_by": draft.covered_by,
            "worked_minutes": draft.worked_minutes,
            "billed_minutes": draft.billed_minutes,
            "technician_id": draft.technician_id,
            "visit_id": draft.visit_id,
        },
    )


def check_priced_size(priced: Invoice | NotBillable) -> None:
    """Raise :class:`PricingError` (field ``data``) when ``priced`` would serialise to more than
    :data:`MAX_PRICED_JSON_BYTES` of JSON (an event with very many visits, entries or items).

    A cheap bound on the text it carries (lines and notes) decides first; only a document near the
    limit is serialised to measure it exactly.
    """
    lines = priced.lines
    notes = getattr(priced, "notes", ())
    chars = sum(len(line.description) + len(line.source) + len(line.rule) for line in lines)
    chars += sum(len(note) for note in notes)
    if 6 * chars + 1024 * (len(lines) + len(notes) + 8) < MAX_PRICED_JSON_BYTES // 2:
        return
    size = len(priced.model_dump_json())
    if size > MAX_PRICED_JSON_BYTES:
        what = priced.status.replace("_", " ")
        raise PricingError(
            "data",
            f"{len(lines)} lines",
            f"the priced {what} would be {size} bytes of JSON, more than the {MAX_PRICED_JSON_BYTES} "
            "one Kafka record can carry (too many visits, time entries or items in one event)",
        )


def totals(lines: list[InvoiceLine], currency: str) -> tuple[Decimal, Decimal, Decimal]:
    """``(net_total, tax_total, total)`` as sums of the rounded lines (so ``net + tax == total``)."""
    zero = money_rounder(currency)(ZERO)
    net = sum((line.net for line in lines), zero)
    tax = sum((line.tax for line in lines), zero)
    return net, tax, net + tax
